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
  off for that sink. Other payments and other sinks are not held up: a run waits for a sink at
  most ``drain_wait_seconds`` (1 s), a slower one goes on in the background (``detached.py``)
  while the next runs serve the others, and another drain of it the payments it does not hold.
* **An outage is not a poison event.** A sink that cannot be reached (``SinkUnreachable``)
  costs no attempt and no dead letter: the delivery is tried within ``OUTAGE_RETRY_SECONDS``.
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
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.compiled import fetch_all_alone, fetch_one_alone
from paytabs_guard.adapters.sql.engine import single_statement, write_transaction
from paytabs_guard.adapters.sql.rows import from_mapping
from paytabs_guard.resilience.clock import utc_now

from .backoff import DEFAULT_BACKOFF, Backoff
from .cloudevents import OutboxEvent
from .delivery_marks import Claimed, DeliveryMarks, RelayStats
from .delivery_spans import delivery_span
from .detached import Detached, first_of
from .outcomes import HELD, LEASE_LOST, Outcome, waves
from .relay_statements import (
    FAN_OUT_POSTGRES,
    RelayStatements,
    fan_out_routes,
)
from .run_failures import RunFailures
from .sinks import Sink, SinkSet, SinkUnreachable, sends_each, sinks_of, takes_batches
from .tables import PENDING

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Timezone-aware current time."""

DEFAULT_COALESCE_SECONDS: Final = 0.005
"""How long a notified relay waits for more commits before its run (see ``run_forever``)."""
#: Drains of one sink that may go on at once past their run (a slow sink's): each claims the
#: payments the others do not hold (leased heads keep their payment's later events back).
MAX_DRAINS_PER_SINK: Final = 4


def default_instance_id() -> str:
    """``host-pid-random``: unique per process, readable in ``claimed_by``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


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
        drain_wait_seconds: float = 1.0,
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
        self._failures = RunFailures(logger, clock)
        self._batch_size = batch_size
        self._instance_id = instance_id or default_instance_id()
        self._lease = timedelta(seconds=lease_seconds)
        self._marks = DeliveryMarks(
            engine,
            clock,
            self._instance_id,
            max_attempts,
            backoff if isinstance(backoff, Backoff) else Backoff(*backoff),
            rng or random.Random(),
        )
        self._coalesce = coalesce_seconds
        self._wake = asyncio.Event()
        self.sleeping = asyncio.Event()
        """Set while ``run_forever`` waits for its next run with no notification pending: from
        then on only a :meth:`notify` (or the interval) starts a run. Tests wait for it before
        they check that something wakes the relay."""
        self._statements = RelayStatements.build(engine.dialect.name, batch_size)
        self._postgres = engine.dialect.name == "postgresql"
        self._drain_wait = drain_wait_seconds
        # Drains a run stopped waiting for: they go on, and a run follows each one's end;
        # ``settle()`` waits for them.
        self._detached: Detached[RelayStats] = Detached(self._wake.set)
        self.settle = self._detached.settle

    @property
    def instance_id(self) -> str:
        return self._instance_id

    def sinks(self) -> list[Sink]:
        """The sinks as of now (an ``EventBus`` contributes its current subscribers)."""
        resolved: list[Sink] = []
        for source in self._sources:
            resolved.extend(sinks_of(source))
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
        drains = {
            sink.name: asyncio.ensure_future(self._drain(sink))
            for sink in sinks
            if self._detached.count(sink.name) < MAX_DRAINS_PER_SINK
        }
        if not drains:
            return stats
        try:
            _, slow = await asyncio.wait(drains.values(), timeout=self._drain_wait)
        except BaseException:  # cancelled (shutdown): so are the drains, once their claims
            for task in drains.values():  # are given back
                task.cancel()
            await asyncio.wait(drains.values())
            raise
        errors: list[BaseException] = []
        for name, task in drains.items():
            if task in slow:
                self._detached.add(name, task)  # its deliveries go on; this run does not wait
            elif task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]
            else:
                stats.add(task.result())
        if errors:  # storage trouble, not a sink's: surface it once every sink had its turn
            raise errors[0]
        return stats

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """``run_once`` every ``interval`` seconds (sooner after ``notify``) until ``stop`` is set.

        A notification starts the next run ``coalesce_seconds`` later (5 ms by default), so the
        events committed meanwhile share it: a run costs the same few round trips for one event
        or fifty (a create commits two events a few milliseconds apart, and concurrent requests
        commit many), where a run per commit cost them per event.

        A failed run (e.g. the database is down) is logged and tried again next time: the
        first of a streak with its traceback, then a line a minute (run_failures.py).
        """
        try:
            while not stop.is_set():
                self._wake.clear()  # before the run: a notification during it starts the next
                try:
                    await self.run_once()
                except Exception as error:
                    self._failures.failed(error, interval)
                else:
                    self._failures.succeeded()
                if not self._wake.is_set() and not self._detached.any():
                    self.sleeping.set()
                try:
                    await first_of(stop, self._wake, wait_seconds=interval)
                finally:
                    self.sleeping.clear()
                if self._wake.is_set() and self._coalesce and self.sinks():
                    # Woken by a commit: let the commits right behind it join the same run.
                    # (With no sink a run does nothing, and the wait would be one more wake.)
                    await first_of(stop, wait_seconds=self._coalesce)
        finally:
            await self.settle()

    # ---- fan-out -------------------------------------------------------------------------

    async def _fan_out(self, sinks: Sequence[Sink]) -> int:
        now = self._clock()
        routes = fan_out_routes(sinks) if self._engine.dialect.name == "postgresql" else None
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
            return int((await fetch_one_alone(self._engine, FAN_OUT_POSTGRES, params))[0])
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
            try:
                outcomes = await self._deliver_batch(sink, claimed)
            except asyncio.CancelledError:
                # Stopping mid-delivery: give the claims back, or the next start (this
                # instance or another) waits out their lease (60 s) before sending them.
                await asyncio.shield(self._marks.release([item.id for item in claimed]))
                raise
            delivered = []
            held = []
            for item, outcome in zip(claimed, outcomes, strict=True):
                if outcome is None:
                    delivered.append(item.id)
                elif outcome is HELD:
                    held.append(item.id)
                elif isinstance(outcome, Exception):
                    failed.add(item.id)
                    await self._marks.failed(sink, item, outcome, stats)
            await self._marks.delivered(delivered, stats)
            await self._marks.release(held)
            # Events held behind one that just became a dead letter may go now.
            more = more or bool(held and stats.dead > dead_before)
            if stats.delivered + stats.dead == moved or not more:
                return stats

    async def _claim(self, sink: str, exclude: set[int]) -> tuple[list[Claimed], bool]:
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
            Claimed(
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

    async def _deliver_batch(self, sink: Sink, claimed: Sequence[Claimed]) -> list[Outcome]:
        """Hand the claimed events (in ``seq`` order) to ``sink``, in waves: first each
        payment's earliest, then each payment's next one whose predecessor was accepted, and so
        on, so no event of a payment reaches the sink before an earlier one was accepted. A wave
        goes in one call when the sink takes batches (Redis pipelines its XADDs), else one event
        after the other. Per event: None when accepted, the error when not, ``LEASE_LOST`` when
        slow deliveries ate the lease before its turn (another relay may own it by now: leave
        it alone), or ``HELD`` when an earlier event of its payment was not accepted."""
        outcomes: dict[int, Outcome] = {}
        stopped: set[str] = set()  # payments with an event not accepted in this batch
        down: list[Outcome] = []  # the sink could not be reached: none of it is tried now
        for wave in waves(claimed, lambda item: item.event.payment_id):
            ready = []
            for item in wave:
                if item.event.payment_id in stopped:
                    outcomes[item.id] = HELD
                elif down:
                    outcomes[item.id] = down[0]
                else:
                    ready.append(item)
            for item, outcome in zip(ready, await self._deliver_wave(sink, ready), strict=True):
                outcomes[item.id] = outcome
                if outcome is not None:
                    stopped.add(item.event.payment_id)
                down += [outcome] if isinstance(outcome, SinkUnreachable) else []
        return [outcomes[item.id] for item in claimed]

    async def _deliver_wave(self, sink: Sink, wave: Sequence[Claimed]) -> list[Outcome]:
        """One wave (at most one event per payment), per event: None, the error or
        ``LEASE_LOST``."""
        if not wave:
            return []
        if self._clock() >= wave[0].lease_until:
            return [LEASE_LOST] * len(wave)
        if takes_batches(sink):
            events = [item.event for item in wave]
            try:
                if sends_each(sink):  # a span per request, not per wave
                    attempts = [item.attempts for item in wave]
                    return list(await sink.deliver_each(events, attempts))
                with delivery_span(sink.name, events, wave[0].attempts):
                    return list(await sink.deliver_many(events))
            except Exception as error:  # the whole batch failed (e.g. Redis unreachable)
                return [error] * len(wave)
        outcomes: list[Outcome] = []
        for item in wave:
            if self._clock() >= item.lease_until:
                outcomes.append(LEASE_LOST)
                continue
            if outcomes and isinstance(outcomes[-1], SinkUnreachable):
                outcomes.append(outcomes[-1])  # the sink is down: no point trying the rest
                continue
            try:
                with delivery_span(sink.name, (item.event,), item.attempts):
                    await sink.deliver(item.event)
            except Exception as error:
                outcomes.append(error)
            else:
                outcomes.append(None)
        return outcomes


def _by_seq(row: Mapping[Any, Any]) -> int:
    return int(row["seq"])
