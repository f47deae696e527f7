"""Lifecycle events: type names, stable ids, JSON-safe data."""

from __future__ import annotations

import json
import uuid

from domain_builders import (
    PAGE_REF,
    A,
    D,
    X,
    applied,
    at,
    awaiting,
    follow_up,
    kwd,
    new_payment,
    result,
)

from paytabs_guard.domain import events
from paytabs_guard.domain.events import EVENT_NAMESPACE, PaymentEvent, event_id_for
from paytabs_guard.domain.gateway_results import TranType
from paytabs_guard.domain.payment import Payment

DESIGN_TYPES = {
    "payment.created",
    "payment.initiated",
    "payment.completed",
    "payment.failed",
    "payment.cancelled",
    "payment.expired",
    "payment.authorized",
    "payment.captured",
    "payment.voided",
    "payment.refunded",
    "payment.conflict",
}


def _event_classes() -> list[type[PaymentEvent]]:
    found = [
        value
        for value in vars(events).values()
        if isinstance(value, type) and issubclass(value, PaymentEvent) and value is not PaymentEvent
    ]
    return sorted(found, key=lambda cls: cls.type)


def test_there_is_one_event_class_per_design_type() -> None:
    assert [cls.type for cls in _event_classes()] == sorted(DESIGN_TYPES)


def lifecycle(payment_id: str = "pay_1") -> Payment:
    """A KWD auth that is captured, refunded twice, then contradicted: most event types."""
    payment = awaiting(tran_type=TranType.AUTH, amount=kwd("1.250"), payment_id=payment_id)
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    capture = follow_up(payment, TranType.CAPTURE, A, "CAP1", kwd("1.250"))
    applied(payment.apply_gateway_result(capture, at=at(2)))
    for ref, amount in (("R1", "0.250"), ("R2", "1.000")):
        refund = follow_up(payment, TranType.REFUND, A, ref, kwd(amount))
        applied(payment.apply_gateway_result(refund, at=at(3)))
    payment.apply_gateway_result(result(payment, D), at=at(4))
    payment.apply_gateway_result(result(payment, X), at=at(5))
    return payment


def test_a_lifecycle_emits_its_events_in_order() -> None:
    assert [event.type for event in lifecycle().pending_events] == [
        "payment.created",
        "payment.initiated",
        "payment.authorized",
        "payment.captured",
        "payment.completed",
        "payment.refunded",
        "payment.refunded",
        "payment.conflict",
        "payment.conflict",
    ]


def test_event_ids_are_stable_across_reapplication() -> None:
    first = [event.event_id for event in lifecycle().pending_events]
    second = [event.event_id for event in lifecycle().pending_events]
    assert first == second
    assert len(set(first)) == len(first)
    assert [event.event_id for event in lifecycle("pay_2").pending_events] != first


def test_event_ids_are_uuid5_of_payment_type_and_occurrence() -> None:
    payment = lifecycle()
    created, *_ = payment.pending_events
    assert created.event_id == str(uuid.uuid5(EVENT_NAMESPACE, "pay_1\npayment.created\n"))
    refunds = [e for e in payment.pending_events if e.type == "payment.refunded"]
    assert [e.event_id for e in refunds] == [
        event_id_for("pay_1", "payment.refunded", "R1"),
        event_id_for("pay_1", "payment.refunded", "R2"),
    ]
    assert uuid.UUID(created.event_id).version == 5


def test_replaying_every_result_adds_no_event() -> None:
    payment = awaiting()
    sale = result(payment, A)
    applied(payment.apply_gateway_result(sale, at=at(1)))
    before = [event.event_id for event in payment.pending_events]
    for _ in range(3):
        payment.apply_gateway_result(sale, at=at(2))
    assert [event.event_id for event in payment.pending_events] == before


def _walk(value: object) -> None:
    assert not isinstance(value, float), "floats never carry money"
    assert isinstance(value, str | int | bool | type(None))


def test_event_data_is_json_safe_with_amounts_as_strings() -> None:
    for event in lifecycle().pending_events:
        data = event.data
        json.dumps(data, allow_nan=False)
        for value in data.values():
            _walk(value)
        assert data["payment_id"] == "pay_1"
        assert data["cart_id"] == "cart-0001"
        if "amount" in data:
            assert data["currency"] == "KWD"
            assert isinstance(data["amount"], str)
            assert len(str(data["amount"]).split(".")[1]) == 3  # KWD has three decimals


def test_event_payloads() -> None:
    payment = lifecycle()
    by_type = {event.type: event.data for event in payment.pending_events}
    assert by_type["payment.created"] == {
        "payment_id": "pay_1",
        "cart_id": "cart-0001",
        "state": "created",
        "amount": "1.250",
        "currency": "KWD",
        "tran_type": "auth",
        "description": "Order 1",
    }
    assert by_type["payment.completed"] == {
        "payment_id": "pay_1",
        "cart_id": "cart-0001",
        "state": "completed",
        "tran_ref": "CAP1",
        "amount": "1.250",
        "currency": "KWD",
    }
    assert by_type["payment.captured"]["previous_tran_ref"] == PAGE_REF
    assert by_type["payment.initiated"]["expires_at"] == "2025-01-29T09:20:12Z"
    conflict = by_type["payment.conflict"]
    assert (conflict["reported_status"], conflict["state"]) == ("X", "refunded")


def test_events_are_stamped_with_the_time_of_the_step() -> None:
    payment = new_payment()
    (created,) = payment.pending_events
    assert created.occurred_at == payment.created_at
    applied(payment.mark_initiating(at=at(7)))
    applied(payment.page_created(PAGE_REF, None, at=at(8)))
    assert payment.pending_events[-1].occurred_at == at(8)
