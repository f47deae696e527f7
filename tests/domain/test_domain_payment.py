"""The Payment aggregate: our own steps, idempotency, ordering, conflicts, quarantine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from domain_builders import (
    CART,
    PAGE_REF,
    PAGE_TTL,
    PROFILE,
    T0,
    A,
    C,
    D,
    E,
    H,
    P,
    X,
    applied,
    at,
    awaiting,
    new_payment,
    payment_in,
    result,
    sar,
)

from paytabs_guard.domain import ledger
from paytabs_guard.domain.errors import (
    InvalidPaymentRequest,
    InvalidTransition,
    PageNotExpired,
)
from paytabs_guard.domain.events import (
    ExpiryCause,
    FailureReason,
    PaymentConflict,
    PaymentExpired,
    PaymentFailed,
)
from paytabs_guard.domain.gateway_results import (
    GatewayResult,
    GatewayStatus,
    ResultSource,
    TranType,
)
from paytabs_guard.domain.money import Money
from paytabs_guard.domain.payment import Payment
from paytabs_guard.domain.states import OutcomeKind, PaymentState, Trigger

S = PaymentState


def types(payment: Payment) -> list[str]:
    return [event.type for event in payment.pending_events]


# ---- creation ------------------------------------------------------------------------------


def test_a_new_payment_is_created_with_its_event_and_first_history_entry() -> None:
    payment = new_payment()
    assert payment.state is S.CREATED
    assert types(payment) == ["payment.created"]
    first = payment.history[0]
    assert (first.from_state, first.to_state, first.trigger) == (None, S.CREATED, Trigger.CREATE)
    assert payment.captured == payment.refunded == sar("0")
    assert payment.version == 0


def _create(
    *,
    id: str = "pay_1",
    cart_id: str = CART,
    profile_id: int = PROFILE,
    amount: Money | None = None,
    tran_type: TranType = TranType.SALE,
    description: str = "Order 1",
) -> Payment:
    return Payment.create(
        id=id,
        cart_id=cart_id,
        profile_id=profile_id,
        amount=amount or sar("10.00"),
        tran_type=tran_type,
        description=description,
        at=T0,
    )


@pytest.mark.parametrize(
    ("create", "field"),
    [
        (lambda: _create(cart_id="c" * 65), "cart_id"),
        (lambda: _create(cart_id=" "), "cart_id"),
        (lambda: _create(description=""), "description"),
        (lambda: _create(description="d" * 129), "description"),
        (lambda: _create(profile_id=0), "profile_id"),
        (lambda: _create(amount=sar("0.00")), "amount"),
        (lambda: _create(tran_type=TranType.REFUND), "tran_type"),
        (lambda: _create(id=""), "id"),
    ],
)
def test_invalid_payments_are_refused_naming_the_field(
    create: Callable[[], Payment], field: str
) -> None:
    with pytest.raises(InvalidPaymentRequest) as raised:
        create()
    assert raised.value.field == field


def test_a_cart_id_of_64_characters_is_accepted() -> None:
    payment = _create(cart_id="c" * 64)
    assert payment.cart_id == "c" * 64


def test_naive_datetimes_are_refused() -> None:
    payment = new_payment()
    with pytest.raises(ValueError, match="timezone"):
        payment.mark_initiating(at=datetime(2025, 1, 1))  # noqa: DTZ001


# ---- our own steps ---------------------------------------------------------------------------


def test_the_happy_sale_path() -> None:
    payment = awaiting()
    outcome = payment.apply_gateway_result(result(payment, A), at=at(3))
    assert outcome.kind is OutcomeKind.APPLIED
    assert (outcome.previous_state, outcome.state) == (S.AWAITING_CUSTOMER, S.COMPLETED)
    assert payment.captured == payment.amount
    assert payment.refund_reference == PAGE_REF
    assert types(payment) == ["payment.created", "payment.initiated", "payment.completed"]
    path = [(t.from_state, t.to_state, t.source) for t in payment.history]
    assert path == [
        (None, S.CREATED, ResultSource.API),
        (S.CREATED, S.INITIATING, ResultSource.API),
        (S.INITIATING, S.AWAITING_CUSTOMER, ResultSource.API),
        (S.AWAITING_CUSTOMER, S.COMPLETED, ResultSource.CALLBACK),
    ]
    assert payment.history[-1].gateway_ref == PAGE_REF
    assert payment.updated_at == at(3)


def test_only_the_first_mark_initiating_allows_sending_the_request() -> None:
    payment = new_payment()
    assert payment.mark_initiating(at=at(1)).kind is OutcomeKind.APPLIED
    again = payment.mark_initiating(at=at(2))
    assert again.kind is OutcomeKind.DUPLICATE
    assert not again.changed
    assert len(payment.history) == 2


def test_page_created_twice_with_the_same_ref_is_a_duplicate() -> None:
    payment = awaiting()
    repeat = payment.page_created(PAGE_REF, None, at=at(1))
    assert repeat.kind is OutcomeKind.DUPLICATE
    assert payment.expires_at == at(0.2) + PAGE_TTL


def test_a_second_page_for_one_payment_is_refused() -> None:
    payment = awaiting()
    with pytest.raises(InvalidTransition, match="second page"):
        payment.page_created("TST9999", None, at=at(1))


def test_a_gateway_validation_error_fails_the_payment() -> None:
    payment = new_payment()
    applied(payment.mark_initiating(at=at(1)))
    outcome = payment.initiation_failed("Invalid currency code", at=at(2), response_code="206")
    assert payment.state is S.FAILED
    (event,) = outcome.events
    assert isinstance(event, PaymentFailed)
    assert event.reason is FailureReason.GATEWAY_REJECTED
    assert (event.response_code, event.response_message) == ("206", "Invalid currency code")


def test_an_ambiguous_failure_resolved_by_query_adopts_the_tran_ref() -> None:
    payment = new_payment()
    applied(payment.mark_initiating(at=at(1), expires_at=at(21)))
    unknown = applied(payment.initiation_ambiguous(at=at(2)))
    assert (unknown.state, payment.tran_ref) == (S.UNKNOWN, None)
    pending = result(payment, P, source=ResultSource.QUERY)
    applied(payment.apply_gateway_result(pending, at=at(3)))
    assert (payment.state, payment.tran_ref) == (S.PENDING, PAGE_REF)
    sale = result(payment, A, source=ResultSource.QUERY)
    assert applied(payment.apply_gateway_result(sale, at=at(4))).state is S.COMPLETED


def test_an_unknown_payment_whose_page_is_found_unpaid_awaits_its_customer() -> None:
    payment = payment_in(S.UNKNOWN)
    outcome = payment.apply_gateway_result(
        result(payment, None, source=ResultSource.QUERY), at=at(3)
    )
    assert payment.state is S.AWAITING_CUSTOMER
    assert [event.type for event in outcome.events] == ["payment.initiated"]


def test_an_unknown_payment_with_no_gateway_record_fails() -> None:
    payment = payment_in(S.UNKNOWN)
    outcome = payment.unknown_resolved_no_record(at=at(30))
    assert payment.state is S.FAILED
    assert payment.history[-1].source is ResultSource.RECONCILIATION
    (event,) = outcome.events
    assert isinstance(event, PaymentFailed)
    assert event.reason is FailureReason.NO_GATEWAY_RECORD
    assert ledger.failure_reason(payment) is FailureReason.NO_GATEWAY_RECORD


def test_money_after_no_gateway_record_is_a_conflict() -> None:
    payment = payment_in(S.UNKNOWN)
    applied(payment.unknown_resolved_no_record(at=at(30)))
    outcome = payment.apply_gateway_result(result(payment, A), at=at(31))
    assert outcome.kind is OutcomeKind.CONFLICT
    assert payment.state is S.FAILED
    assert payment.tran_ref is None


def test_a_page_expires_only_after_its_ttl() -> None:
    payment = awaiting()
    with pytest.raises(PageNotExpired, match="valid until"):
        payment.expire_page(at=at(5))
    outcome = payment.expire_page(at=at(21))
    assert payment.state is S.EXPIRED
    (event,) = outcome.events
    assert isinstance(event, PaymentExpired)
    assert event.cause is ExpiryCause.PAGE_TTL_PASSED
    assert payment.expire_page(at=at(22)).kind is OutcomeKind.DUPLICATE


def test_a_page_without_a_known_expiry_is_never_expired_by_ttl() -> None:
    payment = new_payment()
    applied(payment.mark_initiating(at=at(1)))
    applied(payment.page_created(PAGE_REF, None, at=at(2)))
    with pytest.raises(PageNotExpired, match="no known expiry"):
        payment.expire_page(at=at(600))


def test_expire_page_in_the_wrong_state_is_an_invalid_transition() -> None:
    payment = payment_in(S.COMPLETED)
    with pytest.raises(InvalidTransition, match="page_ttl_passed"):
        payment.expire_page(at=at(600))


# ---- idempotency and ordering -----------------------------------------------------------------


def test_the_same_result_twice_is_a_duplicate_with_one_event() -> None:
    payment = awaiting()
    first = payment.apply_gateway_result(result(payment, A), at=at(1))
    second = payment.apply_gateway_result(result(payment, A), at=at(2))
    assert (first.kind, second.kind) == (OutcomeKind.APPLIED, OutcomeKind.DUPLICATE)
    assert second.events == ()
    assert types(payment).count("payment.completed") == 1
    assert payment.updated_at == at(1)


def test_callback_and_query_of_the_same_result_apply_once() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    query = result(payment, A, source=ResultSource.QUERY)
    assert payment.apply_gateway_result(query, at=at(2)).kind is OutcomeKind.DUPLICATE


@pytest.mark.parametrize("older", [P, H, None])
def test_older_news_after_completion_is_stale(older: GatewayStatus | None) -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    stale = payment.apply_gateway_result(result(payment, older), at=at(2))
    assert stale.kind is OutcomeKind.STALE
    assert payment.state is S.COMPLETED


def test_hold_then_authorised_completes() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, H), at=at(1)))
    applied(payment.apply_gateway_result(result(payment, A), at=at(2)))
    assert payment.state is S.COMPLETED


def test_pending_after_hold_is_stale() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, H), at=at(1)))
    assert payment.apply_gateway_result(result(payment, P), at=at(2)).kind is OutcomeKind.STALE
    assert payment.state is S.ON_HOLD


def test_a_late_clock_never_moves_updated_at_back() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, P), at=at(5)))
    applied(payment.apply_gateway_result(result(payment, A), at=at(4)))
    assert payment.updated_at == at(5)
    assert payment.history[-1].at == at(4)


# ---- conflicts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("contradiction", [D, E, C, X])
def test_completed_never_becomes_failed(contradiction: GatewayStatus) -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    history = list(payment.history)
    outcome = payment.apply_gateway_result(result(payment, contradiction), at=at(2))
    assert outcome.kind is OutcomeKind.CONFLICT
    assert outcome.changed
    assert payment.state is S.COMPLETED
    assert payment.history == history
    assert payment.has_conflict
    (note,) = payment.conflicts
    assert (note.tran_ref, note.reported_status, note.state) == (
        PAGE_REF,
        contradiction,
        S.COMPLETED,
    )
    (event,) = outcome.events
    assert isinstance(event, PaymentConflict)
    assert event.reported_status is contradiction


def test_the_same_conflict_twice_raises_one_alert() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    payment.apply_gateway_result(result(payment, D), at=at(2))
    again = payment.apply_gateway_result(result(payment, D, source=ResultSource.QUERY), at=at(3))
    assert again.kind is OutcomeKind.DUPLICATE
    assert types(payment).count("payment.conflict") == 1


def test_money_after_a_decline_is_a_conflict() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, D), at=at(1)))
    outcome = payment.apply_gateway_result(result(payment, A), at=at(2))
    assert outcome.kind is OutcomeKind.CONFLICT
    assert payment.state is S.FAILED
    assert payment.captured == sar("0")


# ---- quarantine --------------------------------------------------------------------------------


# Not this payment's at all (another profile, another cart, a card registration): nothing
# is written on the payment.
FOREIGN = [
    (lambda p: result(p, A, profile_id=1), "profile_id"),
    (lambda p: result(p, A, cart_id="cart-0002"), "cart_id"),
    (lambda p: result(p, A, tran_type=TranType.REGISTER), "card registration"),
]
# PayTabs says money moved on this payment's own cart, in a way the payment cannot accept.
QUARANTINED = [
    (lambda p: result(p, A, amount=sar("99.99")), "99.99 SAR"),
    (lambda p: result(p, A, amount=Money.of("100.00", "AED")), "currency AED"),
    (lambda p: result(p, A, tran_ref="TST0000000000009"), "second attempt"),
    (lambda p: result(p, A, tran_type=TranType.AUTH), "does not fit this sale payment"),
    (
        lambda p: result(p, A, tran_type=TranType.CAPTURE, tran_ref="CAP1", previous=PAGE_REF),
        "needs an auth",
    ),
    (
        lambda p: result(p, A, tran_type=TranType.SALE, tran_ref="S2", previous="TSTOTHER"),
        "completes",
    ),
]


@pytest.mark.parametrize(("make", "why"), FOREIGN)
def test_results_that_are_not_this_payments_are_quarantined(
    make: Callable[[Payment], GatewayResult], why: str
) -> None:
    payment = awaiting()
    before = (payment.state, list(payment.transactions), list(payment.pending_events))
    outcome = payment.apply_gateway_result(make(payment), at=at(1))
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert why in outcome.reason
    assert not outcome.changed
    assert (payment.state, payment.transactions, payment.pending_events) == before
    assert not payment.has_conflict


@pytest.mark.parametrize(("make", "why"), QUARANTINED)
def test_money_the_payment_cannot_accept_is_quarantined_and_noted_once(
    make: Callable[[Payment], GatewayResult], why: str
) -> None:
    # Not applied, yet not invisible either: the customer's money sits at PayTabs, so the
    # payment says so (a conflict note, a payment.conflict event) instead of waiting on.
    payment = awaiting()
    before = (payment.state, list(payment.transactions))
    earlier = types(payment)
    outcome = payment.apply_gateway_result(make(payment), at=at(1))
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert why in outcome.reason
    assert outcome.changed
    assert (payment.state, payment.transactions) == before
    assert payment.has_conflict
    [note] = payment.conflicts
    assert note.reason.startswith("quarantined: ")
    assert why in note.reason
    assert types(payment) == [*earlier, "payment.conflict"]
    # The IPN, the callback and every reconciliation pass bring it again: noted once.
    again = payment.apply_gateway_result(make(payment), at=at(2))
    assert again.kind is OutcomeKind.QUARANTINED
    assert not again.changed
    assert len(payment.conflicts) == 1
    assert types(payment) == [*earlier, "payment.conflict"]


def test_a_refund_of_a_foreign_transaction_waits_until_money_moved_then_is_quarantined() -> None:
    payment = awaiting()
    foreign = result(
        payment,
        A,
        tran_type=TranType.REFUND,
        tran_ref="R1",
        previous="TSTOTHER",
        amount=sar("10.00"),
    )
    # Before the sale, its parent may be a sale not seen yet: too early, not foreign.
    assert payment.apply_gateway_result(foreign, at=at(1)).kind is OutcomeKind.ILLEGAL
    applied(payment.apply_gateway_result(result(payment, A), at=at(2)))
    outcome = payment.apply_gateway_result(foreign, at=at(3))
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert "TSTOTHER" in outcome.reason
    assert payment.refunded == sar("0.00")


def test_quarantine_comes_before_duplicate_detection() -> None:
    payment = awaiting()
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    tampered = result(payment, A, amount=sar("1.00"))
    assert payment.apply_gateway_result(tampered, at=at(2)).kind is OutcomeKind.QUARANTINED


def test_collect_events_drains_the_queue() -> None:
    payment = awaiting()
    drained = payment.collect_events()
    assert [event.type for event in drained] == ["payment.created", "payment.initiated"]
    assert payment.pending_events == []
    assert payment.collect_events() == []


def test_a_lost_page_url_leads_to_a_new_attempt_under_a_new_cart_id() -> None:
    payment = new_payment()
    payment.mark_initiating(at=at(0.1))
    payment.initiation_ambiguous(at=at(0.2))
    found = payment.apply_gateway_result(
        result(payment, None, source=ResultSource.QUERY), at=at(0.3)
    )
    assert payment.state is PaymentState.AWAITING_CUSTOMER  # the page exists, unpaid
    assert found.kind is OutcomeKind.APPLIED

    orphan = new_payment(payment_id="pay_2")
    orphan.mark_initiating(at=at(0.1))
    orphan.initiation_ambiguous(at=at(0.2))
    moved = orphan.new_attempt(f"{CART}-2", at=at(0.3))
    assert moved.kind is OutcomeKind.APPLIED
    assert orphan.state is PaymentState.INITIATING
    assert orphan.cart_id == f"{CART}-2"
    assert orphan.abandoned_cart_ids == [CART]
    assert orphan.history[-1].trigger is Trigger.NEW_ATTEMPT
    # a result for the abandoned cart can never decide the payment
    stray = orphan.apply_gateway_result(result(orphan, A, cart_id=CART), at=at(0.4))
    assert stray.kind is OutcomeKind.QUARANTINED
    with pytest.raises(InvalidPaymentRequest, match="already used"):
        orphan.new_attempt(CART, at=at(0.5))


def test_page_url_return_url_and_metadata_are_kept() -> None:
    payment = Payment.create(
        id="pay_9", cart_id="cart-9", profile_id=PROFILE, amount=sar("10.00"),
        tran_type=TranType.SALE, description="d", at=T0,
        return_url="https://shop.example/thanks", metadata={"order": "1001"},
    )  # fmt: skip
    payment.mark_initiating(at=at(0.1))
    payment.page_created(PAGE_REF, None, at=at(0.2), redirect_url="https://pay.example/p/1")
    assert payment.redirect_url == "https://pay.example/p/1"
    assert payment.return_url == "https://shop.example/thanks"
    assert payment.metadata == {"order": "1001"}
