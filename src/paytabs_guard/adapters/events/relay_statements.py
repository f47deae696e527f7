"""The relay's SQL: its statements, built once per relay (or once for all) with their
parameters bound per run. What they do and why is told beside each; the loop that runs them is
``relay.py``, and tests/adapters/sql/test_query_plans.py checks how each database plans the
claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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

from paytabs_guard.adapters.sql.engine import upsert_for
from paytabs_guard.adapters.sql.tables import UtcDateTime, outbox

from .sinks import Sink, is_routed
from .tables import DEAD, PENDING, event_deliveries, has_status, still_pending


@dataclass(frozen=True, slots=True)
class RelayStatements:
    """The relay's statements, built once per relay (its batch size is part of them): built
    per run, their construction and cache keys cost more CPU than running them. What changes
    per run (the time, the sink, the lease, this relay's id) is bound as parameters."""

    fan_out: Any
    insert_deliveries: Any
    claim: Any
    claim_excluding: Any
    """``claim`` skipping the deliveries in ``b_exclude`` (failed earlier in the run)."""

    @classmethod
    def build(cls, dialect_name: str, batch_size: int) -> RelayStatements:
        return cls(
            fan_out=fan_out_statement(batch_size),
            insert_deliveries=upsert_for(dialect_name, event_deliveries).on_conflict_do_nothing(
                index_elements=[event_deliveries.c.event_id, event_deliveries.c.sink]
            ),
            claim=claim_statement(batch_size, exclude=False),
            claim_excluding=claim_statement(batch_size, exclude=True),
        )


def fan_out_statement(batch_size: int) -> Any:
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
    (``OutboxRelay._deliver_batch``), so the order per payment holds even when a head fails.
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


def _any(*conditions: Any) -> Any:
    """True when a row matches, as a subquery that runs once per candidate row with the
    candidate's values as index conditions. Written as ``NOT EXISTS``, PostgreSQL may plan it
    as an anti-join that scans every pending delivery for each candidate: on a table whose
    statistics are stale (a new deployment, a backlog that grew since the last ANALYZE) it
    did, and a claim of 20 took 120 ms of PostgreSQL CPU with 700 deliveries pending."""
    return select(literal(1)).where(*conditions).limit(1).scalar_subquery().is_not(None)


# The fan-out as one PostgreSQL statement: the claimed rows (SKIP LOCKED, as in the two-step
# fan-out) get their delivery rows in the same statement, so it is atomic on its own. The
# sinks' routes come as arrays: the names of those taking every type, and (sink, type) pairs.
FAN_OUT_POSTGRES: Final = text(
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


MARK_DELIVERED: Final = _mark_delivered(event_deliveries.c.id.in_(bindparam("ids", expanding=True)))
# The ids as one array on PostgreSQL: the statement's text does not depend on how many there
# are, so it is compiled once and asyncpg prepares it once per connection.
MARK_DELIVERED_POSTGRES: Final = _mark_delivered(
    event_deliveries.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
)
ACKNOWLEDGED_COLUMNS: Final = ("status", "delivered_at", "claimed_by", "claimed_until")

# Only rows this relay still holds: a lease that ran out may belong to another relay now.
RELEASE: Final = (
    update(event_deliveries)
    .where(
        event_deliveries.c.id.in_(bindparam("ids", expanding=True)),
        event_deliveries.c.status == PENDING,
        event_deliveries.c.claimed_by == bindparam("b_instance", type_=Text),
    )
    .values(claimed_by=None, claimed_until=None)
)


def fan_out_routes(sinks: Sequence[Sink]) -> tuple[list[str], list[tuple[str, str]]] | None:
    """Which sinks take every type, and (sink, type) for the others; None when a sink's
    choice is not given as data (``RoutedSink``), so only ``accepts`` can tell."""
    every_type: list[str] = []
    filtered: list[tuple[str, str]] = []
    for sink in sinks:
        if not is_routed(sink):
            return None
        types = sink.accepted_types
        if types is None:
            every_type.append(sink.name)
        else:
            filtered.extend((sink.name, event_type) for event_type in sorted(types))
    return every_type, filtered


def failure_mark(
    delivery_id: int,
    instance_id: str,
    attempts: int,
    reason: str,
    now: datetime,
    retry_at: datetime,
    is_dead: bool,
) -> Any:
    """A failed attempt of one delivery this relay holds: retried at ``retry_at``, or a dead
    letter now; the claim is given back either way."""
    return (
        update(event_deliveries)
        .where(
            event_deliveries.c.id == delivery_id,
            event_deliveries.c.status == PENDING,
            event_deliveries.c.claimed_by == instance_id,
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
