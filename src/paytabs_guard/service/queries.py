"""Read-only use cases: finding and listing payments (no state changes, no gateway calls)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict, Unpack

from paytabs_guard.domain import Payment, PaymentState
from paytabs_guard.service.payment_steps import PaymentDeps

MAX_PAGE_SIZE = 100


async def find_by_gateway_reference(
    deps: PaymentDeps, *, cart_id: str | None, tran_ref: str | None
) -> Payment | None:
    """The payment a gateway reference belongs to: its transaction first, else its cart id
    (current or abandoned attempt). None when neither is ours."""
    async with deps.uow() as uow:
        if tran_ref:
            payment = await uow.payments.get_by_tran_ref(tran_ref)
            if payment is not None:
                return payment
        if cart_id:
            return await uow.payments.get_by_cart_id(cart_id)
    return None


class PaymentFilters(TypedDict, total=False):
    """What a listing may be narrowed by (``list_payments``'s keywords)."""

    states: Collection[PaymentState]
    created_from: datetime | None
    created_to: datetime | None
    after: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class PaymentListPage:
    """One page of a listing; ``next_after`` is the id to continue after (None: last page)."""

    payments: Sequence[Payment]
    next_after: str | None


async def list_payments(
    deps: PaymentDeps,
    *,
    states: Collection[PaymentState] = (),
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after: str | None = None,
    limit: int = 50,
) -> PaymentListPage:
    """Newest first, keyset-paginated; asks for one extra row to know whether more follow."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE_SIZE}, got {limit}")
    async with deps.uow() as uow:
        found = await uow.payments.list(
            states=states,
            created_from=created_from,
            created_to=created_to,
            after=after,
            limit=limit + 1,
        )
    page = list(found[:limit])
    more = len(found) > limit
    return PaymentListPage(page, page[-1].id if more and page else None)


async def search_payments(
    deps: PaymentDeps, *, reference: str | None = None, **filters: Unpack[PaymentFilters]
) -> PaymentListPage:
    """What an operator types into a search box: ``reference`` is a payment id, a cart id (any
    attempt's) or a PayTabs tran_ref, matched exactly; the other filters narrow it or, without
    a reference, list newest first like ``list_payments``."""
    if not reference:
        return await list_payments(deps, **filters)
    async with deps.uow() as uow:
        found = await uow.payments.get(reference)
    found = found or await find_by_gateway_reference(deps, cart_id=reference, tran_ref=reference)
    states = filters.get("states", ())
    created_from = filters.get("created_from")
    created_to = filters.get("created_to")
    matches = found is not None and (
        (not states or found.state in states)
        and (created_from is None or found.created_at >= created_from)
        and (created_to is None or found.created_at < created_to)
    )
    return PaymentListPage([found] if matches and found is not None else [], None)
