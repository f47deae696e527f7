"""``paytabs-guard demo``: one payment round trip through the client against the built-in simulator.

create page -> pay on the hosted page -> signed callback received and verified -> query ->
partial refund -> a refund beyond what was captured, refused. Everything runs over real HTTP on
loopback; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paytabs_guard.adapters.paytabs.errors import InvalidRequest
from paytabs_guard.adapters.paytabs.payloads import (
    Address,
    FollowUpRequest,
    FollowUpType,
    HostedPageRequest,
)
from paytabs_guard.adapters.paytabs.signature import InvalidSignature, verify_callback
from paytabs_guard.adapters.paytabs.wire import Transaction
from paytabs_guard.bootstrap import build_paytabs_client
from paytabs_guard.domain.money import Money
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.settings import Settings

# The simulator's documented test profile (docs/simulator.md); not a real PayTabs key.
DEMO_PROFILE_ID = 987654
DEMO_SERVER_KEY = "SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ"
TEST_CARD = "4111111111111111"


@dataclass
class CallbackInbox:
    """Receives PayTabs callbacks, verifies them on the raw bytes and keeps the good ones."""

    keys: tuple[SecretStr, ...]
    received: list[Transaction] = field(default_factory=list)
    rejected: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        try:
            verify_callback(body, request.headers.get("signature"), self.keys)
        except InvalidSignature as error:
            self.rejected += 1
            return PlainTextResponse(f"invalid signature: {error.reason}", status_code=401)
        self.received.append(Transaction.model_validate_json(body))
        self.arrived.set()
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/callback", self.endpoint, methods=["POST"])])


async def round_trip(settings: Settings, console: Console) -> None:
    """Run the story against whatever PayTabs ``settings`` point at (the simulator here)."""
    inbox = CallbackInbox(keys=settings.webhook_secrets)
    async with serve_app(inbox.app()) as receiver, build_paytabs_client(settings) as paytabs:
        cart_id = f"demo-{secrets.token_hex(4)}"
        amount = Money.of("150.000", "KWD")
        console.print(f"[bold]1. create[/] hosted page for cart {cart_id}, {amount}")
        page = await paytabs.create_payment_page(
            HostedPageRequest(
                cart_id=cart_id,
                amount=amount,
                description="NestCMS annual plan",
                callback_url=f"{receiver}/callback",
                return_url=f"{receiver}/return",
                customer=Address(name="Layla Haddad", email="layla@example.com", country="KW"),
            )
        )
        console.print(f"   tran_ref {page.tran_ref} -> customer goes to {page.redirect_url}")

        page_id = urlsplit(page.redirect_url).path.rsplit("/", 1)[-1]
        console.print(f"[bold]2. pay[/] on the hosted page with test card {TEST_CARD[:6]}…")
        async with httpx.AsyncClient(base_url=paytabs.base_url) as browser:
            paid = await browser.post(
                f"/_sim/pages/{page_id}/pay",
                json={"card_number": TEST_CARD, "cvv": "123", "expiry_month": 12,
                      "expiry_year": 2030},
            )  # fmt: skip
            paid.raise_for_status()

        await asyncio.wait_for(inbox.arrived.wait(), timeout=10)
        callback = inbox.received[0]
        status = callback.payment_result.response_status if callback.payment_result else "?"
        console.print(
            f"[bold]3. callback[/] received, signature verified on the raw body: "
            f"{callback.tran_ref} status {status}"
        )

        queried = await paytabs.query_transaction(page.tran_ref)
        result = queried.payment_result
        console.print(
            f"[bold]4. query[/] {queried.tran_ref}: {result.response_status if result else '-'} "
            f"{result.response_message if result else ''}, {queried.cart_amount} "
            f"{queried.cart_currency}"
        )

        refund = await paytabs.follow_up(
            FollowUpRequest(
                kind=FollowUpType.REFUND,
                tran_ref=page.tran_ref,
                cart_id=cart_id,
                amount=Money.of("50.250", "KWD"),
                description="partial refund",
            )
        )
        console.print(
            f"[bold]5. refund[/] 50.250 KWD -> new tran_ref {refund.tran_ref} "
            f"(previous {refund.previous_tran_ref})"
        )
        try:
            await paytabs.follow_up(
                FollowUpRequest(
                    kind=FollowUpType.REFUND,
                    tran_ref=page.tran_ref,
                    cart_id=cart_id,
                    amount=Money.of("100.000", "KWD"),
                    description="too much",
                )
            )
        except InvalidRequest as refused:
            console.print(
                f"[bold]6. refund[/] 100.000 KWD more (only 99.750 left) -> refused by PayTabs: "
                f"code {refused.code} {refused.message!r}"
            )
        else:
            raise RuntimeError("a refund beyond the captured amount was accepted")


def run_demo(settings: Settings) -> int:
    """Start the simulator on loopback, point the client at it and run the round trip."""
    from paytabs_simulator.server import run_simulator

    console = Console()

    async def main() -> None:
        async with run_simulator() as simulator:
            console.print(f"PayTabs simulator on {simulator.base_url}")
            demo_settings = settings.model_copy(
                update={
                    "paytabs_profile_id": DEMO_PROFILE_ID,
                    "paytabs_server_key": SecretStr(DEMO_SERVER_KEY),
                    "paytabs_base_url": simulator.base_url,
                    "paytabs_webhook_secret": (),
                }
            )
            await round_trip(demo_settings, console)
        console.print("[green]round trip complete[/]")

    asyncio.run(main())
    return 0
