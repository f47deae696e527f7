"""``Prefer: wait=N`` (RFC 7240): a merchant that would rather wait than retry is held.

Without the header nothing changes: an open breaker answers 503 in microseconds. With it, on
create, refund, capture and void, a request that the breaker would turn away is held until the
breaker admits calls again (it is woken by the state change: a probe's answer, a trial's
success), for at most N seconds and at most the server's cap, and then goes through as usual;
the answer says ``Preference-Applied: wait=N``. A graceful shutdown ends the wait (draining.py).
Held requests are bounded per instance: beyond
the bound a request gets the fast 503, so a long outage cannot pile up unbounded work. A held
create takes its place in the return line (return_pace.py) as it starts to wait: woken together,
the held go on in turns, the oldest first.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from starlette.requests import Request

from paytabs_guard.domain import Operation
from paytabs_guard.service.payments import PaymentService

from .return_pace import ReturnPace, Who

_WAIT: Final = re.compile(r'(?:^|[;,\s])wait\s*=\s*"?(\d{1,6})"?(?=$|[;,\s])', re.IGNORECASE)


def requested_wait(request: Request) -> int | None:
    """Seconds asked for with ``Prefer: wait=N`` (the first such preference), else None."""
    for value in request.headers.getlist("prefer"):
        match = _WAIT.search(value)
        if match is not None:
            return int(match.group(1))
    return None


class Holding:
    """Holds requests while a breaker is open, within a time cap and a count cap."""

    def __init__(self, max_seconds: int, max_held: int, pace: ReturnPace | None = None) -> None:
        self.max_seconds = max_seconds
        self.max_held = max_held
        self.held = 0
        self._pace = pace if pace is not None else ReturnPace(0)  # (an empty line is falsy)

    async def hold(
        self,
        service: PaymentService,
        operation: Operation,
        requested: int | None,
        who: Who | None = None,
        shutdown: asyncio.Event | None = None,
    ) -> int | None:
        """Hold while ``operation`` would be turned away; the applied wait in seconds, or None
        when the request was not held (no preference, nothing to wait for, or the caps).
        ``who``, a create, takes its place in the return line while it is held. ``shutdown``,
        the server's (draining.py): set, it ends the wait."""
        if not requested or self.max_seconds == 0:
            return None
        if service.unavailable_for(operation) is None or self.held >= self.max_held:
            return None
        applied = min(requested, self.max_seconds)
        self.held += 1
        if who is not None:
            self._pace.join(who, applied)
        try:
            await _until_available_or_shutdown(service, operation, applied, shutdown)
        finally:
            self.held -= 1
        return applied


async def _until_available_or_shutdown(
    service: PaymentService, operation: Operation, seconds: float, shutdown: asyncio.Event | None
) -> None:
    """Wait for the breaker, at most ``seconds``, and no longer than the server runs: a held
    request stops waiting when a graceful shutdown begins (draining.py) and is answered as
    without the preference, instead of holding the shutdown for its grace."""
    if shutdown is None:
        await service.wait_available(operation, seconds)
        return
    if shutdown.is_set():
        return
    waits = [
        asyncio.ensure_future(service.wait_available(operation, seconds)),
        asyncio.ensure_future(shutdown.wait()),
    ]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
