"""Payments ⇄ rows: how a ``Payment`` and its children map to table rows, both ways.

Pure functions: no connection, no statement. ``repository.py`` decides what to write and
``payment_reads.py`` how to read; both go through here, so a column is named in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paytabs_guard.domain import (
    ConflictNote,
    FollowUpHold,
    GatewayStatus,
    GatewayTransaction,
    Money,
    Payment,
    PaymentState,
    ResultSource,
    Transition,
    TranType,
    Trigger,
)

# ---- domain -> rows ---------------------------------------------------------------------------


def payment_row(payment: Payment) -> dict[str, object]:
    currency = payment.amount.currency
    for money in (payment.captured, payment.refunded):
        if money.currency != currency:
            raise ValueError(f"payment {payment.id}: {money} is not in {currency}")
    return {
        "id": payment.id,
        "cart_id": payment.cart_id,
        "profile_id": payment.profile_id,
        "amount_minor": payment.amount.minor_units,
        "currency": currency,
        "tran_type": payment.tran_type.value,
        "description": payment.description,
        "state": payment.state.value,
        "tran_ref": payment.tran_ref,
        "expires_at": payment.expires_at,
        "redirect_url": payment.redirect_url,
        "return_url": payment.return_url,
        "metadata": dict(payment.metadata),
        "saved_card_id": payment.saved_card_id,
        "captured_minor": payment.captured.minor_units,
        "refunded_minor": payment.refunded.minor_units,
        "conflict_count": len(payment.conflicts),
        **_hold_columns(payment),
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
    }


def _hold_columns(payment: Payment) -> dict[str, object]:
    hold = payment.hold
    if hold is not None and hold.amount.currency != payment.amount.currency:
        raise ValueError(f"payment {payment.id}: a hold of {hold.amount} is not in its currency")
    return {
        "hold_kind": hold.kind.value if hold else None,
        "hold_amount_minor": hold.amount.minor_units if hold else None,
        "hold_parent_tran_ref": hold.parent_tran_ref if hold else None,
        "hold_sequence": hold.sequence if hold else None,
        "hold_started_at": hold.started_at if hold else None,
    }


def cart_id_rows(
    payment_id: str, cart_ids: tuple[str, ...], stored: tuple[str, ...]
) -> list[dict[str, object]]:
    return [
        {"cart_id": cart_id, "payment_id": payment_id, "attempt": attempt}
        for attempt, cart_id in enumerate(cart_ids, start=1)
        if cart_id not in stored
    ]


def history_rows(payment: Payment, start: int) -> list[dict[str, object]]:
    return [
        {
            "payment_id": payment.id,
            "seq": seq,
            "from_state": entry.from_state.value if entry.from_state else None,
            "to_state": entry.to_state.value,
            "trigger": entry.trigger.value,
            "source": entry.source.value,
            "gateway_ref": entry.gateway_ref,
            "reason": entry.reason,
            "at": entry.at,
        }
        for seq, entry in enumerate(payment.history)
        if seq >= start
    ]


def conflict_rows(payment: Payment, start: int) -> list[dict[str, object]]:
    return [
        {
            "payment_id": payment.id,
            "tran_ref": note.tran_ref,
            "tran_type": note.tran_type.value,
            "reported_status": note.reported_status.value if note.reported_status else None,
            "state": note.state.value,
            "source": note.source.value,
            "at": note.at,
            "reason": note.reason,
        }
        for note in payment.conflicts[start:]
    ]


def transaction_row(payment_id: str, seq: int, record: GatewayTransaction) -> dict[str, object]:
    return {
        "tran_ref": record.tran_ref,
        "payment_id": payment_id,
        "seq": seq,
        "previous_tran_ref": record.previous_tran_ref,
        "tran_type": record.tran_type.value,
        "status": record.status.value if record.status else None,
        "amount_minor": record.amount.minor_units,
        "currency": record.amount.currency,
        "at": record.at,
        "charged_minor": record.charged.minor_units if record.charged else None,
        "charged_currency": record.charged.currency if record.charged else None,
        "response_code": record.response_code or None,
        "response_message": record.response_message or None,
    }


# ---- rows -> domain ---------------------------------------------------------------------------


def payment_from_row(
    row: Mapping[Any, Any],
    *,
    cart_ids: list[str],
    history: list[Transition],
    records: list[GatewayTransaction],
    conflicts: list[ConflictNote],
) -> Payment:
    currency = row["currency"]
    return Payment(
        id=row["id"],
        cart_id=row["cart_id"],
        profile_id=row["profile_id"],
        amount=Money(row["amount_minor"], currency),
        tran_type=TranType(row["tran_type"]),
        description=row["description"],
        state=PaymentState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        captured=Money(row["captured_minor"], currency),
        refunded=Money(row["refunded_minor"], currency),
        tran_ref=row["tran_ref"],
        expires_at=row["expires_at"],
        transactions=records,
        history=history,
        conflicts=conflicts,
        abandoned_cart_ids=[cart_id for cart_id in cart_ids if cart_id != row["cart_id"]],
        hold=_hold(row),
        redirect_url=row["redirect_url"],
        return_url=row["return_url"],
        metadata=dict(row["metadata"]),
        saved_card_id=row["saved_card_id"],
        version=row["version"],
    )


def _hold(row: Mapping[Any, Any]) -> FollowUpHold | None:
    if row["hold_kind"] is None:
        return None
    return FollowUpHold(
        kind=TranType(row["hold_kind"]),
        amount=Money(row["hold_amount_minor"], row["currency"]),
        parent_tran_ref=row["hold_parent_tran_ref"],
        sequence=row["hold_sequence"],
        started_at=row["hold_started_at"],
    )


def transition_from_row(row: Mapping[str, Any]) -> Transition:
    return Transition(
        from_state=PaymentState(row["from_state"]) if row["from_state"] else None,
        to_state=PaymentState(row["to_state"]),
        trigger=Trigger(row["trigger"]),
        source=ResultSource(row["source"]),
        gateway_ref=row["gateway_ref"],
        at=row["at"],
        reason=row["reason"],
    )


def gateway_transaction_from_row(row: Mapping[str, Any]) -> GatewayTransaction:
    return GatewayTransaction(
        tran_ref=row["tran_ref"],
        previous_tran_ref=row["previous_tran_ref"],
        tran_type=TranType(row["tran_type"]),
        status=GatewayStatus(row["status"]) if row["status"] else None,
        amount=Money(row["amount_minor"], row["currency"]),
        at=row["at"],
        charged=(
            Money(row["charged_minor"], row["charged_currency"])
            if row["charged_currency"] is not None
            else None
        ),
        response_code=row["response_code"] or "",
        response_message=row["response_message"] or "",
    )


def conflict_from_row(row: Mapping[str, Any]) -> ConflictNote:
    return ConflictNote(
        tran_ref=row["tran_ref"],
        tran_type=TranType(row["tran_type"]),
        reported_status=GatewayStatus(row["reported_status"]) if row["reported_status"] else None,
        state=PaymentState(row["state"]),
        source=ResultSource(row["source"]),
        at=row["at"],
        reason=row["reason"],
    )
