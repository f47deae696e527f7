"""paytabs-guard as a library: create a hosted page, verify the callback, refund part of it.

Runs against the built-in PayTabs simulator, so it works offline::

    python examples/library_quickstart.py

With a real profile you would only change the ``PayTabs(...)`` line (your profile id, server
key and region, no ``base_url``) and pay on the real hosted page instead of ``pay_on_simulator``.
The library needs only ``pip install paytabs-guard``; this example also starts the simulator and
a small callback endpoint, which need ``pip install 'paytabs-guard[simulator]'``.
"""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paytabs_guard import (
    FollowUpRequest,
    FollowUpType,
    HostedPageRequest,
    InvalidSignature,
    Money,
    PayTabs,
    Transaction,
)
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY
from paytabs_simulator.server import run_simulator, serve_asgi


async def main() -> Transaction:
    callbacks: asyncio.Queue[Transaction] = asyncio.Queue()

    async with (
        run_simulator() as simulator,
        PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            region="SAU",
            base_url=simulator.base_url,  # omit for the real PayTabs host of the region
        ) as paytabs,
    ):

        async def callback(request: Request) -> PlainTextResponse:
            # Verify the signature on the raw bytes, before anything else is trusted.
            try:
                result = paytabs.verify_callback(
                    await request.body(), request.headers.get("signature")
                )
            except InvalidSignature:
                return PlainTextResponse("bad signature", status_code=401)
            await callbacks.put(result)
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/paytabs/callback", callback, methods=["POST"])])
        async with serve_asgi(app, lifespan="off") as shop:
            # 1. A hosted payment page. Retries never create a second page for this cart.
            page = await paytabs.create_payment_page(
                HostedPageRequest(
                    cart_id="order-1001",
                    amount=Money.of("150.00", "SAR"),
                    description="Annual membership",
                    callback_url=f"{shop}/paytabs/callback",
                    return_url=f"{shop}/thank-you",
                )
            )
            print(f"send the customer to {page.redirect_url}")

            # 2. The customer pays (here: the simulator's page, paid by API).
            await pay_on_simulator(simulator.base_url, page.redirect_url or "")

            # 3. PayTabs' signed callback says what happened; check it matches the order.
            result = await asyncio.wait_for(callbacks.get(), timeout=10)
            paid = Money.parse_gateway(result.cart_amount, result.cart_currency)
            if result.cart_id != "order-1001" or paid != Money.of("150.00", "SAR"):
                raise SystemExit(f"unexpected callback: {result.cart_id} for {paid}")
            if result.payment_result is None or result.payment_result.response_status != "A":
                raise SystemExit(f"not authorised: {result.payment_result}")
            print(f"paid: {result.tran_ref} {result.payment_result.response_status}")

            # 4. Refund part of it. An ambiguous failure is resolved by a query first.
            refund = await paytabs.follow_up(
                FollowUpRequest(
                    kind=FollowUpType.REFUND,
                    tran_ref=result.tran_ref,
                    cart_id=result.cart_id,
                    amount=Money.of("50.00", "SAR"),
                    description="Partial refund",
                )
            )
            print(f"refunded 50.00 SAR: {refund.tran_ref}")
            return refund


async def pay_on_simulator(simulator_url: str, page_url: str) -> None:
    page_id = page_url.rstrip("/").rsplit("/", 1)[-1]
    async with httpx.AsyncClient(base_url=simulator_url) as browser:
        answer = await browser.post(
            f"/_sim/pages/{page_id}/pay", json={"card_number": "4111111111111111"}
        )
        answer.raise_for_status()


if __name__ == "__main__":
    asyncio.run(main())
