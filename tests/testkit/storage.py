"""In-memory implementations of the storage ports (``paytabs_guard.service.ports``).

Honest enough for the use cases to run on them as they run on SQL, without a database:

- a unit of work sees committed state and its own writes; leaving it without ``commit()``
  leaves no trace (payments, inbox entries, idempotency claims and answers, saved cards);
- ``commit()`` saves the payments that changed behind the optimistic ``version`` check
  (``StaleVersion`` when another unit of work saved one first, nothing written), bumps their
  versions and moves their pending events to :attr:`MemoryStore.outbox`, all or nothing;
- ``get(..., for_update=True)`` takes the payment's lock until the unit of work ends, and
  ``stuck`` skips and locks like ``SKIP LOCKED``;
- idempotency keys follow the SQL store's rules (a day at least, in-flight lease, fingerprint
  mismatch first).

Stored payments are deep copies: a use case never holds the object the store keeps, just as it
never holds a database row.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from paytabs_guard.domain import CardDetails, Payment, PaymentEvent
from paytabs_guard.domain.cards import SavedCard
from paytabs_guard.service.ports import (
    ClaimStatus,
    IdempotencyClaim,
    IdempotencyKeys,
    IdempotencyStore,
    StoredResponse,
    WebhookInbox,
)

MIN_TTL_SECONDS = 24 * 3600
"""As the SQL store: keys live at least a day."""


@dataclass(slots=True)
class StoredKey:
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    response: StoredResponse | None = None  # None while in flight


@dataclass
class MemoryStore:
    """What a database would hold: committed payments, outbox, inbox, keys and cards."""

    payments: dict[str, Payment] = field(default_factory=dict)
    outbox: list[PaymentEvent] = field(default_factory=list)
    inbox: dict[str, str] = field(default_factory=dict)  # key -> source
    keys: dict[tuple[str, str], StoredKey] = field(default_factory=dict)
    cards: dict[str, SavedCard] = field(default_factory=dict)
    in_flight_lease: timedelta = timedelta(seconds=120)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def idempotency_store(self) -> IdempotencyStore:
        """The standalone idempotency store on these keys (every call commits at once)."""
        return MemoryIdempotencyStore(self)

    def payment(self, payment_id: str) -> Payment:
        """A copy of the committed payment (KeyError when there is none)."""
        return copy.deepcopy(self.payments[payment_id])

    def lock(self, payment_id: str) -> asyncio.Lock:
        return self.locks.setdefault(payment_id, asyncio.Lock())


def claim_key(
    keys: dict[tuple[str, str], StoredKey],
    scope: str,
    key: str,
    fingerprint: str,
    *,
    now: datetime,
    ttl_seconds: int,
    lease: timedelta,
) -> IdempotencyClaim:
    """The SQL claim's rules on a dict: a new or expired key is taken over; one left in flight
    past the lease is interrupted, never taken over."""
    if ttl_seconds < MIN_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be at least {MIN_TTL_SECONDS}, got {ttl_seconds}")
    stored = keys.get((scope, key))
    if stored is None or stored.expires_at <= now:
        keys[(scope, key)] = StoredKey(fingerprint, now, now + timedelta(seconds=ttl_seconds))
        return IdempotencyClaim(ClaimStatus.NEW)
    return classify(stored, fingerprint, now - lease)


def classify(stored: StoredKey, fingerprint: str, lease_start: datetime) -> IdempotencyClaim:
    if stored.fingerprint != fingerprint:
        return IdempotencyClaim(ClaimStatus.MISMATCH)
    if stored.response is not None:
        return IdempotencyClaim(ClaimStatus.COMPLETED, stored.response)
    if stored.created_at <= lease_start:
        return IdempotencyClaim(ClaimStatus.INTERRUPTED)
    return IdempotencyClaim(ClaimStatus.IN_FLIGHT)


class MemoryIdempotencyStore(IdempotencyStore):
    """The ``IdempotencyStore``: every call commits at once."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> IdempotencyClaim:
        lease = self._store.in_flight_lease
        return claim_key(
            self._store.keys, scope, key, fingerprint, now=now, ttl_seconds=ttl_seconds, lease=lease
        )

    async def complete(
        self,
        scope: str,
        key: str,
        response: StoredResponse,
        *,
        now: datetime,  # noqa: ARG002 - the port's signature; answers keep no time here
    ) -> None:
        stored = self._store.keys.get((scope, key))
        if stored is not None:  # purged or taken over: answered anyway, as in SQL
            stored.response = response

    async def release(self, scope: str, key: str) -> None:
        stored = self._store.keys.get((scope, key))
        if stored is not None and stored.response is None:
            del self._store.keys[(scope, key)]

    async def find(
        self, scope: str, key: str, fingerprint: str, *, now: datetime
    ) -> IdempotencyClaim | None:
        stored = self._store.keys.get((scope, key))
        if stored is None or stored.expires_at <= now:
            return None
        return classify(stored, fingerprint, now - self._store.in_flight_lease)

    async def purge_expired(self, *, now: datetime) -> int:
        expired = [k for k, stored in self._store.keys.items() if stored.expires_at <= now]
        for k in expired:
            del self._store.keys[k]
        return len(expired)


class MemoryIdempotencyKeys(IdempotencyKeys):
    """The ``IdempotencyKeys`` of one unit of work: claims and answers land on commit."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.pending: dict[tuple[str, str], StoredKey] = {}
        self.answers: list[tuple[tuple[str, str], StoredResponse]] = []

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> IdempotencyClaim:
        view = {**self._store.keys, **self.pending}
        claim = claim_key(
            view,
            scope,
            key,
            fingerprint,
            now=now,
            ttl_seconds=ttl_seconds,
            lease=self._store.in_flight_lease,
        )
        if claim.status is ClaimStatus.NEW:
            self.pending[(scope, key)] = view[(scope, key)]
        return claim

    async def complete(
        self,
        scope: str,
        key: str,
        response: StoredResponse,
        *,
        now: datetime,  # noqa: ARG002 - the port's signature; answers keep no time here
    ) -> None:
        self.answers.append(((scope, key), response))

    def commit(self) -> None:
        self._store.keys.update(self.pending)
        for scope_key, response in self.answers:
            stored = self._store.keys.get(scope_key)
            if stored is not None:
                self._store.keys[scope_key] = dataclasses.replace(stored, response=response)
        self.pending.clear()
        self.answers.clear()


class MemoryWebhookInbox(WebhookInbox):
    """The ``WebhookInbox`` of one unit of work."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.added: dict[str, str] = {}
        self.forgotten: set[str] = set()

    async def record(self, key: str, *, source: str, now: datetime) -> bool:  # noqa: ARG002
        seen = key in self.added or (key in self._store.inbox and key not in self.forgotten)
        if not seen:
            self.added[key] = source
            self.forgotten.discard(key)
        return not seen

    async def forget(self, key: str) -> None:
        if self.added.pop(key, None) is None:
            self.forgotten.add(key)

    def commit(self) -> None:
        for key in self.forgotten:
            self._store.inbox.pop(key, None)
        self._store.inbox.update(self.added)
        self.added.clear()
        self.forgotten.clear()


class MemorySavedCards:
    """The ``SavedCards`` of one unit of work: its writes overlay the committed cards."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.written: dict[str, SavedCard] = {}

    def _get(self, card_id: str) -> SavedCard | None:
        return self.written.get(card_id) or self._store.cards.get(card_id)

    async def add(self, card: SavedCard) -> None:
        if self._get(card.id) is not None:
            raise ValueError(f"card {card.id} exists")  # the primary key would refuse it
        self.written[card.id] = card

    async def get(self, card_id: str, *, for_update: bool = False) -> SavedCard | None:  # noqa: ARG002
        return self._get(card_id)

    async def of_customer(self, customer_id: str) -> Sequence[SavedCard]:
        cards = {**self._store.cards, **self.written}.values()
        usable = [
            c
            for c in cards
            if c.customer_id == customer_id
            and c.token is not None
            and c.deleted_at is None
            and c.refused_at is None
        ]
        return sorted(usable, key=lambda c: (c.created_at, c.id))

    async def issued(
        self, card_id: str, payment_id: str, token: str, tran_ref: str, card: CardDetails | None
    ) -> None:
        saved = self._get(card_id)
        if saved is None or saved.payment_id != payment_id:
            return
        if saved.token is not None:
            return
        details = card or CardDetails()
        self.written[card_id] = dataclasses.replace(
            saved, token=token, tran_ref=tran_ref, details=details
        )

    async def delete(self, card_id: str, *, now: datetime) -> None:
        saved = self._get(card_id)
        if saved is not None and saved.deleted_at is None:
            self.written[card_id] = dataclasses.replace(saved, deleted_at=now)

    async def refuse(self, card_id: str, *, now: datetime) -> bool:
        saved = self._get(card_id)
        if saved is None or saved.refused_at is not None:
            return False
        self.written[card_id] = dataclasses.replace(saved, refused_at=now)
        return True

    async def deleted_with_token(self, limit: int) -> Sequence[SavedCard]:
        cards = {**self._store.cards, **self.written}.values()
        found = [c for c in cards if c.deleted_at is not None and c.token is not None]
        return sorted(found, key=lambda c: (c.deleted_at or c.created_at, c.id))[:limit]

    async def forget_token(self, card_id: str, token: str) -> bool:
        saved = self._get(card_id)
        if saved is None or saved.token != token:
            return False
        self.written[card_id] = dataclasses.replace(saved, token=None)
        return True

    def commit(self) -> None:
        self._store.cards.update(self.written)
        self.written.clear()
