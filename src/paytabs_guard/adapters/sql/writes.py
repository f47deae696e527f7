"""How a unit of work's writes reach the database at commit: the ``Writes`` interface, and
the one for a connection's database (``writes_for``).

Each payment's writes hang off a *gate*: its ``INSERT`` into ``payments`` or its version-checked
``UPDATE``. Its child rows (cart ids, history, gateway transactions, conflict notes) are written
only if the gate matched a row; the outbox rows and the stored idempotency answer follow. An
idempotency claim (``claim_key``) or a webhook delivery (``record_delivery``) sent with the
commit comes before the gates, and every write requires it to have inserted its row: when it
did not, nothing is written and ``finish`` raises ``ClaimLost``.

* ``batched_writes.BatchedWrites`` (SQLite, where a "round trip" is a hand-off to aiosqlite's
  thread) runs each write as its own statement and sends them all in one hand-off at
  ``finish``.
* ``combined_writes.CombinedWrites`` (PostgreSQL) sends them as the data-modifying CTEs of one
  statement: one round trip for the whole commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from .batched_writes import BatchedWrites
from .combined_writes import CombinedWrites
from .idempotency import PendingClaim
from .inbox import PendingDelivery
from .rows import Row


class Writes(Protocol):
    """Where a commit's writes go; ``finish`` makes sure every one reached the database."""

    async def claim_key(self, claim: PendingClaim) -> None:
        """An idempotency claim every other write requires: when the key is another
        request's, nothing is written and ``finish`` raises ClaimLost."""
        ...

    async def record_delivery(self, delivery: PendingDelivery) -> None:
        """A webhook delivery's inbox row every other write requires: when the key is there
        already (a duplicate), nothing is written and ``finish`` raises ClaimLost."""
        ...

    async def insert_payment(self, payment_id: str, row: Row) -> None: ...

    async def update_payment(self, payment_id: str, version: int, values: Row) -> None:
        """``values`` (without ``id``) if the row still holds ``version``, else nothing is
        written for this payment and ``finish`` (or this call) raises ConcurrentUpdate."""
        ...

    async def insert_children(self, payment_id: str, table: Table, rows: Sequence[Row]) -> None: ...

    async def update_transaction(self, payment_id: str, tran_ref: str, values: Row) -> None: ...

    async def delete_transactions(self, payment_id: str, tran_refs: Sequence[str]) -> None: ...

    async def insert_events(self, table: Table, rows: Sequence[Row]) -> None:
        """Outbox rows; an ``event_id`` already stored is skipped (ON CONFLICT DO NOTHING)."""
        ...

    async def complete_key(self, scope: str, key: str, values: Row) -> None:
        """Store an idempotency key's answer (no row: nothing to do)."""
        ...

    async def finish(self) -> None: ...


def writes_for(connection: AsyncConnection) -> Writes:
    if connection.dialect.name == "postgresql":
        return CombinedWrites(connection)
    return BatchedWrites(connection)
