"""The PayTabs calls a use case made, told to the payment's history.

The PayTabs client reports every attempt (operation, seconds, outcome) to an observer, which
bootstrap points at the metrics and at :func:`record`. A use case that wants the calls of one
step in the payment's history opens :func:`captured` around it and writes :func:`said` into
the reason of the transition that step ends with: the console's timeline then shows how long
PayTabs took and what each attempt met (a timeout, then the query that found the page), per
payment, where the metrics only hold distributions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """One HTTP attempt at PayTabs: ``operation`` (create, query, ...), how long it took and
    how it ended (``ok``, or the error's class name)."""

    operation: str
    seconds: float
    outcome: str


_CALLS: ContextVar[list[GatewayCall] | None] = ContextVar("gateway_calls", default=None)


def record(operation: str, seconds: float, outcome: str) -> None:
    """The client's observer: remembered only inside :func:`captured` (costs nothing else)."""
    calls = _CALLS.get()
    if calls is not None:
        calls.append(GatewayCall(operation, seconds, outcome))


@contextlib.contextmanager
def captured() -> Iterator[list[GatewayCall]]:
    """The attempts made inside the block, in order (retries and settling queries included)."""
    calls: list[GatewayCall] = []
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


def said(calls: Sequence[GatewayCall]) -> str:
    """The calls for a history entry: "PayTabs: create, 143 ms" or, with several,
    "PayTabs: create, 30,002 ms (GatewayTimeout); query, 85 ms (ok)"."""
    if not calls:
        return ""
    parts = []
    for call in calls:
        part = f"{call.operation}, {round(call.seconds * 1000):,} ms"
        if call.outcome != "ok" or len(calls) > 1:
            part += f" ({call.outcome})"
        parts.append(part)
    return "PayTabs: " + "; ".join(parts)


def with_calls(reason: str, calls: Sequence[GatewayCall]) -> str:
    """``reason``, followed by what :func:`said` tells of ``calls`` (if any)."""
    told = said(calls)
    return f"{reason}. {told}" if told else reason


_WRITES: ContextVar[list[str] | None] = ContextVar("gateway_writes", default=None)


def write_leaving(operation: str) -> None:
    """A write (a page, a follow-up, a charge) is about to leave for PayTabs: from here on it
    may take effect there whatever becomes of this request. Remembered inside
    :func:`watched_writes` only."""
    writes = _WRITES.get()
    if writes is not None:
        writes.append(operation)


@contextlib.contextmanager
def watched_writes() -> Iterator[list[str]]:
    """The writes that left for PayTabs inside the block (retries included): an API request
    that fails after one must not let its ``Idempotency-Key`` run it again."""
    writes: list[str] = []
    token = _WRITES.set(writes)
    try:
        yield writes
    finally:
        _WRITES.reset(token)
