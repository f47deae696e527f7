"""Delivery order does not matter: any order of a payment's results ends where the true one does.

Gateways deliver at least once and in any order. The property: deliver a realistic set of results
for one payment in any permutation, with duplicates and browser returns mixed in, redelivering
whatever came back ILLEGAL (as the inbox or the gateway's own retries would) — the payment ends
in the same state, with the same money, as in the true order, and says payment.completed at
most once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from domain_builders import PAGE_REF, A, C, D, H, P, V, X, at, awaiting, result, sar
from hypothesis import given, settings
from hypothesis import strategies as st

from paytabs_guard.domain.gateway_results import (
    GatewayResult,
    GatewayStatus,
    ResultSource,
    TranType,
)
from paytabs_guard.domain.money import InvalidMoney, Money
from paytabs_guard.domain.payment import Payment
from paytabs_guard.domain.states import OutcomeKind


@dataclass(frozen=True)
class Scenario:
    name: str
    tran_type: TranType
    results: Callable[[Payment], list[GatewayResult]]  # in the true order
    conflict_free: bool = True


def _follow(
    payment: Payment,
    kind: TranType,
    status: GatewayStatus,
    ref: str,
    amount: str,
    previous: str = PAGE_REF,
) -> GatewayResult:
    return result(
        payment, status, tran_type=kind, tran_ref=ref, previous=previous, amount=sar(amount)
    )


SCENARIOS = [
    Scenario("hpp sale", TranType.SALE, lambda p: [result(p, P), result(p, H), result(p, A)]),
    Scenario("declined", TranType.SALE, lambda p: [result(p, P), result(p, D)]),
    Scenario("cancelled", TranType.SALE, lambda p: [result(p, H), result(p, C)]),
    Scenario(
        "pending apm",
        TranType.SALE,
        lambda p: [
            result(p, P, tran_type=TranType.PAYMENT_REQUEST),
            result(p, A, tran_type=TranType.SALE, tran_ref="TSTSALE2", previous=PAGE_REF),
        ],
    ),
    Scenario(
        "auth then capture",
        TranType.AUTH,
        lambda p: [result(p, A), _follow(p, TranType.CAPTURE, A, "CAP1", "100.00")],
    ),
    Scenario(
        "auth then void",
        TranType.AUTH,
        lambda p: [result(p, A), _follow(p, TranType.VOID, A, "VOID1", "100.00"), result(p, V)],
    ),
    Scenario(
        "two refunds",
        TranType.SALE,
        lambda p: [
            result(p, A),
            _follow(p, TranType.REFUND, A, "R1", "30.00"),
            _follow(p, TranType.REFUND, A, "R2", "70.00"),
        ],
    ),
    Scenario(
        "pending refund",
        TranType.SALE,
        lambda p: [
            result(p, A),
            _follow(p, TranType.REFUND, P, "R1", "40.00"),
            _follow(p, TranType.REFUND, A, "R1", "40.00"),
        ],
    ),
    Scenario(
        "partial capture refunded",
        TranType.AUTH,
        lambda p: [
            result(p, A),
            _follow(p, TranType.CAPTURE, A, "CAP1", "80.00"),
            _follow(p, TranType.REFUND, A, "R1", "80.00", previous="CAP1"),
        ],
    ),
    # X arriving before the A it follows reads as money after expiry: flagged, never applied.
    Scenario("auth expired", TranType.AUTH, lambda p: [result(p, A), result(p, X)], False),
]


def deliver(payment: Payment, results: list[GatewayResult]) -> None:
    """Apply each result; redeliver the ILLEGAL ones until nothing more applies."""
    waiting = list(results)
    minute = 1.0
    while waiting:
        retry = []
        for item in waiting:
            minute += 1
            if payment.apply_gateway_result(item, at=at(minute)).kind is OutcomeKind.ILLEGAL:
                retry.append(item)
        if len(retry) == len(waiting):
            return  # nothing moved: these stay illegal for good
        waiting = retry


def true_end(scenario: Scenario) -> Payment:
    payment = awaiting(tran_type=scenario.tran_type)
    deliver(payment, scenario.results(payment))
    return payment


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_true_order_applies_every_result(scenario: Scenario) -> None:
    payment = awaiting(tran_type=scenario.tran_type)
    for minute, item in enumerate(scenario.results(payment), start=1):
        outcome = payment.apply_gateway_result(item, at=at(minute))
        assert outcome.kind in (OutcomeKind.APPLIED, OutcomeKind.DUPLICATE), outcome.reason
    assert not payment.has_conflict


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_delivery_order_ends_like_the_true_order(
    scenario: Scenario, data: st.DataObject
) -> None:
    expected = true_end(scenario)
    payment = awaiting(tran_type=scenario.tran_type)
    results = scenario.results(payment)
    extra = data.draw(st.lists(st.sampled_from(results), max_size=4), label="duplicates")
    returns = [replace(item, source=ResultSource.BROWSER_RETURN) for item in results[:1]]
    order = data.draw(st.permutations(results + extra + returns), label="order")

    deliver(payment, order)

    assert payment.state is expected.state
    assert (payment.captured, payment.refunded) == (expected.captured, expected.refunded)
    completions = [e for e in payment.pending_events if e.type == "payment.completed"]
    expected_completions = [e for e in expected.pending_events if e.type == "payment.completed"]
    assert len(completions) == len(expected_completions) <= 1
    ids = [event.event_id for event in payment.pending_events]
    assert len(ids) == len(set(ids))
    if scenario.conflict_free:
        assert not payment.has_conflict


# ---- money is never a float ----------------------------------------------------------------


@given(
    amount=st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e9)
    | st.sampled_from([12.5, 0.25, 100.0, 1.0, 0.0]),  # floats that are exact in binary too
    currency=st.sampled_from(["SAR", "KWD", "JPY"]),
)
def test_any_float_is_refused_as_money_even_an_exact_one(amount: float, currency: str) -> None:
    with pytest.raises(InvalidMoney, match="never float"):
        Money.of(amount, currency)  # type: ignore[arg-type]  # what an untyped caller could do
