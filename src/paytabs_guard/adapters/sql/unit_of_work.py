"""The SQL unit of work: one transaction for payments, saved cards, inbox and outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final, Self

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from paytabs_guard import tracing
from paytabs_guard.observability import get_logger
from paytabs_guard.resilience.clock import utc_now
from paytabs_guard.service.ports import (
    ClaimStatus,
    DeliverySeen,
    IdempotencyClaim,
    IdempotencyKeys,
    KeyTaken,
    PaymentRepository,
    SavedCards,
    UnitOfWorkFactory,
    WebhookInbox,
)

from . import outbox
from .batched_writes import BatchedWrites
from .cards import SqlSavedCards
from .combined_writes import CombinedWrites
from .engine import single_statement
from .errors import ClaimLost, reference_taken
from .idempotency import PendingClaim, SqlIdempotencyKeys, read_claim
from .inbox import PendingDelivery, SqlWebhookInbox
from .repository import SqlPaymentRepository
from .sqlite_driver import BatchStatementFailed
from .transaction import DbTransaction
from .write_health import STORAGE_ERRORS, WriteHealth, read_only, reconnect_read_only
from .writes import Writes

Clock = Callable[[], datetime]
log = get_logger(__name__)


class SqlUnitOfWork:
    """One database transaction, begun on first use. ``commit()`` saves the payments it loaded
    or was given, writes their pending events to the outbox and commits, all or nothing;
    leaving without ``commit()`` rolls back. Callbacks given to ``after_commit`` run after a
    successful commit only.

    Locking: ``payments.get(..., for_update=True)`` takes the row lock on PostgreSQL
    (``SELECT … FOR UPDATE``); on SQLite every unit of work is a ``BEGIN IMMEDIATE`` write
    transaction, so the first statement takes the database's write lock.
    """

    payments: PaymentRepository
    inbox: WebhookInbox
    idempotency: IdempotencyKeys
    cards: SavedCards

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock = utc_now,
        key_lease_seconds: float = 120.0,
        write_health: WriteHealth | None = None,
    ) -> None:
        self._clock = clock
        self._engine = engine
        self._write_health = write_health or WriteHealth()
        self._transaction = DbTransaction(engine)
        self._payments = SqlPaymentRepository(self._transaction)
        self.payments = self._payments
        self._deliveries: list[PendingDelivery] = []  # recorded with the commit
        self.inbox = SqlWebhookInbox(self._transaction, self._deliveries)
        self._answers: list[tuple[str, str, dict[str, object]]] = []
        self._claims: list[PendingClaim] = []  # claims sent with the commit (PostgreSQL)
        self.idempotency = SqlIdempotencyKeys(
            self._transaction,
            self._answers,
            self._claims,
            in_flight_lease_seconds=key_lease_seconds,
        )
        self.cards = SqlSavedCards(self._transaction)
        self._span = tracing.NO_SPAN
        self._engine = engine
        self._dialect = engine.dialect.name
        self._after_commit: list[Callable[[], object]] = []

    async def __aenter__(self) -> Self:
        if tracing.ENABLED:
            self._span = tracing.span("db unit of work", "client").__enter__()
            self._span.set("db.system.name", self._dialect)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Roll back whatever was not committed."""
        try:
            await self._rollback()
        finally:
            error = exc_info[1]
            if _refusal(error):
                # One of our own refusals (a key taken, a card not found, a stale version)
                # ended the unit of work: a decision, not a failure of the database. Marked
                # as an error, every idempotent replay would be kept by a tail sampler that
                # keeps errors, as docs/observability.md suggests.
                self._span.set("db.rolled_back_by", type(error).__name__)
                self._span.__exit__(None, None, None)
            else:
                self._span.__exit__(*exc_info[:3])

    async def commit(self) -> None:
        """Write changed payments (raising ``ConcurrentUpdate`` if another transaction saved one
        first) and their pending events, then commit."""
        writes: Writes | None = None

        async def open_writes() -> Writes:
            nonlocal writes
            if writes is None:
                if self._dialect == "postgresql":  # one statement, sent by _finish
                    writes = CombinedWrites()
                else:  # one hand-off to aiosqlite's thread, sent by finish
                    writes = BatchedWrites(await self._transaction.connection())
            return writes

        try:
            for claim in self._claims:
                await (await open_writes()).claim_key(claim)
            for delivery in self._deliveries:
                await (await open_writes()).record_delivery(delivery)
            events = await self._payments.flush(open_writes)
            if events:
                await outbox.append(await open_writes(), events, now=self._clock())
            for scope, key, values in self._answers:
                await (await open_writes()).complete_key(scope, key, values)
            if isinstance(writes, CombinedWrites):
                await self._finish(writes)
            elif isinstance(writes, BatchedWrites):
                try:
                    await writes.finish(commit=True)  # the writes and COMMIT: one hand-off
                except ClaimLost as lost:
                    # The batch stopped at the claim, inside the transaction: the write lock is
                    # held, so the key reads as the claim found it.
                    raise await self._lost(await self._transaction.connection(), lost) from None
            await self._transaction.commit()
        except BaseException as error:
            await self._rollback()
            taken = reference_taken(error)
            if taken is not None:
                raise taken from error
            refused = read_only(error)
            starts = False
            if refused is not None or isinstance(error, STORAGE_ERRORS):
                # Every write of the service ends here: readiness reads it (write_health.py).
                starts = self._write_health.failed(refused or error)
            if refused is not None:
                if starts:
                    # Pooled sessions on a read-only server (or set read-only) stay so:
                    # replaced once here, then by readiness's probe while it says "on", not
                    # by every refused request.
                    await reconnect_read_only(self._engine)
                raise refused from error
            raise
        if writes is not None:  # a commit that wrote nothing says nothing about writes
            self._write_health.succeeded()
        # Sent and committed: a later commit of this unit of work must not send them again.
        self._claims.clear()
        self._deliveries.clear()
        self._answers.clear()
        self._payments.committed()
        self._span.set("db.committed_events", len(events))
        self._run_after_commit()

    async def _finish(self, writes: CombinedWrites) -> None:
        """PostgreSQL: everything above as one statement. In the transaction when it has begun
        (what was written or locked must hold until the writes); otherwise, if the statement is
        all or nothing by itself (one payment at most: ``single_gate``), on its own without
        ``BEGIN``/``COMMIT``, two round trips fewer (both of a create's units of work, and a
        callback's). A payment read without its lock (``DbTransaction.reading``) needs no
        transaction: its version check in the statement is what guards it.

        An idempotency claim that travelled with the statement and found its key taken wrote
        nothing, and neither did anything else in it: ``KeyTaken`` with what the key holds
        (``DeliverySeen`` for a webhook delivery recorded before)."""
        if self._transaction.begun or not writes.single_gate:
            connection = await self._transaction.connection()
            try:
                await writes.finish(connection)
            except ClaimLost as lost:
                # The claim's upsert locked the key's row until this transaction ends.
                raise await self._lost(connection, lost) from None
            return
        for _attempt in range(2):
            try:
                await writes.finish_alone(self._engine)
                return
            except ClaimLost as lost:
                if isinstance(lost.claim, PendingDelivery):
                    raise DeliverySeen(lost.claim.key) from None
                async with single_statement(self._engine) as connection:
                    held = await read_claim(connection, lost.claim)
            if held is not None:
                raise KeyTaken(held)
            # The row that won was deleted in between (its request gave up, or it expired and
            # was purged): nothing was written, so the statement may simply go again.
        raise KeyTaken(IdempotencyClaim(ClaimStatus.IN_FLIGHT))  # twice: still contended

    @staticmethod
    async def _lost(connection: AsyncConnection, lost: ClaimLost) -> Exception:
        """What a claim that wrote nothing means to the caller, read in the transaction that
        holds the key's row: KeyTaken with what the idempotency key holds, or DeliverySeen."""
        if isinstance(lost.claim, PendingDelivery):
            return DeliverySeen(lost.claim.key)
        held = await read_claim(connection, lost.claim)
        return KeyTaken(held or IdempotencyClaim(ClaimStatus.IN_FLIGHT))

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after this unit of work commits; a rollback drops it."""
        self._after_commit.append(callback)

    def _run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # The data is committed: a failed announcement must not turn it into an error.
                log.exception("after-commit callback failed")

    async def _rollback(self) -> None:
        self._after_commit.clear()
        try:
            await self._transaction.rollback()
        finally:
            self._payments.rolled_back()


def sql_unit_of_work_factory(
    engine: AsyncEngine,
    *,
    clock: Clock = utc_now,
    key_lease_seconds: float = 120.0,
    write_health: WriteHealth | None = None,
) -> UnitOfWorkFactory:
    """What the use cases call to open a unit of work on ``engine``; ``key_lease_seconds``:
    how long an Idempotency-Key claimed in flight is its request's (``SqlIdempotencyStore``);
    ``write_health``: where their commits report how they ended (readiness reads it)."""
    health = write_health or WriteHealth()

    def open_unit_of_work() -> SqlUnitOfWork:
        return SqlUnitOfWork(
            engine, clock=clock, key_lease_seconds=key_lease_seconds, write_health=health
        )

    return open_unit_of_work


#: The database's failures, whatever class wraps them.
_FAILURES: Final = (SQLAlchemyError, OSError, TimeoutError, BatchStatementFailed)


def _refusal(error: object) -> bool:
    """Whether ``error`` is one of the service's own decisions (``KeyTaken``,
    ``RefundNotAllowed``, ``ConcurrentUpdate``), not a failure: the database's errors stay
    failures even where a class of ours wraps them (``DatabaseReadOnly``)."""
    return (
        isinstance(error, Exception)
        and type(error).__module__.startswith("paytabs_guard.")
        and not isinstance(error, _FAILURES)
    )
