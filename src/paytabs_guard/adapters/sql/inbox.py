"""The webhook inbox: deliveries already applied, deduped by a unique key.

Only applied deliveries keep their key: a quarantined one is forgotten again (the service keeps
a key of its exact bytes instead), so a forged or mismatched result never blocks the genuine one.

``record`` runs inside the caller's unit of work, so the dedupe row and the effect of the
delivery commit together: a delivery whose processing failed is not marked seen (the mistake of
dj-stripe #832), and a retry is applied then. ``record_with_commit`` goes further: the row is
inserted by the commit's own statement (or batch), and every other write of it requires the
insert to have happened, so a duplicate writes nothing (``combined_writes.py``,
``batched_writes.py``).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.service.ports import WebhookInbox

from .engine import upsert, upsert_for
from .tables import webhook_inbox
from .transaction import DbTransaction


class PendingDelivery(NamedTuple):
    """A delivery recorded with the commit: the inbox row it inserts."""

    key: str
    source: str
    received_at: datetime

    @property
    def values(self) -> dict[str, Any]:
        return {"key": self.key, "source": self.source, "received_at": self.received_at}


@functools.cache
def delivery_insert(dialect_name: str) -> Any:
    """The inbox row unless its key is there (no row changed: a duplicate); built once per
    dialect, so its compiled form is found again."""
    insert = upsert_for(dialect_name, webhook_inbox)
    return insert.on_conflict_do_nothing(index_elements=[webhook_inbox.c.key])


class SqlWebhookInbox(WebhookInbox):
    """The ``WebhookInbox`` of one ``SqlUnitOfWork``. ``pending``: the deliveries to record
    with the commit (the unit of work's list)."""

    def __init__(self, transaction: DbTransaction, pending: list[PendingDelivery]) -> None:
        self._transaction = transaction
        self._pending = pending

    async def record_with_commit(self, key: str, *, source: str, now: datetime) -> None:
        self._pending.append(PendingDelivery(key, source, now))

    async def record(self, key: str, *, source: str, now: datetime) -> bool:
        """True when ``key`` is new (recorded when the unit of work commits); False for a
        duplicate. On PostgreSQL a concurrent transaction recording the same key makes this
        wait for its outcome, so exactly one of them gets True."""
        connection = await self._transaction.connection()
        statement = (
            upsert(connection.dialect, webhook_inbox)
            .values(key=key, source=source, received_at=now)
            .on_conflict_do_nothing(index_elements=[webhook_inbox.c.key])
            .returning(webhook_inbox.c.key)
        )
        return (await connection.execute(statement)).first() is not None

    async def forget(self, key: str) -> None:
        """Delete ``key`` in this unit of work: the delivery recorded under it was quarantined,
        and only applied deliveries may block the next one with the same key."""
        connection = await self._transaction.connection()
        await connection.execute(delete(webhook_inbox).where(webhook_inbox.c.key == key))


async def purge_inbox(engine: AsyncEngine, *, received_before: datetime) -> int:
    """Forget deliveries received before ``received_before`` (keep them ≥ 30 days: PayTabs and
    relays retry for days); returns how many were removed."""
    async with engine.begin() as connection:
        result = await connection.execute(
            delete(webhook_inbox).where(webhook_inbox.c.received_at < received_before)
        )
    return result.rowcount
