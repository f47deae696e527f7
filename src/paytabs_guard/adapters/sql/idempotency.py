"""Idempotency keys (Stripe and IETF draft semantics), one short transaction per call.

``claim`` is a single upsert decided by the primary key (scope, key): a new key is inserted as
``in_flight``; an expired one is taken over in the same statement; anything else is read and
classified. So of concurrent requests with one key exactly one gets NEW, on both databases. A
key left in flight by a request that died (a worker killed) is never taken over: that request
may have refunded or charged at PayTabs before it died, and running it again did it twice (an
outside run). Past the in-flight lease it reads as ``interrupted`` instead.

``claim_with_commit`` in a unit of work sends the same upsert with the commit's writes, and
every other write requires it to have claimed: on PostgreSQL as one more CTE of the commit's
statement (``combined_writes.CombinedWrites``), so a create's first unit of work is one statement
without ``BEGIN``/``COMMIT``; on SQLite first in the commit's batch, which stops there when it
changed no row (``batched_writes.BatchedWrites``), so it is one hand-off. When the key is not this
request's, nothing is written, and the key is read and classified as above.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from sqlalchemy import Row, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import ReturningInsert

from paytabs_guard.service.ports import (
    ClaimStatus,
    IdempotencyClaim,
    IdempotencyStore,
    StoredResponse,
)

from .engine import single_statement, upsert_for, write_transaction
from .tables import UtcDateTime, idempotency_keys
from .transaction import DbTransaction

MIN_TTL_SECONDS: Final = 24 * 3600
"""Keys live at least a day (Stripe prunes after ≥ 24 h): clients retry across hours."""

IN_FLIGHT: Final = "in_flight"
COMPLETED: Final = "completed"

_keys = idempotency_keys.c


class SqlIdempotencyStore(IdempotencyStore):
    """The ``IdempotencyStore`` on a database; every call is its own committed transaction
    (``claim_with_commit`` too: the port's own, a claim at once)."""

    def __init__(self, engine: AsyncEngine, *, in_flight_lease_seconds: float = 120.0) -> None:
        """``in_flight_lease_seconds``: a claim still in flight after this long belonged to a
        request that died (the longest operation, retries included, ends well before). A
        retry with the same key hears INTERRUPTED then, not IN_FLIGHT for a day; it never
        takes the key over, since the request that died may have reached PayTabs."""
        self._engine = engine
        self._lease = timedelta(seconds=in_flight_lease_seconds)

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> IdempotencyClaim:
        """NEW when this request now owns the key (first use, or the old claim expired);
        otherwise what the stored claim says about a request with ``fingerprint``."""
        async with write_transaction(self._engine) as connection:
            return await claim_key(
                connection,
                scope,
                key,
                fingerprint,
                now=now,
                ttl_seconds=ttl_seconds,
                lease=self._lease,
            )

    async def complete(
        self, scope: str, key: str, response: StoredResponse, *, now: datetime
    ) -> None:
        """Keep ``response`` to replay it for the key's lifetime (one statement: on PostgreSQL
        without ``BEGIN``/``COMMIT`` around it)."""
        async with single_statement(self._engine) as connection:
            await complete_key(connection, scope, key, response, now=now)

    async def release(self, scope: str, key: str) -> None:
        """Forget an IN_FLIGHT key whose request failed without an answer worth keeping."""
        async with single_statement(self._engine) as connection:
            await connection.execute(
                delete(idempotency_keys).where(
                    _keys.scope == scope, _keys.key == key, _keys.status == IN_FLIGHT
                )
            )

    async def find(
        self, scope: str, key: str, fingerprint: str, *, now: datetime
    ) -> IdempotencyClaim | None:
        async with self._engine.connect() as connection:
            stored = (
                await connection.execute(_SELECT_KEY, {"b_scope": scope, "b_key": key})
            ).first()
        if stored is None or stored._mapping["expires_at"] <= now:
            return None
        return _classify(stored, fingerprint, now - self._lease)

    async def purge_expired(self, *, now: datetime) -> int:
        """Delete expired keys; returns how many."""
        async with write_transaction(self._engine) as connection:
            result = await connection.execute(
                delete(idempotency_keys).where(_keys.expires_at <= now)
            )
        return result.rowcount


class SqlIdempotencyKeys:
    """The ``IdempotencyKeys`` of one ``SqlUnitOfWork``: claims and answers that commit with it.
    A claim runs at once (its answer decides what the request does); an answer is written with
    the unit of work's other writes at commit (on PostgreSQL, in the same statement)."""

    def __init__(
        self,
        transaction: DbTransaction,
        answers: list[tuple[str, str, dict[str, object]]],
        claims: list[PendingClaim],
        *,
        in_flight_lease_seconds: float = 120.0,
    ) -> None:
        """``claims``: where ``claim_with_commit`` leaves a claim for the commit's writes."""
        self._transaction = transaction
        self._answers = answers
        self._claims = claims
        self._lease = timedelta(seconds=in_flight_lease_seconds)

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> IdempotencyClaim:
        connection = await self._transaction.connection()
        return await claim_key(
            connection,
            scope,
            key,
            fingerprint,
            now=now,
            ttl_seconds=ttl_seconds,
            lease=self._lease,
        )

    async def claim_with_commit(
        self, scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
    ) -> None:
        values = _claim_values(scope, key, fingerprint, now=now, ttl_seconds=ttl_seconds)
        self._claims.append(PendingClaim(values, now, now - self._lease))

    async def complete(
        self, scope: str, key: str, response: StoredResponse, *, now: datetime
    ) -> None:
        self._answers.append((scope, key, _answer_values(response, now)))


class PendingClaim(NamedTuple):
    """A claim that travels with a commit: the row it inserts, the time that decides whether
    it may take over a row already there (an expired one: ``claim_upsert``), and the start of
    the lease a claim still in flight is interrupted before (``_classify``)."""

    values: dict[str, Any]
    now: datetime
    lease_start: datetime

    @property
    def scope(self) -> str:
        return str(self.values["scope"])

    @property
    def key(self) -> str:
        return str(self.values["key"])

    @property
    def fingerprint(self) -> str:
        return str(self.values["fingerprint"])


async def read_claim(connection: AsyncConnection, claim: PendingClaim) -> IdempotencyClaim | None:
    """What the key that ``claim`` could not take holds for its request; None when its row is
    gone since (released or purged in between)."""
    stored = (
        await connection.execute(_SELECT_KEY, {"b_scope": claim.scope, "b_key": claim.key})
    ).first()
    return None if stored is None else _classify(stored, claim.fingerprint, claim.lease_start)


async def claim_key(
    connection: AsyncConnection,
    scope: str,
    key: str,
    fingerprint: str,
    *,
    now: datetime,
    ttl_seconds: int,
    lease: timedelta,
) -> IdempotencyClaim:
    """The claim upsert (module docstring) on ``connection``; the caller commits."""
    claim = _claim_values(scope, key, fingerprint, now=now, ttl_seconds=ttl_seconds)
    statement = _claim_statement(connection.dialect.name)
    params = claim | {"b_now": now}
    if (await connection.execute(statement, params)).first() is not None:
        return IdempotencyClaim(ClaimStatus.NEW)
    # The key is taken and alive; the upsert locked its row, so it cannot vanish now.
    stored = (await connection.execute(_SELECT_KEY, {"b_scope": scope, "b_key": key})).one()
    return _classify(stored, fingerprint, now - lease)


async def complete_key(
    connection: AsyncConnection, scope: str, key: str, response: StoredResponse, *, now: datetime
) -> None:
    # No row (purged, or taken over after expiring): the request is answered anyway, and
    # failing it now would only make the client retry the work it just got done.
    values = _answer_values(response, now)
    await connection.execute(_COMPLETE, {**values, "b_scope": scope, "b_key": key})


def _claim_values(
    scope: str, key: str, fingerprint: str, *, now: datetime, ttl_seconds: int
) -> dict[str, Any]:
    """The row a claim inserts (or takes an old one over with)."""
    if ttl_seconds < MIN_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be at least {MIN_TTL_SECONDS}, got {ttl_seconds}")
    return {
        "scope": scope,
        "key": key,
        "fingerprint": fingerprint,
        "status": IN_FLIGHT,
        "response_status": None,
        "response_body": None,
        "resource_id": None,
        "created_at": now,
        "completed_at": None,
        "expires_at": now + timedelta(seconds=ttl_seconds),
    }


def _answer_values(response: StoredResponse, now: datetime) -> dict[str, object]:
    return {
        "status": COMPLETED,
        "response_status": response.status_code,
        "response_body": response.body,
        "resource_id": response.resource_id,
        "completed_at": now,
    }


_CLAIMED_COLUMNS: Final = (
    "fingerprint",
    "status",
    "response_status",
    "response_body",
    "resource_id",
    "created_at",
    "completed_at",
    "expires_at",
)


@functools.cache
def _claim_statement(dialect_name: str) -> ReturningInsert[tuple[str]]:
    """Built once per dialect and executed with parameters (a cached compiled statement)."""
    return claim_upsert(upsert_for(dialect_name, idempotency_keys)).returning(_keys.key)


def claim_upsert(
    base: postgresql.Insert | sqlite.Insert, now: Any = None
) -> postgresql.Insert | sqlite.Insert:
    """``base`` (an INSERT of a claimed key) as the claim: on a conflict it takes the row
    over only when that one expired (before ``now``, the bind parameter ``b_now`` by
    default). So it changes a row exactly when it claimed. A row left in flight by a request
    that died is not taken over: that request may have reached PayTabs (``_classify``)."""
    if now is None:
        now = bindparam("b_now", type_=UtcDateTime)
    takeover = {name: base.excluded[name] for name in _CLAIMED_COLUMNS}
    return base.on_conflict_do_update(
        index_elements=[_keys.scope, _keys.key], set_=takeover, where=_keys.expires_at <= now
    )


_SELECT_KEY: Final = select(idempotency_keys).where(
    _keys.scope == bindparam("b_scope"), _keys.key == bindparam("b_key")
)
_COMPLETE: Final = update(idempotency_keys).where(
    _keys.scope == bindparam("b_scope"), _keys.key == bindparam("b_key")
)


def _classify(
    stored: Row[tuple[object, ...]], fingerprint: str, lease_start: datetime
) -> IdempotencyClaim:
    """What a key's row says to a request with ``fingerprint``; a claim in flight since
    before ``lease_start`` is INTERRUPTED."""
    row = stored._mapping
    if row["fingerprint"] != fingerprint:
        return IdempotencyClaim(ClaimStatus.MISMATCH)
    if row["status"] == COMPLETED:
        response = StoredResponse(
            status_code=row["response_status"],
            body=row["response_body"],
            resource_id=row["resource_id"],
        )
        return IdempotencyClaim(ClaimStatus.COMPLETED, response)
    if row["created_at"] <= lease_start:
        return IdempotencyClaim(ClaimStatus.INTERRUPTED)
    return IdempotencyClaim(ClaimStatus.IN_FLIGHT)
