"""The in-memory payment repository and unit of work (``paytabs_guard.service.ports``).

See ``storage.py`` for what "honest" means here; this module holds the payments part: an
identity map per unit of work, the optimistic ``version`` check on commit, row locks for
``for_update`` and the outbox.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from paytabs_guard.domain import Payment, PaymentState, Signal
from paytabs_guard.service.ports import (
    IdempotencyKeys,
    PageDeadline,
    PaymentRepository,
    SavedCards,
    StaleVersion,
    UnitOfWork,
    UnitOfWorkFactory,
    WebhookInbox,
)

from .storage import MemoryIdempotencyKeys, MemorySavedCards, MemoryStore, MemoryWebhookInbox


@dataclass(slots=True)
class _Entry:
    payment: Payment
    loaded: dict[str, Any] | None  # what the store held when loaded; None: given to add()


def _fields(payment: Payment) -> dict[str, Any]:
    return dataclasses.asdict(payment)


class MemoryPaymentRepository:
    """The ``PaymentRepository`` of one ``MemoryUnitOfWork``."""

    def __init__(self, store: MemoryStore, uow: MemoryUnitOfWork) -> None:
        self._store = store
        self._uow = uow
        self.entries: dict[str, _Entry] = {}

    def add(self, payment: Payment) -> None:
        known = self.entries.get(payment.id)
        if known is not None and known.payment is not payment:
            raise ValueError(f"payment {payment.id} is already in this unit of work")
        if known is None:
            self.entries[payment.id] = _Entry(payment, loaded=None)

    async def get(self, payment_id: str, *, for_update: bool = False) -> Payment | None:
        known = self.entries.get(payment_id)
        if known is not None:
            return known.payment
        if for_update:
            await self._uow.take_lock(payment_id)
        stored = self._store.payments.get(payment_id)
        if stored is None:
            return None
        payment = copy.deepcopy(stored)
        self.entries[payment_id] = _Entry(payment, loaded=_fields(payment))
        return payment

    async def get_by_cart_id(self, cart_id: str, *, for_update: bool = False) -> Payment | None:
        for payment in self._store.payments.values():
            if cart_id == payment.cart_id or cart_id in payment.abandoned_cart_ids:
                return await self.get(payment.id, for_update=for_update)
        return None

    async def get_by_tran_ref(self, tran_ref: str, *, for_update: bool = False) -> Payment | None:
        for payment in self._store.payments.values():
            refs = {payment.tran_ref, *(t.tran_ref for t in payment.transactions)}
            if tran_ref in refs:
                return await self.get(payment.id, for_update=for_update)
        return None

    async def list(
        self,
        *,
        states: Collection[PaymentState] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Sequence[Payment]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        chosen = [
            p
            for p in self._store.payments.values()
            if (not states or p.state in states)
            and (created_from is None or p.created_at >= created_from)
            and (created_to is None or p.created_at < created_to)
        ]
        chosen.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        if after is not None:
            cursor = self._store.payments.get(after)
            if cursor is None:
                return []
            chosen = [p for p in chosen if (p.created_at, p.id) < (cursor.created_at, cursor.id)]
        return [copy.deepcopy(p) for p in chosen[:limit]]

    async def stuck(
        self,
        states: Collection[PaymentState],
        *,
        updated_before: datetime,
        limit: int,
        expired_before: datetime | None = None,
    ) -> Sequence[str]:
        if not states or limit < 1:
            return []

        def due(p: Payment) -> bool:
            if p.updated_at < updated_before:
                return True
            if expired_before is None or p.expires_at is None:
                return False
            return p.expires_at <= expired_before

        candidates = sorted(
            (p for p in self._store.payments.values() if p.state in states and due(p)),
            key=lambda p: (p.updated_at, p.id),
        )
        claimed: list[str] = []
        for payment in candidates:
            if len(claimed) == limit:
                break
            if await self._uow.try_lock(payment.id):  # SKIP LOCKED: another reconciler has it
                claimed.append(payment.id)
        return claimed

    async def awaiting_follow_ups(self, *, before: datetime, limit: int) -> Sequence[str]:
        if limit < 1:
            return []

        def due(p: Payment) -> bool:
            held = p.hold is not None and p.hold.started_at < before
            pending = any(t.signal is Signal.FOLLOW_UP_PENDING for t in p.transactions)
            return held or (pending and p.updated_at < before)

        candidates = sorted(
            (p for p in self._store.payments.values() if due(p)),
            key=lambda p: (p.updated_at, p.id),
        )
        claimed: list[str] = []
        for payment in candidates:
            if len(claimed) == limit:
                break
            if await self._uow.try_lock(payment.id):  # SKIP LOCKED, as ``stuck``
                claimed.append(payment.id)
        return claimed

    async def waiting_pages(
        self, *, after: PageDeadline | None, limit: int
    ) -> Sequence[PageDeadline]:
        deadlines = sorted(
            PageDeadline(p.expires_at, p.id)
            for p in self._store.payments.values()
            if p.state is PaymentState.AWAITING_CUSTOMER and p.expires_at is not None
        )
        return [d for d in deadlines if after is None or d > after][:limit]

    def to_write(self) -> Sequence[Payment]:
        """The payments that changed, after the version check (StaleVersion: write nothing)."""
        changed: builtins.list[Payment] = []
        for entry in self.entries.values():
            payment = entry.payment
            stored = self._store.payments.get(payment.id)
            if entry.loaded is None and payment.version == 0:
                if stored is not None:
                    raise ValueError(f"payment {payment.id} exists")  # the primary key
                changed.append(payment)
                continue
            if stored is None or stored.version != payment.version:
                raise StaleVersion(payment.id)
            before = entry.loaded if entry.loaded is not None else _fields(stored)
            if _fields(payment) != before or payment.pending_events:
                changed.append(payment)
        return changed

    def committed(self, written: Sequence[Payment]) -> None:
        for payment in written:
            payment.version += 1
            self._store.outbox.extend(payment.collect_events())
            self._store.payments[payment.id] = copy.deepcopy(payment)
        for entry in self.entries.values():
            entry.loaded = _fields(entry.payment)


class MemoryUnitOfWork:
    """One "transaction" on a :class:`MemoryStore`: all its writes land on ``commit()``."""

    payments: PaymentRepository
    inbox: WebhookInbox
    idempotency: IdempotencyKeys
    cards: SavedCards

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._payments = MemoryPaymentRepository(store, self)
        self._inbox = MemoryWebhookInbox(store)
        self._keys = MemoryIdempotencyKeys(store)
        self._cards = MemorySavedCards(store)
        self.payments = self._payments
        self.inbox = self._inbox
        self.idempotency = self._keys
        self.cards = self._cards
        self._held: list[str] = []
        self._after_commit: list[Callable[[], object]] = []

    async def take_lock(self, payment_id: str) -> None:
        if payment_id not in self._held:
            await self._store.lock(payment_id).acquire()
            self._held.append(payment_id)

    async def try_lock(self, payment_id: str) -> bool:
        """Take the lock only if it is free (acquiring a free lock never suspends)."""
        if payment_id in self._held:
            return True
        lock = self._store.lock(payment_id)
        if lock.locked():
            return False
        await lock.acquire()
        self._held.append(payment_id)
        return True

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once this unit of work has committed (never after a rollback)."""
        self._after_commit.append(callback)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._after_commit.clear()
        self._payments.entries.clear()
        self._inbox.added.clear()
        self._inbox.forgotten.clear()
        self._keys.pending.clear()
        self._keys.answers.clear()
        self._cards.written.clear()
        self._release()

    async def commit(self) -> None:
        written = self._payments.to_write()  # raises before anything is stored
        self._payments.committed(written)
        self._inbox.commit()
        self._keys.commit()
        self._cards.commit()
        self._release()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def _release(self) -> None:
        while self._held:
            self._store.lock(self._held.pop()).release()


def memory_uow_factory(store: MemoryStore) -> UnitOfWorkFactory:
    """What ``PaymentDeps.uow`` takes: a new unit of work on ``store`` per call."""

    def open_unit_of_work() -> UnitOfWork:
        return MemoryUnitOfWork(store)

    return open_unit_of_work
