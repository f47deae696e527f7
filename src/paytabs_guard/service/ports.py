"""What the use cases need from storage, as Protocols (implemented in ``adapters/sql``).

One unit of work = one database transaction. ``commit()`` writes the pending events of every
payment the unit of work touched into the outbox *in the same transaction* as the state change,
so a state change and its event are stored together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol, Self

from paytabs_guard.domain import CardDetails, Payment, PaymentState
from paytabs_guard.domain.cards import SavedCard


class ClaimStatus(StrEnum):
    """What ``IdempotencyStore.claim`` found for a key."""

    NEW = "new"  # first use: this request owns the key and must complete or release it
    IN_FLIGHT = "in_flight"  # another request with the same key has not finished yet
    COMPLETED = "completed"  # finished before: replay the stored response
    MISMATCH = "mismatch"  # the key was used with a different request
    # In flight longer than any request lives: its request died (a worker killed) and may
    # have reached PayTabs first. Never taken over and run again; answered as such.
    INTERRUPTED = "interrupted"


class PageDeadline(NamedTuple):
    """When a hosted page stops taking payments, and whose it is (ordered by time, then id)."""

    at: datetime
    payment_id: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first response given for an idempotency key, replayed verbatim."""

    status_code: int
    body: str  # JSON text
    resource_id: str | None


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    status: ClaimStatus
    response: StoredResponse | None = None  # set when COMPLETED


class KeyTaken(Exception):
    """The create's ``Idempotency-Key`` is owned by another request (or was used before):
    nothing was written; ``claim`` says what the key holds."""

    def __init__(self, claim: IdempotencyClaim) -> None:
        super().__init__(f"idempotency key is {claim.status.value}")
        self.claim = claim


class IdempotencyKeys(Protocol):
    """Idempotency keys (Stripe / IETF draft semantics), scoped per operation and client, inside
    a unit of work: the claim commits with the rows it guards (a create claims its key and
    inserts its payment in one transaction) and the stored answer with the state it describes."""

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> IdempotencyClaim: ...

    async def claim_with_commit(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> None:
        """The same claim, for a unit of work whose other steps do not depend on it: it may
        travel with the commit's writes (the SQL unit of work sends it in them). ``KeyTaken``
        is raised when the key is not this request's, here or at the latest by ``commit()``,
        and then nothing of the unit of work is written. By default (a class that subclasses
        this one and keeps no pending claims) the claim is made at once."""
        claim = await self.claim(scope, key, fingerprint, now=now, ttl_seconds=ttl_seconds)
        if claim.status is not ClaimStatus.NEW:
            raise KeyTaken(claim)

    async def complete(
        self, scope: str, key: str, response: StoredResponse, *, now: datetime
    ) -> None: ...


class IdempotencyStore(IdempotencyKeys, Protocol):
    """The same keys outside a unit of work, with their upkeep.

    Every call is its own committed transaction, so a concurrent request with the same key sees
    IN_FLIGHT at once (a unique constraint decides races).
    """

    async def release(self, scope: str, key: str) -> None:
        """Forget an IN_FLIGHT key whose request failed without an answer worth keeping."""
        ...

    async def find(
        self, scope: str, key: str, fingerprint: str, *, now: datetime
    ) -> IdempotencyClaim | None:
        """What a live key holds for a request with ``fingerprint``, without claiming it (one
        read): None when no unexpired claim has the key."""
        ...

    async def purge_expired(self, *, now: datetime) -> int: ...


class StaleVersion(Exception):
    """A payment saved without its row lock was changed by another transaction since it was
    read (optimistic ``version`` check). Nothing was written: reload it locked and apply again."""


class GatewayReferenceTaken(Exception):
    """A commit would give a PayTabs transaction reference to a second payment: PayTabs handed
    out a ``tran_ref`` this database already holds for another payment (a database used with
    another profile, or a simulator restarted with its seed). Nothing was written."""

    def __init__(self, tran_ref: str | None = None, payment_id: str | None = None) -> None:
        self.tran_ref = tran_ref
        self.payment_id = payment_id  # the payment that was refused it, when known
        super().__init__(
            "PayTabs answered with a transaction reference another payment already holds"
        )


class PaymentRepository(Protocol):
    """Payments with their history and gateway transactions. Reads inside a unit of work."""

    def add(self, payment: Payment) -> None: ...

    async def get(self, payment_id: str, *, for_update: bool = False) -> Payment | None: ...

    async def get_by_cart_id(self, cart_id: str, *, for_update: bool = False) -> Payment | None:
        """The payment whose current or earlier gateway attempt used ``cart_id``."""
        ...

    async def get_by_tran_ref(self, tran_ref: str, *, for_update: bool = False) -> Payment | None:
        """The payment owning ``tran_ref`` (its originating transaction or a follow-up)."""
        ...

    async def list(
        self,
        *,
        states: Collection[PaymentState] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Sequence[Payment]:
        """Newest first; ``after`` is the id of the last payment of the previous page."""
        ...

    async def stuck(
        self,
        states: Collection[PaymentState],
        *,
        updated_before: datetime,
        limit: int,
        expired_before: datetime | None = None,
    ) -> Sequence[str]:
        """Ids of payments in ``states`` not updated since ``updated_before`` (or, with
        ``expired_before``, whose page deadline ``expires_at`` passed before it), oldest first,
        claimed so that concurrent reconcilers on other instances skip them (SKIP LOCKED)."""
        ...

    async def awaiting_follow_ups(self, *, before: datetime, limit: int) -> Sequence[str]:
        """Ids of payments with an unsettled follow-up (``Payment.awaits_follow_up``): a hold
        taken before ``before`` (a younger one may be a request still in flight), or a
        follow-up recorded pending on a payment not updated since ``before``. Oldest first,
        claimed like ``stuck``. Served by small partial indexes: a payment with no follow-up in
        flight is never read."""
        ...

    async def waiting_pages(
        self, *, after: PageDeadline | None, limit: int
    ) -> Sequence[PageDeadline]:
        """The deadlines of payments awaiting the customer, earliest first, from the first one
        after ``after`` (all of them when None); at most ``limit``. Nothing is locked."""
        ...


class DeliverySeen(Exception):
    """A delivery recorded with the commit was recorded before: nothing was written."""

    def __init__(self, key: str) -> None:
        super().__init__("delivery seen before")
        self.key = key


class WebhookInbox(Protocol):
    """Deliveries already processed, for dedupe across retries, channels and instances."""

    async def record(self, key: str, *, source: str, now: datetime) -> bool:
        """True when ``key`` is new (and is now recorded); False for a duplicate."""
        ...

    async def record_with_commit(self, key: str, *, source: str, now: datetime) -> None:
        """The same record, for a unit of work that writes only if the delivery is new: it may
        travel with the commit's writes (the SQL unit of work sends it in them).
        ``DeliverySeen`` is raised for a duplicate, here or at the latest by ``commit()``, and
        then nothing of the unit of work is written. By default (a class that subclasses this
        one and keeps no pending records) the key is recorded at once."""
        if not await self.record(key, source=source, now=now):
            raise DeliverySeen(key)

    async def forget(self, key: str) -> None:
        """Undo ``record(key)`` in this unit of work (a delivery that was not applied)."""
        ...


class SavedCards(Protocol):
    """Saved cards, in the unit of work's transaction."""

    async def add(self, card: SavedCard) -> None: ...

    async def get(self, card_id: str, *, for_update: bool = False) -> SavedCard | None: ...

    async def of_customer(self, customer_id: str) -> Sequence[SavedCard]:
        """The customer's cards that can be charged, oldest first."""
        ...

    async def issued(
        self, card_id: str, payment_id: str, token: str, tran_ref: str, card: CardDetails | None
    ) -> None:
        """PayTabs issued ``token`` for the card ``payment_id`` saves (a no-op once it has one,
        or for another payment's card). A card deleted before its token came keeps it, so that
        it is deleted at PayTabs too (:meth:`deleted_with_token`)."""
        ...

    async def delete(self, card_id: str, *, now: datetime) -> None: ...

    async def forget_token(self, card_id: str, token: str) -> bool:
        """PayTabs deleted ``token``: keep no copy of it. Whether this call forgot it (False:
        the card no longer held it, another caller forgot it first)."""
        ...

    async def refuse(self, card_id: str, *, now: datetime) -> bool:
        """PayTabs refused the card's token as unknown: no more charges (``SavedCard.refused``),
        the token kept. Whether this call refused it (False: it was refused before)."""
        ...

    async def deleted_with_token(self, limit: int) -> Sequence[SavedCard]:
        """Deleted cards whose token PayTabs may still hold, oldest deletion first."""
        ...


class UnitOfWork(Protocol):
    payments: PaymentRepository
    inbox: WebhookInbox
    idempotency: IdempotencyKeys
    cards: SavedCards

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None:
        """Roll back whatever was not committed."""
        ...

    async def commit(self) -> None:
        """Write touched payments and their pending events (to the outbox), then commit."""
        ...

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once this unit of work has committed (in registration order).

        A rollback (leaving without ``commit()``, or a failed commit) runs none of them: what
        they announce (a relay wake-up, a payment-result metric) only happened if it is stored.
        A callback that raises is logged and skipped; the commit stands.
        """
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class SignOuts(Protocol):
    """Operator sessions ended before they expire (the console's sign-out), seen by every
    instance: the session cookie itself holds no state to revoke."""

    async def sign_out(self, session: str, *, expires_at: datetime, now: datetime) -> None:
        """Remember ``session`` as ended until ``expires_at`` (when its cookie would lapse
        anyway); those that lapsed by ``now`` are forgotten on the way."""
        ...

    async def signed_out(self, session: str) -> bool:
        """Whether ``session`` was ended."""
        ...
