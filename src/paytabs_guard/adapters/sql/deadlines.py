"""The page deadlines the expiry sleeper walks through, in (deadline, id) order.

A keyset on ``(expires_at, id)`` rather than "deadline after T": several pages can share one
deadline to the microsecond, and a batch that ends among them must not skip the rest. The
``ix_payments_state_expires_at`` index answers it without touching rows of other states.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from paytabs_guard.domain import PaymentState
from paytabs_guard.service.ports import PageDeadline

from .tables import UtcDateTime, payments


async def waiting_pages(
    connection: AsyncConnection, *, after: PageDeadline | None, limit: int
) -> Sequence[PageDeadline]:
    """Up to ``limit`` deadlines of payments awaiting the customer, the first after ``after``."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    columns = (payments.c.expires_at, payments.c.id)
    statement = select(*columns).where(
        payments.c.state == PaymentState.AWAITING_CUSTOMER.value,
        payments.c.expires_at.is_not(None),
    )
    if after is not None:
        position = tuple_(literal(after.at, UtcDateTime()), literal(after.payment_id))
        statement = statement.where(tuple_(*columns) > position)
    rows = await connection.execute(statement.order_by(*columns).limit(limit))
    return [PageDeadline(at, payment_id) for at, payment_id in rows]
