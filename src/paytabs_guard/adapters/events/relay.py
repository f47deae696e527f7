"""The outbox relay: every committed event reaches every sink at least once, in order per payment.

One ``run_once`` does two things, each in short transactions that never span a sink call (a
claim or an acknowledgement is one statement, on PostgreSQL run without a transaction around it:
the statement is atomic on its own, and it saves the ``BEGIN`` and ``COMMIT`` round trips):

1. **Fan-out.** Undistributed outbox rows (``published_at IS NULL``) are claimed oldest first,
   on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so relays on other instances take other rows
   (on SQLite the claiming ``UPDATE`` takes the database's write lock). Each gets one
   ``event_deliveries`` row per sink that accepts its type (``ON CONFLICT DO NOTHING``), and
   ``published_at`` is set, in the same transaction.
2. **Delivery.** For each sink, due pending deliveries are claimed in ``seq`` order with a lease
   (``claimed_by``, ``claimed_until``): per (sink, payment) the oldest undelivered one and,
   when it is due too, the next, and none while an older event of that payment is still
   waiting in the outbox. The sink is called outside any transaction, a payment's next event
   only once the first was accepted; then the row is marked ``delivered``, or its
   ``attempts`` grows, ``next_attempt_at`` moves by full-jitter exponential backoff and the
   error is kept (the next event claimed with it goes back unattempted).

Guarantees and their limits:

* **At least once.** A crash after the sink accepted an event but before the row was marked
  re-delivers it once the lease expires. Consumers dedupe on the CloudEvents ``id`` (stable).
* **Order per payment, per sink.** A later event of a payment waits while an earlier one backs
  off for that sink. Other payments and other sinks are not held up; a failing or slow sink
  only delays itself (sinks are served concurrently).
* **Poison events do not block a payment forever.** After ``max_attempts`` failed attempts a
  delivery becomes a dead letter (``status = 'dead'``) and the payment's next event proceeds:
  order is given up for that one event, which ``dead_letters.replay`` delivers again (late)
  after the cause is fixed. A payment's later events matter more than a stuck one.
* Events are fanned out to the sinks configured at that moment. Give every instance the same
  sinks; a sink added later receives events fanned out after it was added. With no sink at all,
  nothing is fanned out, so the first sinks configured receive the backlog.
* Leases use this process's clock: keep instance clocks in sync (NTP) and the lease longer
  than any sink's timeout, or a slow delivery may be repeated by another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    String,
    Text,
    any_,
    bindparam,
    cast,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.compiled import fetch_all_alone, fetch_one_alone
from paytabs_guard.adapters.sql.engine import single_statement, upsert_for, write_transaction
from paytabs_guard.adapters.sql.rows import from_mapping
from paytabs_guard.adapters.sql.tables import UtcDateTime, outbox
from paytabs_guard.resilience.clock import utc_now

from .backoff import DEFAULT_BACKOFF, Backoff
from .cloudevents import OutboxEvent
from .delivery_spans import delivery_span
from .sinks import BatchSink, RoutedSink, Sink, SinkSet
from .tables import DEAD, DELIVERED, PENDING, event_deliveries, has_status, still_pending

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Timezone-aware current time."""

MAX_ERROR_LENGTH: Final = 1000
DEFAULT_COALESCE_SECONDS: Final = 0.005
"""How long a notified relay waits for more commits before its run (see ``run_forever``)."""


def default_instance_id() -> str:
    """``host-pid-random``: unique per process, readable in ``claimed_by``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class RelayStats:
    """What one ``run_once`` did."""

    fanned_out: int = 0  # outbox rows distributed to the sinks
    delivered: int = 0
    retried: int = 0  # failed attempts that will be tried again
    dead: int = 0  # deliveries that became dead letters

    def add(self, other: RelayStats) -> None:
        self.fanned_out += other.fanned_out
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead


class _LeaseLost:
    """A claimed delivery not attempted because its lease ran out first."""


LEASE_LOST: Final = _LeaseLost()


class _Held:
    """A claimed delivery not attempted because an earlier event of its payment was not
    accepted in the same batch (it failed, or its lease ran out): it goes back unclaimed."""


HELD: Final = _Held()

Outcome = Exception | _LeaseLost | _Held | None
"""What became of a claimed delivery: None when the sink accepted it."""


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    attempts: int
    event: OutboxEvent
    lease_until: datetime


class OutboxRelay:
    """Delivers outbox events to sinks; safe to run on every instance at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        sinks: Iterable[Sink | SinkSet],
        *,
        clock: Clock = utc_now,
        batch_size: int = 100,
        max_attempts: int = 8,
        backoff: Backoff | tuple[float, float] = DEFAULT_BACKOFF,
        instance_id: str | None = None,
        lease_seconds: float = 60.0,
        rng: random.Random | None = None,
        coalesce_seconds: float = DEFAULT_COALESCE_SECONDS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if coalesce_seconds < 0:
            raise ValueError("coalesce_seconds must not be negative")
        self._engine = engine
        self._sources = list(sinks)
        self._clock = clock
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._backoff = backoff if isinstance(backoff, Backoff) else Backoff(*backoff)
        self._instance_id = instance_id or default_instance_id()
        self._lease = timedelta(seconds=lease_seconds)
        self._rng = rng or random.Random()
        self._coalesce = coalesce_seconds
        self._wake = asyncio.Event()
        self.sleeping = asyncio.Event()
        """Set while ``run_forever`` waits for its next run with no notification pending: from
        then on only a :meth:`notify` (or the interval) starts a run. Tests wait for it before
        they check that something wakes the relay."""
        self._statements = _RelayStatements.build(engine.dialect.name, batch_size)
        self._postgres = engine.dialect.name == "postgresql"

    @property
    def instance_id(self) -> str:
        return self._instance_id

    def sinks(self) -> list[Sink]:
        """The sinks as of now (an ``EventBus`` contributes its current subscribers)."""
        resolved: list[Sink] = []
        for source in self._sources:
            resolved.extend([source] if isinstance(source, Sink) else source.sinks())
        names = [sink.name for sink in resolved]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique: {', '.join(duplicates)}")
        return resolved

    def notify(self) -> None:
        """Wake ``run_forever`` now (call from the event loop, e.g. after a commit)."""
        self._wake.set()

    async def run_once(self) -> RelayStats:
        """Fan out every undistributed event, then deliver what is due: at most one attempt per
        delivery and run, every sink concurrently. Raises on storage errors, never a sink's."""
        sinks = self.sinks()
        stats = RelayStats()
        if not sinks:
            return stats
        while True:
            count = await self._fan_out(sinks)
            stats.fanned_out += count
            if count < self._batch_size:
                break
        results = await asyncio.gather(
            *(self._drain(sink) for sink in sinks), return_exceptions=True
        )
        errors: list[BaseException] = []
        for result in results:
            if isinstance(result, RelayStats):
                stats.add(result)
            else:
                errors.append(result)
        if errors:  # storage trouble, not a sink's: surface it once every sink had its turn
            raise errors[0]
        return stats

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """``run_once`` every ``interval`` seconds (sooner after ``notify``) until ``stop`` is set.

        A notification starts the next run ``coalesce_seconds`` later (5 ms by default), so the
        events committed meanwhile share it: a run costs the same few round trips for one event
        or fifty (a create commits two events a few milliseconds apart, and concurrent requests
        commit many), where a run per commit cost them per event.

        A failed run (e.g. the database is down) is logged and tried again next time.
        """
        while not stop.is_set():
            self._wake.clear()  # before the run: a notification during it triggers the next one
            try:
                await self.run_once()
            except Exception:
                logger.exception("outbox relay run failed; next try in %.1f s", interval)
            if not self._wake.is_set():
                self.sleeping.set()
            try:
                await _first_of(stop, self._wake, wait_seconds=interval)
            finally:
                self.sleeping.clear()
            if self._wake.is_set() and self._coalesce and self.sinks():
                # Woken by a commit: let the commits right behind it join the same run. (With
                # no sink a run does nothing, and the wait would only be one more wake-up.)
                await _first_of(stop, wait_seconds=self._coalesce)

    # ---- fan-out -------------------------------------------------------------------------

    async def _fan_out(self, sinks: Sequence[Sink]) -> int:
        now = self._clock()
        routes = _routes(sinks) if self._engine.dialect.name == "postgresql" else None
        if routes is not None:
            # One statement: claim the rows, insert their deliveries, without BEGIN/COMMIT.
            every_type, filtered = routes
            params = {
                "b_now": now,
                "b_instance": self._instance_id,
                "b_limit": self._batch_size,
                "b_every_type": every_type,
                "b_sinks": [sink for sink, _ in filtered],
                "b_types": [event_type for _, event_type in filtered],
                "b_pending": PENDING,
            }
            # Sent past SQLAlchemy's execute, as each of the relay's statements on PostgreSQL:
            # it runs alone, and execute's own work cost more than asyncpg's (compiled.py).
            return int((await fetch_one_alone(self._engine, _FAN_OUT_POSTGRES, params))[0])
        async with write_transaction(self._engine) as conn:
            params = {"b_now": now, "b_instance": self._instance_id}
            rows = (await conn.execute(self._statements.fan_out, params)).all()
            deliveries = [
                {
                    "seq": row.seq,
                    "event_id": row.event_id,
                    "payment_id": row.payment_id,
                    "type": row.type,
                    "sink": sink.name,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for row in rows
                for sink in sinks
                if sink.accepts(row.type)
            ]
            if deliveries:
                await conn.execute(self._statements.insert_deliveries, deliveries)
        return len(rows)

    # ---- delivery ------------------------------------------------------------------------

    async def _drain(self, sink: Sink) -> RelayStats:
        """Deliver what is due for ``sink`` in batches: one claim, the deliveries (pipelined by
        a sink that can), one acknowledgement of every success; round after round while the
        queue moves.

        A delivery that failed is not tried again in the same run (it waits for its backoff).
        A round in which nothing was delivered and nothing died ends the sink's turn: a sink
        that is down costs one batch of attempts per run, not its whole backlog. A round that
        was not full and freed no later event of its payments is the last one (no empty claim
        to find that out).
        """
        stats = RelayStats()
        failed: set[int] = set()
        while True:
            claimed, more = await self._claim(sink.name, failed)
            if not claimed:
                return stats
            moved = stats.delivered + stats.dead
            dead_before = stats.dead
            outcomes = await self._deliver_batch(sink, claimed)
            delivered = []
            held = []
            for item, outcome in zip(claimed, outcomes, strict=True):
                if outcome is None:
                    delivered.append(item.id)
                elif outcome is HELD:
                    held.append(item.id)
                elif isinstance(outcome, Exception):
                    failed.add(item.id)
                    await self._record_failure(sink, item, outcome, stats)
            await self._record_successes(delivered, stats)
            await self._release(held)
            # Events held behind one that just became a dead letter may go now.
            more = more or bool(held and stats.dead > dead_before)
            if stats.delivered + stats.dead == moved or not more:
                return stats

    async def _claim(self, sink: str, exclude: set[int]) -> tuple[list[_Claimed], bool]:
        """Claim a batch (with the events' envelopes, in one statement); the flag says whether
        another round may find more: the batch was full, or a claimed event's payment has a
        later one waiting behind it."""
        now = self._clock()
        lease_until = now + self._lease
        params: dict[str, object] = {
            "b_sink": sink,
            "b_now": now,
            "b_lease_until": lease_until,
            "b_instance": self._instance_id,
        }
        if exclude:
            params["b_exclude"] = list(exclude)
            claim = self._statements.claim_excluding
        else:
            claim = self._statements.claim
        # One statement (claiming is the lease it writes): no transaction around it.
        rows: Sequence[Mapping[Any, Any]]
        if self._postgres and not exclude:  # (the excluding one has a list of ids to expand)
            rows = await fetch_all_alone(self._engine, claim, params)
        else:
            async with single_statement(self._engine) as conn:
                rows = (await conn.execute(claim, params)).mappings().all()
        claimed = [
            _Claimed(
                id=row["id"],
                attempts=row["attempts"],
                event=from_mapping(OutboxEvent, row),
                lease_until=lease_until,
            )
            for row in rows
        ]
        claimed.sort(key=lambda item: item.event.seq)
        # Another round may find more when the heads filled the batch, or when a payment has
        # a later delivery behind the last one claimed (one per payment: followers included).
        last_of_payment: dict[str, Mapping[Any, Any]] = {}
        for row in sorted(rows, key=_by_seq):
            last_of_payment[row["payment_id"]] = row
        more = len(last_of_payment) >= self._batch_size or any(
            row["has_later"] for row in last_of_payment.values()
        )
        return claimed, more

    async def _deliver_batch(self, sink: Sink, claimed: Sequence[_Claimed]) -> list[Outcome]:
        """Hand the claimed events (in ``seq`` order) to ``sink``, in waves: first each
        payment's earliest, then each payment's next one whose predecessor was accepted, and so
        on, so no event of a payment reaches the sink before an earlier one was accepted. A wave
        goes in one call when the sink takes batches (Redis pipelines its XADDs), else one event
        after the other. Per event: None when accepted, the error when not, ``LEASE_LOST`` when
        slow deliveries ate the lease before its turn (another relay may own it by now: leave
        it alone), or ``HELD`` when an earlier event of its payment was not accepted."""
        outcomes: dict[int, Outcome] = {}
        stopped: set[str] = set()  # payments with an event not accepted in this batch
        for wave in _waves(claimed):
            ready = []
            for item in wave:
                if item.event.payment_id in stopped:
                    outcomes[item.id] = HELD
                else:
                    ready.append(item)
            for item, outcome in zip(ready, await self._deliver_wave(sink, ready), strict=True):
                outcomes[item.id] = outcome
                if outcome is not None:
                    stopped.add(item.event.payment_id)
        return [outcomes[item.id] for item in claimed]

    async def _deliver_wave(self, sink: Sink, wave: Sequence[_Claimed]) -> list[Outcome]:
        """One wave (at most one event per payment), per event: None, the error or
        ``LEASE_LOST``."""
        if not wave:
            return []
        if self._clock() >= wave[0].lease_until:
            return [LEASE_LOST] * len(wave)
        if isinstance(sink, BatchSink):
            events = [item.event for item in wave]
            try:
                with delivery_span(sink.name, events, wave[0].attempts):
                    return list(await sink.deliver_many(events))
            except Exception as error:  # the whole batch failed (e.g. Redis unreachable)
                return [error] * len(wave)
        outcomes: list[Outcome] = []
        for item in wave:
            if self._clock() >= item.lease_until:
                outcomes.append(LEASE_LOST)
                continue
            try:
                with delivery_span(sink.name, (item.event,), item.attempts):
                    await sink.deliver(item.event)
            except Exception as error:
                outcomes.append(error)
            else:
                outcomes.append(None)
        return outcomes

    async def _record_successes(self, ids: Sequence[int], stats: RelayStats) -> None:
        """One acknowledgement for the batch's successes. Not conditional on our lease: the
        events *were* delivered, whoever holds the rows now."""
        if not ids:
            return
        values = {
            "ids": list(ids),
            "status": DELIVERED,
            "delivered_at": self._clock(),
            "claimed_by": None,
            "claimed_until": None,
        }
        if self._postgres:
            await fetch_all_alone(
                self._engine, _MARK_DELIVERED_POSTGRES, values, _ACKNOWLEDGED_COLUMNS
            )
        else:
            async with single_statement(self._engine) as conn:
                await conn.execute(_MARK_DELIVERED, values)
        stats.delivered += len(ids)

    async def _release(self, ids: Sequence[int]) -> None:
        """Give back deliveries claimed but held (an earlier event of their payment was not
        accepted), so they wait for that one, not for their lease to run out."""
        if not ids:
            return
        async with single_statement(self._engine) as conn:
            await conn.execute(_RELEASE, {"ids": list(ids), "b_instance": self._instance_id})

    async def _record_failure(
        self, sink: Sink, item: _Claimed, error: Exception, stats: RelayStats
    ) -> None:
        now = self._clock()
        attempts = item.attempts + 1
        is_dead = attempts >= self._max_attempts
        retry_at = now + timedelta(seconds=self._backoff.delay(attempts, self._rng))
        reason = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
        mark = (
            update(event_deliveries)
            .where(
                event_deliveries.c.id == item.id,
                event_deliveries.c.status == PENDING,
                event_deliveries.c.claimed_by == self._instance_id,
            )
            .values(
                status=DEAD if is_dead else PENDING,
                attempts=attempts,
                next_attempt_at=now if is_dead else retry_at,
                last_error=reason,
                claimed_by=None,
                claimed_until=None,
                dead_at=now if is_dead else None,
            )
        )
        async with single_statement(self._engine) as conn:
            await conn.execute(mark)
        if is_dead:
            stats.dead += 1
            logger.error(
                "event %s (%s) is a dead letter for %s after %d attempts: %s",
                item.event.event_id,
                item.event.type,
                sink.name,
                attempts,
                reason,
            )
        else:
            stats.retried += 1
            logger.warning(
                "delivery of event %s to %s failed (attempt %d of %d), retry at %s: %s",
                item.event.event_id,
                sink.name,
                attempts,
                self._max_attempts,
                retry_at.isoformat(),
                reason,
            )


@dataclass(frozen=True, slots=True)
class _RelayStatements:
    """The relay's statements, built once per relay (its batch size is part of them): built
    per run, their construction and cache keys cost more CPU than running them. What changes
    per run (the time, the sink, the lease, this relay's id) is bound as parameters."""

    fan_out: Any
    insert_deliveries: Any
    claim: Any
    claim_excluding: Any
    """``claim`` skipping the deliveries in ``b_exclude`` (failed earlier in the run)."""

    @classmethod
    def build(cls, dialect_name: str, batch_size: int) -> _RelayStatements:
        return cls(
            fan_out=_fan_out_statement(batch_size),
            insert_deliveries=upsert_for(dialect_name, event_deliveries).on_conflict_do_nothing(
                index_elements=[event_deliveries.c.event_id, event_deliveries.c.sink]
            ),
            claim=claim_statement(batch_size, exclude=False),
            claim_excluding=claim_statement(batch_size, exclude=True),
        )


def _fan_out_statement(batch_size: int) -> Any:
    candidates = (
        select(outbox.c.seq)
        .where(outbox.c.published_at.is_(None))
        .order_by(outbox.c.seq)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    # The claiming statement writes first, so on SQLite it takes the write lock before
    # reading anything (no lock upgrade that could fail with "database is locked").
    return (
        update(outbox)
        .where(outbox.c.seq.in_(candidates.scalar_subquery()))
        .values(
            published_at=bindparam("b_now", type_=outbox.c.published_at.type),
            claimed_by=bindparam("b_instance", type_=outbox.c.claimed_by.type),
        )
        .returning(outbox.c.seq, outbox.c.event_id, outbox.c.payment_id, outbox.c.type)
    )


def claim_statement(batch_size: int, *, exclude: bool) -> Any:
    """Claim due deliveries of one sink, oldest first, in order per payment, and return them
    with their events. Built once per relay; tests/adapters/sql/test_query_plans.py checks how
    each database runs it.

    Two kinds of rows are claimed together:

    * **heads**: up to ``batch_size`` deliveries none of whose payment's earlier deliveries is
      pending, locked with ``FOR UPDATE SKIP LOCKED`` so relays elsewhere take other heads;
    * **followers**: for each head, its payment's next pending delivery, when it can be claimed
      now too (due, not leased, not excluded). No other relay can hold it: it could take it
      only as the follower of the same head, and that head is locked here. A create commits
      two events a few milliseconds apart, so one claim (and one acknowledgement) serves both
      instead of a round for each; a payment with more events waiting takes more rounds.

    The relay hands followers to the sink only after their predecessors were accepted
    (``_deliver_batch``), so the order per payment holds even when a head fails.
    """
    deliveries = event_deliveries
    now = bindparam("b_now", type_=deliveries.c.next_attempt_at.type)
    excluded: Any = bindparam("b_exclude", expanding=True) if exclude else None

    def claimable(table: Any, *, walked: bool) -> list[Any]:
        # The heads are walked on ix_event_deliveries_pending, whose condition they state word
        # for word (SQLite 3.40 does not infer "not null" from a comparison); the followers are
        # found by id, with a condition no index of pending rows matches.
        if walked:
            pending = [has_status(table.c.status, PENDING), table.c.next_attempt_at.is_not(None)]
        else:
            pending = [still_pending(table.c.status)]
        found = [
            *pending,
            table.c.next_attempt_at <= now,
            or_(table.c.claimed_until.is_(None), table.c.claimed_until <= now),
        ]
        if excluded is not None:
            found.append(table.c.id.not_in(excluded))
        return found

    def earlier_event_unpublished(table: Any) -> Any:
        # An older event of the payment that another relay is still fanning out has no
        # delivery row yet; without this check a newer one could overtake it.
        return _any(
            outbox.c.payment_id == table.c.payment_id,
            outbox.c.published_at.is_(None),
            outbox.c.seq < table.c.seq,
        )

    sink = bindparam("b_sink", type_=deliveries.c.sink.type)
    older = event_deliveries.alias("older")
    earlier_delivery_waits = _any(
        older.c.sink == deliveries.c.sink,
        older.c.payment_id == deliveries.c.payment_id,
        has_status(older.c.status, PENDING),
        older.c.seq < deliveries.c.seq,
    )
    heads = (
        select(deliveries.c.id, deliveries.c.payment_id, deliveries.c.seq)
        .where(
            deliveries.c.sink == sink,
            *claimable(deliveries, walked=True),
            ~earlier_delivery_waits,
            ~earlier_event_unpublished(deliveries),
        )
        .order_by(deliveries.c.seq)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .cte("heads")
    )
    # Each head's payment's next pending delivery, found through the payment's index of pending
    # rows (ix_event_deliveries_pending_payment) as a subquery per head: the planner cannot turn
    # it into a read of every pending delivery. A join it could: with a backlog of thousands
    # and statistics that still saw an empty table, it did, and a claim took 1.6 s. The *next*
    # pending one, whether it can go now or not: one that backs off or is leased keeps the later
    # ones behind it waiting, as they must.
    after = event_deliveries.alias("after")
    next_pending = (
        select(after.c.id)
        .where(
            after.c.sink == sink,
            after.c.payment_id == heads.c.payment_id,
            has_status(after.c.status, PENDING),
            after.c.seq > heads.c.seq,
        )
        .order_by(after.c.seq)
        .limit(1)
        .scalar_subquery()
    )
    nexts = select(next_pending.label("id")).select_from(heads).cte("nexts")
    follower = event_deliveries.alias("follower")
    # Locked with SKIP LOCKED too, so a claim never waits: a follower is locked elsewhere only
    # while a relay whose lease ran out still acknowledges it, and then the next run takes it.
    followers = (
        select(follower.c.id)
        .select_from(nexts.join(follower, follower.c.id == nexts.c.id))
        .where(*claimable(follower, walked=False), ~earlier_event_unpublished(follower))
        .with_for_update(of=follower, skip_locked=True)
        .cte("followers")
    )
    # RETURNING expressions name the updated row's columns with the table's name: SQLite's
    # RETURNING is rendered unqualified, where ``seq`` would mean the subquery's own column.
    # The casts let SQLite (3.40) look the later deliveries up by index: a bare reference to
    # the updated row's text columns in RETURNING made it scan the whole table per row.
    row_sink = cast(literal_column(f"{deliveries.name}.sink", String()), String())
    row_payment = cast(literal_column(f"{deliveries.name}.payment_id", String()), String())
    row_seq = literal_column(f"{deliveries.name}.seq", BigInteger())
    later = event_deliveries.alias("later")
    later_delivery_waits = _any(
        later.c.sink == row_sink,
        later.c.payment_id == row_payment,
        has_status(later.c.status, PENDING),
        later.c.seq > row_seq,
    )
    envelope, traceparent, tracestate = (  # the claimed delivery's outbox row's
        select(column).where(outbox.c.seq == row_seq).scalar_subquery()
        for column in (outbox.c.envelope, outbox.c.traceparent, outbox.c.tracestate)
    )
    return (
        update(deliveries)
        .where(
            deliveries.c.id.in_(union_all(select(heads.c.id), select(followers.c.id))),
            # Checked again on the row as it is when the lock is granted: a delivery marked
            # delivered meanwhile (by a relay whose lease ran out) is not claimed again.
            still_pending(deliveries.c.status),
        )
        .values(
            claimed_by=bindparam("b_instance", type_=deliveries.c.claimed_by.type),
            claimed_until=bindparam("b_lease_until", type_=deliveries.c.claimed_until.type),
        )
        .returning(
            deliveries.c.id,
            deliveries.c.seq,
            deliveries.c.attempts,
            deliveries.c.event_id,
            deliveries.c.payment_id,
            deliveries.c.type,
            envelope.label("envelope"),
            traceparent.label("traceparent"),
            tracestate.label("tracestate"),
            later_delivery_waits.label("has_later"),
        )
    )


def _by_seq(row: Mapping[Any, Any]) -> int:
    return int(row["seq"])


def _any(*conditions: Any) -> Any:
    """True when a row matches, as a subquery that runs once per candidate row with the
    candidate's values as index conditions. Written as ``NOT EXISTS``, PostgreSQL may plan it
    as an anti-join that scans every pending delivery for each candidate: on a table whose
    statistics are stale (a new deployment, a backlog that grew since the last ANALYZE) it
    did, and a claim of 20 took 120 ms of PostgreSQL CPU with 700 deliveries pending."""
    return select(literal(1)).where(*conditions).limit(1).scalar_subquery().is_not(None)


def _waves(claimed: Sequence[_Claimed]) -> list[list[_Claimed]]:
    """``claimed`` (in ``seq`` order) as waves: the n-th wave holds each payment's n-th
    claimed event, in ``seq`` order."""
    waves: list[list[_Claimed]] = []
    depth: dict[str, int] = {}
    for item in claimed:
        n = depth.get(item.event.payment_id, 0)
        depth[item.event.payment_id] = n + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(item)
    return waves


def _routes(sinks: Sequence[Sink]) -> tuple[list[str], list[tuple[str, str]]] | None:
    """Which sinks take every type, and (sink, type) for the others; None when a sink's
    choice is not given as data (``RoutedSink``), so only ``accepts`` can tell."""
    every_type: list[str] = []
    filtered: list[tuple[str, str]] = []
    for sink in sinks:
        if not isinstance(sink, RoutedSink):
            return None
        types = sink.accepted_types
        if types is None:
            every_type.append(sink.name)
        else:
            filtered.extend((sink.name, event_type) for event_type in sorted(types))
    return every_type, filtered


# The fan-out as one PostgreSQL statement: the claimed rows (SKIP LOCKED, as in the two-step
# fan-out) get their delivery rows in the same statement, so it is atomic on its own. The
# sinks' routes come as arrays: the names of those taking every type, and (sink, type) pairs.
_FAN_OUT_POSTGRES: Final = text(
    """
WITH claimed AS (
    UPDATE outbox SET published_at = :b_now, claimed_by = :b_instance
    WHERE seq IN (
        SELECT seq FROM outbox WHERE published_at IS NULL
        ORDER BY seq LIMIT :b_limit FOR UPDATE SKIP LOCKED
    )
    RETURNING seq, event_id, payment_id, type
), routed AS (
    SELECT claimed.*, every.sink FROM claimed
    CROSS JOIN unnest(CAST(:b_every_type AS TEXT[])) AS every(sink)
    UNION ALL
    SELECT claimed.*, pairs.sink FROM claimed
    JOIN unnest(CAST(:b_sinks AS TEXT[]), CAST(:b_types AS TEXT[])) AS pairs(sink, type)
    ON pairs.type = claimed.type
), delivered AS (
    INSERT INTO event_deliveries
        (seq, event_id, payment_id, type, sink, status, attempts, next_attempt_at, created_at)
    SELECT seq, event_id, payment_id, type, sink, :b_pending, 0, :b_now, :b_now FROM routed
    ON CONFLICT (event_id, sink) DO NOTHING
)
SELECT count(*) FROM claimed
"""
).bindparams(
    bindparam("b_now", type_=UtcDateTime),
    bindparam("b_instance", type_=Text),
    bindparam("b_limit", type_=Integer),
    bindparam("b_every_type", type_=ARRAY(Text)),
    bindparam("b_sinks", type_=ARRAY(Text)),
    bindparam("b_types", type_=ARRAY(Text)),
    bindparam("b_pending", type_=Text),
)


def _mark_delivered(among_ids: Any) -> Any:
    return (
        update(event_deliveries)
        .where(among_ids, event_deliveries.c.status == PENDING)
        .values(attempts=event_deliveries.c.attempts + 1)
    )


_MARK_DELIVERED: Final = _mark_delivered(
    event_deliveries.c.id.in_(bindparam("ids", expanding=True))
)
# The ids as one array on PostgreSQL: the statement's text does not depend on how many there
# are, so it is compiled once and asyncpg prepares it once per connection.
_MARK_DELIVERED_POSTGRES: Final = _mark_delivered(
    event_deliveries.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
)
_ACKNOWLEDGED_COLUMNS: Final = ("status", "delivered_at", "claimed_by", "claimed_until")

# Only rows this relay still holds: a lease that ran out may belong to another relay now.
_RELEASE: Final = (
    update(event_deliveries)
    .where(
        event_deliveries.c.id.in_(bindparam("ids", expanding=True)),
        event_deliveries.c.status == PENDING,
        event_deliveries.c.claimed_by == bindparam("b_instance", type_=Text),
    )
    .values(claimed_by=None, claimed_until=None)
)


async def _first_of(*events: asyncio.Event, wait_seconds: float) -> None:
    """Return when any of ``events`` is set or ``wait_seconds`` have passed."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
