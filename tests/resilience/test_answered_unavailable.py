"""A 429 or 503 *answer* to a write that moves money is not taken on its word: "usually not
processed" is not "never". Against the simulator, whose 503 can come after it did the work:
the refund PayTabs made is found by query and returned, never reported as "not sent" (which
let the merchant refund again); when no query can tell, the outcome is unknown."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from paytabs_guard import (
    AmbiguousGatewayError,
    FollowUpRequest,
    FollowUpType,
    HostedPageRequest,
    Money,
    PayTabs,
    RetryConfig,
)
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator, run_simulator

pytestmark = pytest.mark.anyio

QUICK = RetryConfig(retries=2, base_delay=0.001, max_delay=0.001)


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig()) as running:
        yield running


async def _paid_sale(simulator: RunningSimulator, paytabs: PayTabs) -> tuple[str, str]:
    cart_id = f"order-{secrets.token_hex(6)}"
    page = await paytabs.create_payment_page(
        HostedPageRequest(cart_id=cart_id, amount=Money.of("100.00", "SAR"), description="x")
    )
    page_id = str(page.redirect_url).rsplit("/", 1)[-1]
    async with httpx.AsyncClient(base_url=simulator.base_url) as browser:
        paid = await browser.post(
            f"/_sim/pages/{page_id}/pay", json={"card_number": "4111111111111111"}
        )
    assert paid.status_code == 200, paid.text
    return page.tran_ref, cart_id


def _unavailable_after_the_work(*paths: str) -> Faults:
    return Faults(error_rate=1, error_phase="after", error_statuses=[503], fault_paths=list(paths))


async def _refunds(simulator: RunningSimulator, cart_id: str) -> list[str]:
    async with httpx.AsyncClient(base_url=simulator.base_url) as admin:
        listed = (await admin.get("/_sim/transactions", params={"cart_id": cart_id})).json()
    return [t["tran_ref"] for t in listed if t["tran_type"] == "Refund"]


@pytest.fixture
async def paytabs(simulator: RunningSimulator) -> AsyncIterator[PayTabs]:
    async with PayTabs(
        profile_id=DEFAULT_PROFILE_ID,
        server_key=DEFAULT_SERVER_KEY,
        base_url=simulator.base_url,
        retry=QUICK,
    ) as client:
        yield client


def _refund_of_30(sale: str, cart_id: str) -> FollowUpRequest:
    return FollowUpRequest(FollowUpType.REFUND, sale, cart_id, Money.of("30.00", "SAR"), "r")


async def test_a_refund_answered_503_after_paytabs_made_it_is_found_not_resent(
    simulator: RunningSimulator, paytabs: PayTabs
) -> None:
    sale, cart_id = await _paid_sale(simulator, paytabs)
    simulator.engine.set_faults(_unavailable_after_the_work("/payment/request"))
    refund = await paytabs.follow_up(_refund_of_30(sale, cart_id), known_tran_refs={sale})
    made = await _refunds(simulator, cart_id)
    assert made == [refund.tran_ref]  # the one PayTabs made, not a second one
    assert refund.payment_result is not None
    assert refund.payment_result.response_status == "A"


async def test_when_no_query_can_tell_the_outcome_is_unknown_not_unsent(
    simulator: RunningSimulator, paytabs: PayTabs
) -> None:
    sale, cart_id = await _paid_sale(simulator, paytabs)
    simulator.engine.set_faults(_unavailable_after_the_work("/payment/request", "/payment/query"))
    with pytest.raises(AmbiguousGatewayError) as unknown:
        await paytabs.follow_up(_refund_of_30(sale, cart_id), known_tran_refs={sale})
    assert unknown.value.http_status == 503
    assert len(await _refunds(simulator, cart_id)) == 1  # it did land: "not sent" was untrue
