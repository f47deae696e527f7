"""Console sign-outs in SQL (``console_sign_outs``): a short transaction per call."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.service.ports import SignOuts

from .engine import upsert_for, write_transaction
from .tables import console_sign_outs

_rows = console_sign_outs.c


class SqlSignOuts(SignOuts):
    """:class:`~paytabs_guard.service.ports.SignOuts` on the service's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def sign_out(self, session: str, *, expires_at: datetime, now: datetime) -> None:
        insert = upsert_for(self._engine.dialect.name, console_sign_outs)
        async with write_transaction(self._engine) as connection:
            # Sign-outs are rare (people, by hand): pruning here keeps the table to the
            # sessions that could still be presented, with no job of its own.
            await connection.execute(delete(console_sign_outs).where(_rows.expires_at <= now))
            await connection.execute(
                insert.values(session=session, expires_at=expires_at).on_conflict_do_nothing()
            )

    async def signed_out(self, session: str) -> bool:
        async with self._engine.connect() as connection:
            found = await connection.execute(select(_rows.session).where(_rows.session == session))
            return found.first() is not None
