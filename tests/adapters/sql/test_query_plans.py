"""What the database does with the statements whose cost must not grow with the tables: every
payment lookup is answered from an index, and the relay's claim checks each candidate with
an index probe of its own payment, not a scan of every pending delivery per candidate.

Plans, not timings: PostgreSQL is asked with sequential scans priced out of reach
(``enable_seqscan = off``), so a plan that still scans a table has no index to use; SQLite
says ``SCAN <table>`` for a full scan and ``SEARCH`` for an index lookup."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events.relay_statements import claim_statement
from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.sql.payment_reads import lock_statement, lookup_statement
from paytabs_guard.adapters.sql.repository import awaiting_follow_ups_statement
from paytabs_guard.adapters.sql.tables import outbox

pytestmark = pytest.mark.anyio

PARAMS = {"key": "TST2400000000001"}
NOW = datetime(2026, 12, 2, 23, 59, tzinfo=UTC)
CLAIM_PARAMS: dict[str, Any] = {
    "b_sink": "redis",
    "b_now": "2026-12-03T00:00:00+00:00",
    "b_lease_until": "2026-12-03T00:00:30+00:00",
    "b_instance": "relay-1",
    "b_exclude": [1, 2],
}


def _literal(statement: Any, engine: AsyncEngine, values: dict[str, Any]) -> str:
    """The statement's SQL with its parameters written in, for EXPLAIN."""
    postgres = engine.dialect.name == "postgresql"
    dialect: Dialect = postgresql.dialect() if postgres else sqlite.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect)
    sql = str(compiled)
    for name, value in {**compiled.params, **values}.items():
        if isinstance(value, list):
            written = "(" + ", ".join(str(item) for item in value) + ")"
            sql = sql.replace(f"(__[POSTCOMPILE_{name}])", written)
            continue
        written = str(value) if isinstance(value, int) else "'" + str(value) + "'"
        sql = sql.replace(f"%({name})s" if postgres else f":{name}", written)
    return sql


async def _plan(engine: AsyncEngine, sql: str) -> str:
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET enable_seqscan = off")
            rows = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}")).all()
            raw = rows[0][0]
            return json.dumps(json.loads(raw) if isinstance(raw, str) else raw)
        rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
        return "\n".join(str(row[-1]) for row in rows)


def _full_scans(engine: AsyncEngine, plan: str) -> list[str]:
    if engine.dialect.name == "postgresql":
        return re.findall(r'"Node Type": "Seq Scan", [^}]*?"Relation Name": "(\w+)"', plan)
    return re.findall(r"^SCAN (\w+)", plan, flags=re.MULTILINE)


@pytest.mark.parametrize("by", ["id", "cart_id", "tran_ref"])
@pytest.mark.parametrize("locked", [False, True])
async def test_every_payment_lookup_uses_indexes(
    engine: AsyncEngine, by: str, locked: bool
) -> None:
    statements = [lookup_statement(engine.dialect.name, by, locked)]
    if locked and engine.dialect.name == "postgresql":
        statements.append(lock_statement(by))
    for statement in statements:
        plan = await _plan(engine, _literal(statement, engine, PARAMS))
        assert _full_scans(engine, plan) == [], plan


async def test_follow_up_candidates_are_read_from_their_partial_indexes(
    engine: AsyncEngine,
) -> None:
    # Every reconciliation pass asks it: it must read only the payments holding a follow-up
    # and the pending follow-ups, never every payment or every transaction.
    statement = awaiting_follow_ups_statement(NOW, 100)
    plan = await _plan(engine, _literal(statement, engine, {}))
    # SQLite walks the whole partial index of pending follow-ups: that is the point of it
    whole_partial = (
        "SCAN gateway_transactions USING INDEX ix_gateway_transactions_pending_follow_up"
    )
    assert _full_scans(engine, plan.replace(whole_partial, "")) == [], plan
    for index in ("ix_payments_hold_started_at", "ix_gateway_transactions_pending_follow_up"):
        assert index in plan, plan


@pytest.mark.parametrize("exclude", [False, True])
async def test_the_relay_claim_probes_each_candidates_own_payment(
    engine: AsyncEngine, exclude: bool
) -> None:
    plan = await _plan(engine, _literal(claim_statement(20, exclude=exclude), engine, CLAIM_PARAMS))
    # "heads", "nexts" and "followers" are the claim's own CTEs: at most the batch (20 rows)
    own = ("heads", "nexts", "followers")
    assert [scan for scan in _full_scans(engine, plan) if scan not in own] == [], plan
    if engine.dialect.name == "postgresql":
        # "an earlier delivery of the payment waits": probed per candidate with its payment id
        # (not an anti-join that reads every pending delivery for each candidate)
        probes = re.findall(r'"Alias": "older", [^}]*?"Index Cond": "([^"]*)"', plan)
        assert probes, plan
        assert all("payment_id = event_deliveries" in probe for probe in probes), probes
        assert '"Join Type": "Anti"' not in plan, plan
    else:
        assert re.search(r"SEARCH older USING INDEX \w+ \(sink=\? AND payment_id=\?", plan), plan
        # the heads are walked in seq order on the index of pending rows: nothing to sort
        assert "SEARCH event_deliveries USING INDEX ix_event_deliveries_pending (sink=?)" in plan
        assert "TEMP B-TREE" not in plan, plan
        for probe in ("older", "after", "later"):
            assert re.search(
                rf"SEARCH {probe} USING INDEX ix_event_deliveries_pending_payment "
                r"\(sink=\? AND payment_id=\?",
                plan,
            ), plan


async def _fill_queue(engine: AsyncEngine, first: int, count: int, status: str) -> None:
    """``count`` events of ``count // 2`` payments (two each, as a create commits), published,
    with one delivery each to the sink ``redis`` in ``status``."""
    seqs = range(first, first + count)
    events = [
        {
            "seq": seq,
            "event_id": f"ev-{seq}",
            "payment_id": f"pay-{seq // 2}",
            "type": "payment.created",
            "envelope": "{}",
            "created_at": NOW,
            "published_at": NOW,
        }
        for seq in seqs
    ]
    deliveries = [
        {
            "seq": seq,
            "event_id": f"ev-{seq}",
            "payment_id": f"pay-{seq // 2}",
            "type": "payment.created",
            "sink": "redis",
            "status": status,
            "attempts": 0,
            "next_attempt_at": NOW,
            "created_at": NOW,
        }
        for seq in seqs
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(outbox), events)
        await conn.execute(insert(event_deliveries), deliveries)


async def _claim_blocks(engine: AsyncEngine) -> tuple[int, int, str]:
    """Run a claim of 100 under EXPLAIN ANALYZE and roll it back: rows claimed, buffer pages
    it touched, the plan."""
    sql = _literal(claim_statement(100, exclude=False), engine, CLAIM_PARAMS)
    async with engine.connect() as conn:
        raw = (await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")).one()
        await conn.rollback()
    plan = json.loads(raw[0]) if isinstance(raw[0], str) else raw[0]
    top = plan[0]["Plan"]
    return (
        int(top["Actual Rows"]),
        int(top["Shared Hit Blocks"] + top["Shared Read Blocks"]),
        (json.dumps(plan)),
    )


@pytest.mark.postgres
async def test_a_claims_work_does_not_grow_with_the_backlog(postgres_engine: AsyncEngine) -> None:
    """The statistics of a healthy system see an empty queue (ANALYZE ran while it was), so
    during a backlog PostgreSQL believes about one delivery is pending. Before the partial
    indexes, it then probed each candidate by sink alone and read the whole queue per candidate,
    and found a claim's rows by id by reading every pending one: a claim took 1.4 s with 3,500
    pending, and the relay fell further behind the more it had to do."""
    engine = postgres_engine
    await _fill_queue(engine, 2, 400, "delivered")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    await _fill_queue(engine, 1_000, 20_000, "delivered")
    await _fill_queue(engine, 100_000, 600, "pending")
    small_rows, small, _ = await _claim_blocks(engine)
    await _fill_queue(engine, 200_000, 6_000, "pending")
    large_rows, large, plan = await _claim_blocks(engine)
    # 100 heads (one per payment) and each one's follower, whatever the backlog
    assert small_rows == large_rows == 200
    # ten times the backlog, about the same pages read (it was about ten times as many)
    assert large < 1.5 * small, (small, large, plan)
