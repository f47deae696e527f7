"""In-memory fakes of the service's ports: a unit of work over dicts and a scripted gateway.

They keep the promises the use cases rely on, so a use-case test needs neither a database nor
the simulator: a unit of work commits all or nothing (payments, outbox events, inbox, keys,
cards) and hands out copies, so a change that is not committed is not seen by the next one; a
payment saved over a newer version raises ``StaleVersion``; after-commit callbacks run after a
commit only. The database-backed tests beside them check the real adapters keep the same ones.
"""

# The fakes take every argument of the ports they stand for, used or not.
# ruff: noqa: ARG002

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Self

from paytabs_guard.domain import (
    CardDetails,
    FollowUpType,
    GatewayResult,
    GatewayStatus,
    Money,
    Operation,
    Payment,
    PaymentEvent,
    PaymentState,
    ResultSource,
    Signal,
    TranType,
)
from paytabs_guard.domain.cards import SavedCard
from paytabs_guard.service.gateway import (
    GatewayRejected,
    GatewayTurnedAway,
    PageDetails,
    PageOpened,
)
from paytabs_guard.service.ports import (
    ClaimStatus,
    IdempotencyClaim,
    IdempotencyKeys,
    PageDeadline,
    PaymentRepository,
    SavedCards,
    StaleVersion,
    StoredResponse,
    WebhookInbox,
)


@dataclass
class MemoryStore:
    """What a database would hold: committed state only."""

    payments: dict[str, Payment] = field(default_factory=dict)
    outbox: list[PaymentEvent] = field(default_factory=list)
    inbox: set[str] = field(default_factory=set)
    keys: dict[tuple[str, str], tuple[str, StoredResponse | None]] = field(default_factory=dict)
    cards: dict[str, SavedCard] = field(default_factory=dict)
    commits: int = 0

    def unit_of_work(self) -> MemoryUnitOfWork:
        """The factory the use cases call (``PaymentDeps.uow``)."""
        return MemoryUnitOfWork(self)


Staged = Callable[[MemoryStore], None]


class MemoryPayments:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.seen: dict[str, Payment] = {}

    def add(self, payment: Payment) -> None:
        self.seen[payment.id] = payment

    async def get(self, payment_id: str, *, for_update: bool = False) -> Payment | None:
        if payment_id not in self.seen:
            stored = self._store.payments.get(payment_id)
            if stored is None:
                return None
            self.seen[payment_id] = copy.deepcopy(stored)
        return self.seen[payment_id]

    async def _first(self, owns: Callable[[Payment], bool]) -> Payment | None:
        for payment in self._store.payments.values():
            if owns(payment):
                return await self.get(payment.id)
        return None

    async def get_by_cart_id(self, cart_id: str, *, for_update: bool = False) -> Payment | None:
        return await self._first(lambda p: cart_id in (p.cart_id, *p.abandoned_cart_ids))

    async def get_by_tran_ref(self, tran_ref: str, *, for_update: bool = False) -> Payment | None:
        return await self._first(
            lambda p: p.tran_ref == tran_ref or any(t.tran_ref == tran_ref for t in p.transactions)
        )

    async def list(
        self,
        *,
        states: Collection[PaymentState] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Sequence[Payment]:
        newest = sorted(self._store.payments.values(), key=lambda p: (p.created_at, p.id))[::-1]
        if after is not None:
            ids = [p.id for p in newest]
            newest = newest[ids.index(after) + 1 :] if after in ids else []
        found = [
            p
            for p in newest
            if (not states or p.state in states)
            and (created_from is None or p.created_at >= created_from)
            and (created_to is None or p.created_at < created_to)
        ]
        return [copy.deepcopy(p) for p in found[:limit]]

    async def stuck(
        self,
        states: Collection[PaymentState],
        *,
        updated_before: datetime,
        limit: int,
        expired_before: datetime | None = None,
    ) -> Sequence[str]:
        return [
            p.id
            for p in self._store.payments.values()
            if p.state in states and p.updated_at < updated_before
        ][:limit]

    async def awaiting_follow_ups(self, *, before: datetime, limit: int) -> Sequence[str]:
        return [
            p.id
            for p in self._store.payments.values()
            if (p.hold is not None and p.hold.started_at < before)
            or (
                any(t.signal is Signal.FOLLOW_UP_PENDING for t in p.transactions)
                and p.updated_at < before
            )
        ][:limit]

    async def waiting_pages(
        self, *, after: PageDeadline | None, limit: int
    ) -> Sequence[PageDeadline]:
        pages = sorted(
            PageDeadline(p.expires_at, p.id)
            for p in self._store.payments.values()
            if p.state is PaymentState.AWAITING_CUSTOMER and p.expires_at is not None
        )
        return [page for page in pages if after is None or page > after][:limit]


class MemoryInbox(WebhookInbox):
    def __init__(self, store: MemoryStore, staged: list[Staged]) -> None:
        self._store = store
        self._staged = staged
        self._recorded: set[str] = set()

    async def record(self, key: str, *, source: str, now: datetime) -> bool:
        if key in self._store.inbox or key in self._recorded:
            return False
        self._recorded.add(key)
        return True

    async def forget(self, key: str) -> None:
        self._recorded.discard(key)

    def stage(self) -> None:
        recorded = set(self._recorded)
        self._staged.append(lambda store: store.inbox.update(recorded))


class MemoryKeys(IdempotencyKeys):
    def __init__(self, store: MemoryStore, staged: list[Staged]) -> None:
        self._store = store
        self._staged = staged

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> IdempotencyClaim:
        held = self._store.keys.get((scope, key))
        if held is None:
            self._staged.append(
                lambda store: store.keys.update({(scope, key): (fingerprint, None)})
            )
            return IdempotencyClaim(ClaimStatus.NEW)
        if held[0] != fingerprint:
            return IdempotencyClaim(ClaimStatus.MISMATCH)
        if held[1] is not None:
            return IdempotencyClaim(ClaimStatus.COMPLETED, held[1])
        return IdempotencyClaim(ClaimStatus.IN_FLIGHT)

    async def complete(
        self, scope: str, key: str, response: StoredResponse, *, now: datetime
    ) -> None:
        def write(store: MemoryStore) -> None:
            fingerprint, _ = store.keys[(scope, key)]
            store.keys[(scope, key)] = (fingerprint, response)

        self._staged.append(write)


class MemoryCards:
    def __init__(self, store: MemoryStore, staged: list[Staged]) -> None:
        self._store = store
        self._staged = staged

    async def add(self, card: SavedCard) -> None:
        self._staged.append(lambda store: store.cards.update({card.id: card}))

    async def get(self, card_id: str, *, for_update: bool = False) -> SavedCard | None:
        return self._store.cards.get(card_id)

    async def of_customer(self, customer_id: str) -> Sequence[SavedCard]:
        return [
            card
            for card in self._store.cards.values()
            if card.customer_id == customer_id and card.ready
        ]

    def _change(self, card_id: str, **changes: object) -> None:
        def write(store: MemoryStore) -> None:
            if card_id in store.cards:
                store.cards[card_id] = replace(store.cards[card_id], **changes)  # type: ignore[arg-type]

        self._staged.append(write)

    async def issued(
        self, card_id: str, payment_id: str, token: str, tran_ref: str, card: CardDetails | None
    ) -> None:
        self._change(card_id, token=token, tran_ref=tran_ref)

    async def delete(self, card_id: str, *, now: datetime) -> None:
        self._change(card_id, deleted_at=now)

    async def forget_token(self, card_id: str, token: str) -> bool:
        card = self._store.cards.get(card_id)
        if card is None or card.token != token:
            return False
        self._change(card_id, token=None)
        return True

    async def refuse(self, card_id: str, *, now: datetime) -> bool:
        card = self._store.cards.get(card_id)
        if card is None or card.refused_at is not None:
            return False
        self._change(card_id, refused_at=now)
        return True

    async def deleted_with_token(self, limit: int) -> Sequence[SavedCard]:
        found = [c for c in self._store.cards.values() if c.deleted_at and c.token]
        return sorted(found, key=lambda c: (c.deleted_at, c.id))[:limit]


class MemoryUnitOfWork:
    """``UnitOfWork`` over a :class:`MemoryStore`: nothing reaches it before ``commit()``."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._staged: list[Staged] = []
        self._after_commit: list[Callable[[], object]] = []
        self._payments = MemoryPayments(store)
        self._inbox = MemoryInbox(store, self._staged)
        # typed as the ports, as the use cases see them
        self.payments: PaymentRepository = self._payments
        self.inbox: WebhookInbox = self._inbox
        self.idempotency: IdempotencyKeys = MemoryKeys(store, self._staged)
        self.cards: SavedCards = MemoryCards(store, self._staged)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._staged.clear()
        self._after_commit.clear()

    def after_commit(self, callback: Callable[[], object]) -> None:
        self._after_commit.append(callback)

    async def commit(self) -> None:
        for payment in self._payments.seen.values():
            stored = self._store.payments.get(payment.id)
            if (0 if stored is None else stored.version) != payment.version:
                raise StaleVersion(payment.id)
        self._inbox.stage()
        for payment in self._payments.seen.values():
            payment.version += 1
            self._store.outbox.extend(payment.collect_events())
            self._store.payments[payment.id] = copy.deepcopy(payment)
        for write in self._staged:
            write(self._store)
        self._store.commits += 1
        callbacks, self._after_commit = self._after_commit, []
        self._staged.clear()
        for callback in callbacks:
            callback()


class ScriptedGateway:
    """``Gateway`` that answers as told: pages open, follow-ups are approved, queries return
    ``held[cart_id]``; ``closed`` holds the breaker waits of open families."""

    def __init__(self, profile_id: int) -> None:
        self.profile_id = profile_id
        self.closed: dict[Operation, float] = {}
        self.refuse_pages: GatewayRejected | None = None
        self.held: dict[str, list[GatewayResult]] = {}
        self.pages: list[tuple[str, PageDetails]] = []
        self.deleted_tokens: list[str] = []
        self._refs = itertools.count(1)

    def unavailable_for(self, operation: Operation) -> float | None:
        return self.closed.get(operation)

    def turn_away(self, operation: Operation) -> float | None:
        return self.unavailable_for(operation)

    def reserve(self, operation: Operation) -> contextlib.AbstractContextManager[object]:
        wait = self.turn_away(operation)
        if wait is not None:
            raise GatewayTurnedAway("circuit open", retry_after=wait)
        return contextlib.nullcontext()

    async def wait_available(self, operation: Operation, max_wait: float) -> bool:
        return operation not in self.closed

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        self.pages.append((payment.cart_id, details))
        if self.refuse_pages is not None:
            raise self.refuse_pages
        number = next(self._refs)
        return PageOpened(f"TST{number:04d}", f"https://pay.example/page/{number}")

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        return list(self.held.get(cart_id, []))

    async def follow_up(
        self,
        payment: Payment,
        kind: FollowUpType,
        amount: Money,
        *,
        parent_tran_ref: str,
        known_tran_refs: Collection[str],
        sequence: int = 1,
    ) -> GatewayResult:
        return self.result(
            payment,
            GatewayStatus.AUTHORIZED,
            tran_type=TranType(kind.value),
            amount=amount,
            previous=parent_tran_ref,
        )

    async def charge_token(
        self, payment: Payment, *, token: str, token_tran_ref: str, callback_url: str
    ) -> GatewayResult:
        return self.result(payment, GatewayStatus.AUTHORIZED)

    async def delete_token(self, token: str) -> None:
        self.deleted_tokens.append(token)

    def result(
        self,
        payment: Payment,
        status: GatewayStatus | None,
        *,
        tran_type: TranType | None = None,
        amount: Money | None = None,
        previous: str | None = None,
        source: ResultSource = ResultSource.CALLBACK,
    ) -> GatewayResult:
        """What PayTabs would say about ``payment`` (its page transaction by default)."""
        follow_up = previous is not None
        return GatewayResult(
            tran_ref=f"TST{next(self._refs):04d}" if follow_up else (payment.tran_ref or "TST"),
            previous_tran_ref=previous,
            cart_id=payment.cart_id,
            profile_id=self.profile_id,
            tran_type=tran_type or payment.tran_type,
            status=status,
            amount=amount or payment.amount,
            source=source,
            response_code="G12345" if status is GatewayStatus.AUTHORIZED else "",
            response_message="Authorised" if status is GatewayStatus.AUTHORIZED else "",
        )
