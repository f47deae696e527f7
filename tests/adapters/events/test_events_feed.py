"""The events feed never skips an event, whatever order concurrent writers commit in.

A poller keeps the cursor of the last event it saw and asks again later. On PostgreSQL ``seq``
is numbered at insert, so a transaction that inserted first can commit last: these tests hold
one writer's transaction open while another commits, poll in between, and check that every
event reaches the poller exactly once and that the cursor never passes an event still to come.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from paytabs_guard.adapters.events.store import SqlEventStore
from paytabs_guard.adapters.sql.tables import outbox, webhook_inbox
from paytabs_guard.service.events import list_events

from .events_support import build_schema, open_engine

pytestmark = pytest.mark.anyio

WAIT = 10.0
"""Seconds a poll may wait for events the feed holds back for a transaction elsewhere."""


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """PostgreSQL alone: the tests that need two writers open at once (SQLite has one)."""
    engine = open_engine(postgres_url)
    try:
        await build_schema(postgres_url)
        yield engine
    finally:
        await engine.dispose()


async def _insert_event(connection: AsyncConnection, payment_id: str) -> str:
    event_id = str(uuid.uuid4())
    await connection.execute(
        insert(outbox).values(
            event_id=event_id,
            payment_id=payment_id,
            type="payment.created",
            envelope="{}",
            created_at=datetime.now(UTC),
        )
    )
    return event_id


class _Poller:
    """A feed consumer: keeps the cursor, collects what each poll returns."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._store = SqlEventStore(engine)
        self.cursor: int | None = None
        self.seen: list[str] = []

    async def poll(self) -> Sequence[str]:
        got: list[str] = []
        while True:
            page = await list_events(self._store, after=self.cursor, limit=2)
            got.extend(event.id for event in page.events)
            self.cursor = page.next_after
            if not page.has_more:
                break
        self.seen.extend(got)
        return got

    async def poll_until(self, count: int) -> list[str]:
        """Poll until ``count`` events came (see :func:`_eventually`)."""
        got: list[str] = []

        async def more() -> list[str]:
            got.extend(await self.poll())
            return got

        return await _eventually(more, lambda found: len(found) >= count)


Found = TypeVar("Found")


async def _eventually(
    fetch: Callable[[], Awaitable[Found]], done: Callable[[Found], bool]
) -> Found:
    """``fetch`` again until ``done`` says its answer is complete, at most :data:`WAIT` seconds
    (then its last answer). On PostgreSQL the feed also waits for any older transaction still
    running anywhere on the server (an autovacuum ANALYZE takes a transaction id too), so what
    one read shows at one instant depends on the server's other work; nothing is lost, it
    comes a moment later. The order and the exact events are what these tests check."""
    deadline = time.monotonic() + WAIT
    while True:
        found = await fetch()
        if done(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)  # a real server's other transaction, not a clock to fake


async def test_an_event_committed_after_a_later_one_is_not_skipped(engine: AsyncEngine) -> None:
    poller = _Poller(engine)
    async with engine.connect() as earlier, engine.connect() as first:
        await earlier.begin()
        await first.begin()
        # Numbered first, committed last.
        slow = await _insert_event(earlier, "pay_slow")
        if engine.dialect.name == "sqlite":
            # SQLite has one writer: the second could not insert beside the first. Insert order
            # is commit order there; the rest still checks the cursor across commits.
            await earlier.commit()
        fast = await _insert_event(first, "pay_fast")
        await first.commit()
        await poller.poll()
        if earlier.in_transaction():
            await earlier.commit()
    await poller.poll_until(2 - len(poller.seen))
    assert sorted(poller.seen) == sorted([slow, fast])
    assert len(poller.seen) == len(set(poller.seen))


@pytest.mark.postgres
async def test_the_feed_waits_for_a_running_writer_and_then_shows_both(
    pg_engine: AsyncEngine,
) -> None:
    poller = _Poller(pg_engine)
    async with pg_engine.connect() as a, pg_engine.connect() as b:
        await a.begin()
        await b.begin()
        slow = await _insert_event(a, "pay_a")
        fast = await _insert_event(b, "pay_b")
        await b.commit()
        # The committed event sorts after the running one: it waits with it.
        assert await poller.poll() == []
        await a.commit()
    assert await poller.poll_until(2) == [slow, fast]


@pytest.mark.postgres
async def test_a_writer_that_began_first_but_inserted_last_is_not_skipped(
    pg_engine: AsyncEngine,
) -> None:
    """Transaction ids and seq can disagree: ``early`` writes something else first (its id is
    the older one), ``late`` then inserts an event and stays open, ``early`` inserts its event
    (the higher seq) and commits. The poll shows ``early``'s event; ``late``'s, committed
    afterwards, still comes."""
    poller = _Poller(pg_engine)
    async with pg_engine.connect() as early, pg_engine.connect() as late:
        await early.begin()
        await late.begin()
        await early.execute(
            insert(webhook_inbox).values(
                key="k-early", source="test", received_at=datetime.now(UTC)
            )
        )
        late_event = await _insert_event(late, "pay_late")
        early_event = await _insert_event(early, "pay_early")
        await early.commit()
        assert await poller.poll_until(1) == [early_event]
        await late.commit()
    assert await poller.poll_until(1) == [late_event]


async def test_events_stored_before_the_feed_order_keep_their_seq_order(
    engine: AsyncEngine,
) -> None:
    """Rows written in one transaction (as the migration's rows are) page by seq, two at a
    time, with nothing lost or doubled."""
    async with engine.begin() as connection:
        ids = [await _insert_event(connection, f"pay_{n}") for n in range(5)]
    poller = _Poller(engine)
    assert await poller.poll_until(len(ids)) == ids
    assert await poller.poll() == []


async def test_a_cursor_whose_event_was_purged_still_continues(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        ids = [await _insert_event(connection, f"pay_{n}") for n in range(4)]
    poller = _Poller(engine)
    store = SqlEventStore(engine)
    page = await _eventually(lambda: list_events(store, limit=2), lambda page: bool(page.events))
    assert [event.id for event in page.events] == ids[:2]
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM outbox WHERE event_id = :id"), {"id": ids[1]})
    poller.cursor = page.next_after
    assert await poller.poll_until(2) == ids[2:]
