"""Payments in every shape storage must keep, gateway results for them, and read helpers."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.tables import metadata, outbox
from paytabs_guard.domain import (
    GatewayResult,
    GatewayStatus,
    Money,
    Outcome,
    OutcomeKind,
    Payment,
    ResultSource,
    TranType,
)

T0 = datetime(2025, 1, 29, 9, 0, tzinfo=UTC)
PROFILE = 47170
PAGE_TTL = timedelta(minutes=20)
RIYADH = timezone(timedelta(hours=3))

A = GatewayStatus.AUTHORIZED
P = GatewayStatus.PENDING
D = GatewayStatus.DECLINED


def at(minutes: float) -> datetime:
    """A moment ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def fixed_clock() -> datetime:
    """The time outbox rows are stamped with in these tests."""
    return at(1000)


def sar(amount: str) -> Money:
    return Money.of(amount, "SAR")


def kwd(amount: str) -> Money:
    return Money.of(amount, "KWD")


def applied(outcome: Outcome) -> Outcome:
    """Fail loudly when a setup step did not apply."""
    if outcome.kind not in (OutcomeKind.APPLIED, OutcomeKind.CONFLICT):
        raise AssertionError(f"setup step not applied: {outcome}")
    return outcome


def new_payment(
    payment_id: str = "pay_1",
    *,
    cart_id: str | None = None,
    amount: Money | None = None,
    tran_type: TranType = TranType.SALE,
    created: datetime = T0,
) -> Payment:
    """A payment in CREATED."""
    return Payment.create(
        id=payment_id,
        cart_id=cart_id or f"cart-{payment_id}",
        profile_id=PROFILE,
        amount=amount or sar("100.00"),
        tran_type=tran_type,
        description=f"Order {payment_id}",
        at=created,
        return_url=f"https://shop.example/orders/{payment_id}",
        metadata={"order": payment_id, "note": "تجربة ✓"},
    )


def page_ref(payment: Payment) -> str:
    return f"TST-{payment.cart_id}"


def awaiting(
    payment_id: str = "pay_1",
    *,
    amount: Money | None = None,
    tran_type: TranType = TranType.SALE,
    created: datetime = T0,
) -> Payment:
    """A payment whose hosted page exists (tran_ref and expires_at set)."""
    payment = new_payment(payment_id, amount=amount, tran_type=tran_type, created=created)
    applied(payment.mark_initiating(at=payment.created_at + timedelta(seconds=5)))
    page_at = payment.created_at + timedelta(seconds=12)
    url = f"https://secure.paytabs.sa/payment/page/{page_ref(payment)}"
    applied(
        payment.page_created(page_ref(payment), page_at + PAGE_TTL, at=page_at, redirect_url=url)
    )
    return payment


def result(
    payment: Payment,
    status: GatewayStatus | None,
    *,
    tran_ref: str | None = None,
    tran_type: TranType | None = None,
    previous: str | None = None,
    amount: Money | None = None,
) -> GatewayResult:
    """A callback about ``payment``; by default about its own page transaction."""
    return GatewayResult(
        tran_ref=tran_ref or payment.tran_ref or page_ref(payment),
        previous_tran_ref=previous,
        cart_id=payment.cart_id,
        profile_id=PROFILE,
        tran_type=tran_type or payment.tran_type,
        status=status,
        amount=amount or payment.amount,
        source=ResultSource.CALLBACK,
        response_code="G12345" if status is A else "",
        response_message="Authorised" if status is A else "",
    )


def completed_sale(payment_id: str = "pay_1", *, created: datetime = T0) -> Payment:
    payment = awaiting(payment_id, created=created)
    applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
    return payment


def kwd_auth(payment_id: str = "pay_kwd") -> Payment:
    """KWD 12.500, an authorisation's page created."""
    return awaiting(payment_id, amount=kwd("12.500"), tran_type=TranType.AUTH)


def kwd_follow_up_steps(payment: Payment) -> list[GatewayResult]:
    """For ``kwd_auth``: authorised, a capture declined, a capture, a refund of 2.250, and a
    second refund of 1.125 still pending: follow-ups in every status."""
    auth, capture, refund = payment.tran_ref, TranType.CAPTURE, TranType.REFUND
    return [
        result(payment, A),
        result(payment, D, tran_ref="TSTCAP-D", tran_type=capture, previous=auth),
        result(payment, A, tran_ref="TSTCAP-A", tran_type=capture, previous=auth),
        result(
            payment,
            A,
            tran_ref="TSTREF-1",
            tran_type=refund,
            previous="TSTCAP-A",
            amount=kwd("2.250"),
        ),
        result(
            payment,
            P,
            tran_ref="TSTREF-2",
            tran_type=refund,
            previous="TSTCAP-A",
            amount=kwd("1.125"),
        ),
    ]


def kwd_auth_captured_refunded(payment_id: str = "pay_kwd") -> Payment:
    """``kwd_auth`` with every ``kwd_follow_up_steps`` applied."""
    payment = kwd_auth(payment_id)
    for minute, step in enumerate(kwd_follow_up_steps(payment), start=3):
        applied(payment.apply_gateway_result(step, at=at(minute)))
    return payment


def refund_in_flight(payment_id: str = "pay_hold") -> Payment:
    """KWD follow-ups, then a third refund sent and not answered yet (the payment's hold)."""
    payment = kwd_auth_captured_refunded(payment_id)
    payment.ensure_can_refund(kwd("0.500"))
    payment.hold_follow_up(TranType.REFUND, kwd("0.500"), "TSTCAP-A", at=at(9))
    return payment


def with_conflict(payment_id: str = "pay_conflict") -> Payment:
    """Completed, then the gateway said D for the same sale: a conflict note, not applied."""
    payment = completed_sale(payment_id)
    outcome = payment.apply_gateway_result(result(payment, D), at=at(8))
    assert outcome.kind is OutcomeKind.CONFLICT
    return payment


def with_abandoned_cart(payment_id: str = "pay_retry") -> Payment:
    """The first page's URL was lost: a new attempt under a new cart id, then a page for it."""
    payment = new_payment(payment_id)
    applied(payment.mark_initiating(at=at(0.1), expires_at=at(20)))
    applied(payment.initiation_ambiguous(at=at(0.2)))
    applied(payment.new_attempt(f"cart-{payment_id}-2", at=at(1)))  # back to initiating
    # An aware time in another zone with microseconds: stored as the same instant.
    page_at = datetime(2025, 1, 29, 12, 1, 12, 345678, tzinfo=RIYADH)
    applied(payment.page_created(page_ref(payment), page_at + PAGE_TTL, at=page_at))
    return payment


def same_payment(stored: Payment | None, expected: Payment, *, version: bool = True) -> bool:
    """Every field equal (``Payment`` compares by identity), pending events aside."""
    assert stored is not None
    for field in fields(Payment):
        if field.name == "pending_events" or (field.name == "version" and not version):
            continue
        mine, theirs = getattr(stored, field.name), getattr(expected, field.name)
        assert mine == theirs, f"{field.name}: {mine!r} != {theirs!r}"
    return True


async def outbox_types(engine: AsyncEngine, payment_id: str) -> list[str]:
    """The outbox rows of ``payment_id`` in order, by type."""
    async with engine.connect() as connection:
        rows = await connection.scalars(
            select(outbox.c.type).where(outbox.c.payment_id == payment_id).order_by(outbox.c.seq)
        )
        return list(rows)


async def count(engine: AsyncEngine, table_name: str) -> int:
    """Rows in ``table_name``."""
    table = metadata.tables[table_name]
    async with engine.connect() as connection:
        total = await connection.scalar(select(func.count()).select_from(table))
    return int(total or 0)
