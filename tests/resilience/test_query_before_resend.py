"""An ambiguous write is re-sent only after a query proved PayTabs holds nothing.

A fake PayTabs behind ``httpx.MockTransport`` plays a script and records every request it was
sent, in order; the tests assert that order. (The 500-payment storm in test_no_double_charge.py
shows the same end to end against the simulator.)
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from paytabs_guard.adapters.paytabs.errors import AmbiguousGatewayError
from paytabs_guard.adapters.paytabs.transformers import (
    FollowUpRequest,
    HostedPageRequest,
)
from paytabs_guard.bootstrap import GatewayParts, build_gateway
from paytabs_guard.domain import FollowUpType, Money
from paytabs_guard.resilience.errors import CircuitOpenError
from paytabs_guard.settings import load_settings
from testkit.clock import FakeClock

pytestmark = pytest.mark.anyio

Step = Callable[[httpx.Request], httpx.Response]
PROFILE = 987654


class ScriptedPayTabs:
    """Answers each request with the next step of a script and records what was asked."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        kind = "query" if request.url.path == "/payment/query" else "request"
        self.seen.append(f"{kind} {body.get('cart_id') or body.get('tran_ref')}")
        assert self.steps, f"unexpected {self.seen[-1]}"
        return self.steps.pop(0)(request)


def status(code: int) -> Step:
    return lambda _: httpx.Response(code, json={"code": 0, "message": "gateway trouble"})


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out after sending", request=request)


def found(*transactions: dict[str, object]) -> Step:
    return lambda _: httpx.Response(200, json=list(transactions))


def page(cart_id: str, tran_ref: str = "TST001") -> Step:
    return lambda _: httpx.Response(
        200,
        json={
            "tran_ref": tran_ref,
            "tran_type": "Sale",
            "cart_id": cart_id,
            "cart_currency": "SAR",
            "cart_amount": "10.00",
            "redirect_url": f"https://pay.example/{tran_ref}",
        },
    )


def transaction(cart_id: str, tran_ref: str, tran_type: str, previous: str | None = None) -> Step:
    return lambda _: httpx.Response(200, json=tx(cart_id, tran_ref, tran_type, previous))


def tx(
    cart_id: str,
    tran_ref: str,
    tran_type: str,
    previous: str | None = None,
    amount: str = "10.00",
) -> dict[str, object]:
    return {
        "tran_ref": tran_ref,
        "previous_tran_ref": previous,
        "cart_id": cart_id,
        "cart_currency": "SAR",
        "cart_amount": amount,
        "tran_type": tran_type,
        "payment_result": {"response_status": "A", "response_code": "G1", "response_message": "ok"},
    }


def gateway(script: ScriptedPayTabs, time: FakeClock | None = None) -> GatewayParts:
    time = time or FakeClock()
    settings = load_settings(
        {
            "PAYTABS_PROFILE_ID": str(PROFILE),
            "PAYTABS_SERVER_KEY": "S-KEY",
            "PAYTABS_BASE_URL": "https://secure.paytabs.com",
            "CIRCUIT_BREAKER_VOLUME_THRESHOLD": "1000000",
            "CIRCUIT_BREAKER_CONSECUTIVE_FAILURES": "0",
        }
    )
    return build_gateway(
        settings, transport=httpx.MockTransport(script), clock=time.monotonic, sleep=time.sleep
    )


def page_request(cart_id: str) -> HostedPageRequest:
    return HostedPageRequest(cart_id=cart_id, amount=Money.of("10.00", "SAR"), description="d")


@pytest.mark.parametrize(
    "ambiguous",
    [status(502), status(500), status(504), read_timeout],
    ids=["502", "500", "504", "read-timeout"],
)
async def test_an_ambiguous_create_is_re_sent_only_after_a_query_found_nothing(
    ambiguous: Step,
) -> None:
    script = ScriptedPayTabs(ambiguous, found(), page("c-1"))
    parts = gateway(script)
    try:
        outcome = await parts.paytabs.create_payment_page(page_request("c-1"))
    finally:
        await parts.aclose()
    assert script.seen == ["request c-1", "query c-1", "request c-1"]
    assert outcome.redirect_url == "https://pay.example/TST001"
    assert not outcome.resolved_by_query


async def test_an_ambiguous_create_that_took_effect_is_never_re_sent() -> None:
    script = ScriptedPayTabs(status(502), found(tx("c-2", "TST777", "Sale")))
    parts = gateway(script)
    try:
        outcome = await parts.paytabs.create_payment_page(page_request("c-2"))
    finally:
        await parts.aclose()
    assert script.seen == ["request c-2", "query c-2"]
    assert (outcome.tran_ref, outcome.resolved_by_query) == ("TST777", True)


async def test_every_re_send_of_a_create_follows_its_own_query() -> None:
    script = ScriptedPayTabs(
        status(502), found(), read_timeout, found(), status(504), found(), page("c-3")
    )
    parts = gateway(script)
    try:
        await parts.paytabs.create_payment_page(page_request("c-3"))
    finally:
        await parts.aclose()
    assert script.seen == ["request c-3", "query c-3"] * 3 + ["request c-3"]


async def test_when_the_query_fails_the_write_is_not_re_sent_but_reported_ambiguous() -> None:
    # The query is a read: it is retried on gateway failures, but never replaced by a re-send.
    script = ScriptedPayTabs(status(502), *[status(503)] * 20)
    parts = gateway(script)
    try:
        with pytest.raises(AmbiguousGatewayError) as raised:
            await parts.paytabs.create_payment_page(page_request("c-4"))
    finally:
        await parts.aclose()
    assert script.seen[0] == "request c-4"
    assert set(script.seen[1:]) == {"query c-4"}
    assert raised.value.needs_resolution


async def test_an_ambiguous_refund_is_resolved_by_query_before_any_re_send() -> None:
    refund = FollowUpRequest(
        kind=FollowUpType.REFUND,
        tran_ref="TST100",
        cart_id="c-5",
        amount=Money.of("10.00", "SAR"),
        description="refund",
    )
    earlier = tx("c-5", "TST150", "Refund", previous="TST100")  # an earlier refund on record
    script = ScriptedPayTabs(
        read_timeout,
        found(tx("c-5", "TST100", "Sale"), earlier),
        transaction("c-5", "TST200", "Refund", previous="TST100"),
    )
    parts = gateway(script)
    try:
        done = await parts.paytabs.follow_up(refund, known_tran_refs={"TST150"})
    finally:
        await parts.aclose()
    assert script.seen == ["request c-5", "query c-5", "request c-5"]
    assert done.tran_ref == "TST200"


def refund_of(amount: str, cart_id: str = "c-5") -> FollowUpRequest:
    return FollowUpRequest(
        kind=FollowUpType.REFUND,
        tran_ref="TST100",
        cart_id=cart_id,
        amount=Money.of(amount, "SAR"),
        description="refund",
    )


async def test_an_earlier_refund_of_another_amount_is_not_taken_for_this_one() -> None:
    # A 50.00 refund is on record (known to the caller); this 20.00 refund's answer is lost and
    # PayTabs shows only the 50.00 one: this refund never reached it, so it is sent again.
    earlier = tx("c-5", "TST150", "Refund", previous="TST100", amount="50.00")
    script = ScriptedPayTabs(
        read_timeout,
        found(tx("c-5", "TST100", "Sale", amount="100.00"), earlier),
        transaction("c-5", "TST200", "Refund", previous="TST100"),
    )
    parts = gateway(script)
    try:
        done = await parts.paytabs.follow_up(refund_of("20.00"), known_tran_refs=())
    finally:
        await parts.aclose()
    assert script.seen == ["request c-5", "query c-5", "request c-5"]
    assert done.tran_ref == "TST200"


async def test_without_a_record_the_cart_is_queried_first_so_an_earlier_refund_stays_earlier() -> (
    None
):
    # A library caller keeps no record of the cart's follow-ups: the refund first asks PayTabs
    # what is there, so an earlier refund of the same amount is not this one's answer.
    earlier = tx("c-5", "TST150", "Refund", previous="TST100")
    sale = tx("c-5", "TST100", "Sale", amount="100.00")
    script = ScriptedPayTabs(
        found(sale, earlier),
        read_timeout,
        found(sale, earlier),
        transaction("c-5", "TST200", "Refund", previous="TST100"),
    )
    parts = gateway(script)
    try:
        done = await parts.paytabs.follow_up(refund_of("10.00"))
    finally:
        await parts.aclose()
    assert script.seen == ["query c-5", "request c-5", "query c-5", "request c-5"]
    assert done.tran_ref == "TST200"


async def test_a_refund_without_a_record_goes_out_when_the_query_path_is_down() -> None:
    # The snapshot is a query: with the query breaker open the refund must still go out (a
    # sick query path does not stop refunds), not fail naming the query circuit.
    script = ScriptedPayTabs(transaction("c-5", "TST200", "Refund", previous="TST100"))
    parts = gateway(script)
    parts.breakers.get("query").force_open()
    try:
        done = await parts.paytabs.follow_up(refund_of("10.00"))
    finally:
        await parts.aclose()
    assert script.seen == ["request c-5"]
    assert done.tran_ref == "TST200"


async def test_a_page_of_the_cart_for_another_amount_is_not_this_create_s_page() -> None:
    # The cart id was used before for 10.00; this create is for 99.00 and its answer is lost:
    # the old page is not where this customer should pay, so the create is sent again.
    script = ScriptedPayTabs(
        status(502),
        found(tx("c-9", "TST001", "Sale", amount="10.00")),
        page("c-9", "TST002"),
    )
    parts = gateway(script)
    try:
        outcome = await parts.paytabs.create_payment_page(
            HostedPageRequest(cart_id="c-9", amount=Money.of("99.00", "SAR"), description="d")
        )
    finally:
        await parts.aclose()
    assert script.seen == ["request c-9", "query c-9", "request c-9"]
    assert (outcome.tran_ref, outcome.resolved_by_query) == ("TST002", False)


async def test_a_failure_that_proves_nothing_happened_is_re_sent_without_a_query() -> None:
    script = ScriptedPayTabs(status(503), page("c-6"))
    parts = gateway(script)
    try:
        await parts.paytabs.create_payment_page(page_request("c-6"))
    finally:
        await parts.aclose()
    assert script.seen == ["request c-6", "request c-6"]


@pytest.mark.parametrize("family", ["query", "create"])
async def test_a_breaker_rejection_fails_fast_and_is_never_retried(family: str) -> None:
    script = ScriptedPayTabs()
    time = FakeClock()
    parts = gateway(script, time)
    parts.breakers.get(family).force_open()
    try:
        call = (
            parts.paytabs.query_cart("c-7")
            if family == "query"
            else parts.paytabs.create_payment_page(page_request("c-7"))
        )
        with pytest.raises(CircuitOpenError):
            await call
    finally:
        await parts.aclose()
    assert script.seen == []  # PayTabs was not called
    assert time.sleeps == []  # and no backoff was waited: the rejection is the answer
