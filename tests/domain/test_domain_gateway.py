"""The gateway vocabulary: parsing, the status mapping, and GatewayResult itself."""

from __future__ import annotations

from dataclasses import replace

import pytest
from domain_builders import PAGE_REF, at, awaiting, result, sar

from paytabs_guard.domain.errors import UnknownGatewayValue
from paytabs_guard.domain.gateway_results import (
    GatewayResult,
    GatewayStatus,
    ResultSource,
    Signal,
    TranType,
    signal_of,
)
from paytabs_guard.domain.states import OutcomeKind, PaymentState

G = GatewayStatus
Sig = Signal


@pytest.mark.parametrize(
    ("raw", "status"),
    [("A", G.AUTHORIZED), ("a", G.AUTHORIZED), (" h ", G.ON_HOLD), ("P", G.PENDING),
     ("V", G.VOIDED), ("E", G.ERROR), ("D", G.DECLINED), ("x", G.EXPIRED), ("C", G.CANCELLED)],
)  # fmt: skip
def test_status_letters_parse_in_any_case(raw: str, status: GatewayStatus) -> None:
    assert GatewayStatus.parse(raw) is status


@pytest.mark.parametrize("raw", ["", "Z", "AA", "Authorised", "0"])
def test_unknown_status_letters_are_refused_with_the_field_named(raw: str) -> None:
    with pytest.raises(UnknownGatewayValue, match="response_status"):
        GatewayStatus.parse(raw)


@pytest.mark.parametrize(
    ("raw", "tran_type"),
    [
        ("Sale", TranType.SALE),
        ("sale", TranType.SALE),
        ("AUTH", TranType.AUTH),
        ("Capture", TranType.CAPTURE),
        ("Void", TranType.VOID),
        ("Release", TranType.RELEASE),
        (" Refund ", TranType.REFUND),
        ("Register", TranType.REGISTER),
        ("Payment Request", TranType.PAYMENT_REQUEST),
        ("payment request", TranType.PAYMENT_REQUEST),
        ("payment_request", TranType.PAYMENT_REQUEST),
        ("Payment-Request", TranType.PAYMENT_REQUEST),
        ("PAYMENT  REQUEST", TranType.PAYMENT_REQUEST),
    ],
)
def test_tran_types_parse_as_paytabs_spells_them(raw: str, tran_type: TranType) -> None:
    assert TranType.parse(raw) is tran_type


@pytest.mark.parametrize("raw", ["", "purchase", "Sale Request", "authext"])
def test_unknown_tran_types_are_refused(raw: str) -> None:
    with pytest.raises(UnknownGatewayValue, match="tran_type"):
        TranType.parse(raw)


# What each status means per transaction type. Columns: no status, A, H, P, V, E, D, X, C.
SIGNALS: dict[TranType, list[Signal]] = {
    TranType.SALE: [Sig.PAGE_OPEN, Sig.CHARGED, Sig.HELD, Sig.PENDING, Sig.VOIDED,
                    Sig.DECLINED, Sig.DECLINED, Sig.EXPIRED, Sig.CANCELLED],
    TranType.PAYMENT_REQUEST: [Sig.PAGE_OPEN, Sig.CHARGED, Sig.HELD, Sig.PENDING, Sig.VOIDED,
                               Sig.DECLINED, Sig.DECLINED, Sig.EXPIRED, Sig.CANCELLED],
    TranType.AUTH: [Sig.PAGE_OPEN, Sig.AUTHORIZED, Sig.HELD, Sig.PENDING, Sig.VOIDED,
                    Sig.DECLINED, Sig.DECLINED, Sig.EXPIRED, Sig.CANCELLED],
    TranType.CAPTURE: [Sig.FOLLOW_UP_PENDING, Sig.CAPTURED, Sig.FOLLOW_UP_PENDING,
                       Sig.FOLLOW_UP_PENDING, Sig.FOLLOW_UP_FAILED] + [Sig.FOLLOW_UP_FAILED] * 4,
    TranType.VOID: [Sig.FOLLOW_UP_PENDING, Sig.VOIDED, Sig.FOLLOW_UP_PENDING,
                    Sig.FOLLOW_UP_PENDING, Sig.VOIDED] + [Sig.FOLLOW_UP_FAILED] * 4,
    TranType.RELEASE: [Sig.FOLLOW_UP_PENDING, Sig.VOIDED, Sig.FOLLOW_UP_PENDING,
                       Sig.FOLLOW_UP_PENDING, Sig.VOIDED] + [Sig.FOLLOW_UP_FAILED] * 4,
    TranType.REFUND: [Sig.FOLLOW_UP_PENDING, Sig.REFUNDED, Sig.FOLLOW_UP_PENDING,
                      Sig.FOLLOW_UP_PENDING, Sig.FOLLOW_UP_FAILED] + [Sig.FOLLOW_UP_FAILED] * 4,
    TranType.REGISTER: [Sig.NOT_A_PAYMENT] * 9,
}  # fmt: skip
STATUS_COLUMNS: list[GatewayStatus | None] = [
    None, G.AUTHORIZED, G.ON_HOLD, G.PENDING, G.VOIDED, G.ERROR, G.DECLINED, G.EXPIRED, G.CANCELLED
]  # fmt: skip
COMBINATIONS = [(status, tran_type) for tran_type in TranType for status in STATUS_COLUMNS]


def test_the_signal_table_covers_every_status_and_type() -> None:
    assert set(SIGNALS) == set(TranType)
    assert set(STATUS_COLUMNS) - {None} == set(GatewayStatus)


@pytest.mark.parametrize(("status", "tran_type"), COMBINATIONS, ids=str)
def test_signal_of_every_status_and_type(status: GatewayStatus | None, tran_type: TranType) -> None:
    expected = SIGNALS[tran_type][STATUS_COLUMNS.index(status)]
    assert signal_of(status, tran_type) is expected


# Where each status of the payment's own transaction takes a payment awaiting its customer.
AWAITING_TO = {
    None: PaymentState.AWAITING_CUSTOMER,  # duplicate: still nobody paid
    G.AUTHORIZED: None,  # depends on sale or auth: below
    G.ON_HOLD: PaymentState.ON_HOLD,
    G.PENDING: PaymentState.PENDING,
    G.VOIDED: PaymentState.AWAITING_CUSTOMER,  # illegal before an authorisation
    G.ERROR: PaymentState.FAILED,
    G.DECLINED: PaymentState.FAILED,
    G.EXPIRED: PaymentState.EXPIRED,
    G.CANCELLED: PaymentState.CANCELLED,
}


@pytest.mark.parametrize("tran_type", [TranType.SALE, TranType.PAYMENT_REQUEST, TranType.AUTH])
@pytest.mark.parametrize("status", STATUS_COLUMNS, ids=str)
def test_every_status_of_the_own_transaction_maps_to_a_state(
    status: GatewayStatus | None, tran_type: TranType
) -> None:
    intent = TranType.AUTH if tran_type is TranType.AUTH else TranType.SALE
    payment = awaiting(tran_type=intent)
    outcome = payment.apply_gateway_result(result(payment, status, tran_type=tran_type), at=at(1))
    expected = AWAITING_TO[status] or (
        PaymentState.AUTHORIZED if intent is TranType.AUTH else PaymentState.COMPLETED
    )
    assert payment.state is expected, outcome.reason


BASE = GatewayResult(
    tran_ref=PAGE_REF,
    cart_id="cart-0001",
    profile_id=1,
    tran_type=TranType.SALE,
    status=G.AUTHORIZED,
    amount=sar("1.00"),
    source=ResultSource.CALLBACK,
)


def test_a_result_needs_a_tran_ref() -> None:
    with pytest.raises(ValueError, match="tran_ref"):
        replace(BASE, tran_ref=" ")


def test_an_empty_previous_tran_ref_means_none() -> None:
    assert replace(BASE, previous_tran_ref="").previous_tran_ref is None


def test_the_token_never_appears_in_repr() -> None:
    secret = "2C4655BE67A3E537C6B593FF60817AB9"
    shown = repr(replace(BASE, token=secret))
    assert secret not in shown
    assert PAGE_REF in shown


def test_a_result_knows_its_signal() -> None:
    assert replace(BASE, tran_type=TranType.AUTH).signal is Signal.AUTHORIZED


def test_a_browser_return_is_ignored_whatever_it_says() -> None:
    payment = awaiting()
    back = result(payment, G.AUTHORIZED, source=ResultSource.BROWSER_RETURN)
    outcome = payment.apply_gateway_result(back, at=at(1))
    assert outcome.kind is OutcomeKind.IGNORED
    assert "query" in outcome.reason
    assert payment.state is PaymentState.AWAITING_CUSTOMER
