"""Storage on SQLite (the embedded default) and PostgreSQL: payments, idempotency keys, the
webhook inbox and the outbox. See docs/storage.md for tables, locking and migrations."""

from .engine import create_engine
from .errors import ConcurrentUpdate
from .idempotency import SqlIdempotencyStore
from .inbox import SqlWebhookInbox, purge_inbox
from .migrate import upgrade
from .outbox import envelope
from .sign_outs import SqlSignOuts
from .unit_of_work import SqlUnitOfWork, sql_unit_of_work_factory

__all__ = [
    "ConcurrentUpdate",
    "SqlIdempotencyStore",
    "SqlSignOuts",
    "SqlUnitOfWork",
    "SqlWebhookInbox",
    "create_engine",
    "envelope",
    "purge_inbox",
    "sql_unit_of_work_factory",
    "upgrade",
]
