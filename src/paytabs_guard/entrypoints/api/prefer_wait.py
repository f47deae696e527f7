"""``Prefer: wait=N`` (RFC 7240): a merchant that would rather wait than retry is held.

Without the header nothing changes: an open breaker answers 503 in microseconds. With it, on
create, refund, capture and void, a request that the breaker would turn away is held until the
breaker admits calls again (it is woken by the state change: a probe's answer, a trial's
success), for at most N seconds and at most the server's cap, and then goes through as usual;
the answer says ``Preference-Applied: wait=N``. A graceful shutdown ends the wait (draining.py).
N seconds are the request's whole budget: turned away after all with nothing stored or sent
(another request took the trial slot it was woken for, the trial failed), it is held again for
what is left (:class:`HeldRequest`); it gets the 503 only once they are used up, at shutdown,
or beyond the bound below. Held requests are bounded per instance: beyond
the bound a request gets the fast 503, so a long outage cannot pile up unbounded work. A held
create takes its place in the return line (return_pace.py) as it starts to wait: woken together,
the held go on in turns, the oldest first. The header is read as RFC 7240 writes it
(:func:`requested_wait`); the process route (payments.py) holds the same way for a query.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from starlette.requests import Request

from paytabs_guard.domain import Operation
from paytabs_guard.service.gateway import GatewayTurnedAway
from paytabs_guard.service.payments import PaymentService

from .return_pace import ReturnPace, Who

T = TypeVar("T")

INSTANT: Final = 0.001
"""Seconds under which a held request let through after a turn-away was not held at all."""

_PREFERENCE: Final = re.compile(
    r'\s*+([^\s=;,"]++)(?:\s*+=\s*+("(?:[^"\\]|\\.)*+"|[^\s;,"]*+))?\s*+'
    r'((?:;(?:[^;,"]|"(?:[^"\\]|\\.)*+")*+)*+)\s*+(?:,|$)'
)
"""One preference of RFC 7240's ``1#preference``: a token, its optional value (a token or a
quoted string), then its ``;`` parameters (which belong to it, whatever their names), up to
the comma that ends it. Every repetition is possessive (``*+``): each part can end only where
it does, so there is nothing to backtrack into, and a match that fails fails in one pass.
Side by side, backtracking whitespace runs tried every split of a run of spaces: one create
with ``Prefer: a`` + 32,000 spaces + ``x`` held the event loop for 8 s."""

_DIGITS: Final = re.compile(r"[0-9]+")
_LONGEST: Final = 2**31
"""A ``delta-seconds`` too large to represent is taken as 2^31 (RFC 9111, section 1.2.2)."""


def requested_wait(request: Request) -> int | None:
    """Seconds asked for with ``Prefer: wait=N``, else None.

    RFC 7240: preferences are comma-separated, across ``Prefer`` header fields; ``;`` starts a
    parameter of the preference before it (``handling=lenient; wait=2`` asks for no wait);
    only the first ``wait`` counts; its value is ``delta-seconds``, one or more digits, and
    a large one (``wait=1000000``) is honoured up to the server's cap, not ignored."""
    for value in request.headers.getlist("prefer"):
        position = _past_empty(value, 0)
        while position < len(value):
            match = _PREFERENCE.match(value, position)
            if match is None or match.end() == position:
                return None  # not a list of preferences: nothing can be trusted after this
            position = _past_empty(value, match.end())
            if match.group(1).lower() != "wait":
                continue
            seconds = (match.group(2) or "").strip('"')
            if not _DIGITS.fullmatch(seconds):
                return None
            significant = seconds.lstrip("0") or "0"  # wait=0002 is two seconds
            return _LONGEST if len(significant) > 10 else min(int(significant), _LONGEST)
    return None


def _past_empty(value: str, position: int) -> int:
    """Past the commas and spaces of empty list elements, which a recipient must accept."""
    while position < len(value) and value[position] in " \t,":
        position += 1
    return position


class Holding:
    """Holds requests while a breaker is open, within a time cap and a count cap."""

    def __init__(self, max_seconds: int, max_held: int, pace: ReturnPace | None = None) -> None:
        self.max_seconds = max_seconds
        self.max_held = max_held
        self.held = 0
        self.pace = pace if pace is not None else ReturnPace(0)  # (an empty line is falsy)

    def request(
        self,
        service: PaymentService,
        operation: Operation,
        requested: int | None,
        who: Who | None = None,
        shutdown: asyncio.Event | None = None,
    ) -> HeldRequest:
        """One request's ``Prefer: wait``, held as often as its breaker turns it away within
        its one budget (:meth:`HeldRequest.run`). ``who``, a create, takes its place in the
        return line while it is held. ``shutdown``, the server's (draining.py): set, it ends
        the wait."""
        return HeldRequest(self, service, operation, requested, who, shutdown)

    def capped_wait(self, requested: int | None) -> int | None:
        """The seconds a request asking for ``requested`` is held at most; None: not held."""
        if not requested or self.max_seconds == 0:
            return None
        return min(requested, self.max_seconds)


class HeldRequest:
    """A request's ``Prefer: wait=N``: N seconds (capped) from its arrival, spent held while
    its breaker would turn it away, however often that happens.

    Held once and then turned away anyway (another request took the trial slot it was woken
    for; the trial failed and the breaker re-opened before its turn), it is not answered 503
    with most of its wait unused: :meth:`run` holds it again for what is left. Only a turn-away
    that stored and sent nothing (``GatewayTurnedAway``) is tried again, so a create is never
    sent twice; a trial slot is still only ever taken by the breaker's own admission."""

    def __init__(
        self,
        holding: Holding,
        service: PaymentService,
        operation: Operation,
        requested: int | None,
        who: Who | None,
        shutdown: asyncio.Event | None,
    ) -> None:
        self._holding = holding
        self._service = service
        self._operation = operation
        self._seconds = holding.capped_wait(requested)
        self._who = who
        self._shutdown = shutdown
        self._until: float | None = None
        self._instant = 0  # let through at once after a turn-away, in a row
        #: The wait applied (``Preference-Applied: wait=N``), once the request was held.
        self.applied: int | None = None

    @property
    def wanted(self) -> bool:
        """Whether the request asked to be held, and the server holds requests at all."""
        return self._seconds is not None

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` once the breaker would let it through (held until then), and again,
        held anew, each time it is turned away with nothing stored or sent while its wait
        lasts. The last ``GatewayTurnedAway`` propagates once the wait is used up, at
        shutdown, or when no more requests may be held."""
        await self.wait(again=False)
        while True:
            try:
                return await attempt()
            except GatewayTurnedAway:
                if not await self.wait(again=True):
                    raise

    async def wait(self, *, again: bool) -> bool:
        """Hold while the breaker would turn the request away, at most for what is left of
        its wait; whether it may be tried (again) now. The first time (``again`` false) a
        request the breaker would let through now is not held at all; turned away after all
        (``again``), it waits for the breaker's next admission instead."""
        holding, seconds = self._holding, self._seconds
        if seconds is None or (self._shutdown is not None and self._shutdown.is_set()):
            return False
        loop = asyncio.get_running_loop()
        if self._until is None:
            self._until = loop.time() + seconds
        remaining = self._until - loop.time()
        if remaining <= 0 or holding.held >= holding.max_held:
            return False
        if not again and self._service.unavailable_for(self._operation) is None:
            return False
        self.applied = seconds
        holding.held += 1
        if self._who is not None:
            holding.pace.join(self._who, remaining)
        started = loop.time()
        try:
            admitted = await _until_available_or_shutdown(
                self._service, self._operation, remaining, self._shutdown
            )
        finally:
            holding.held -= 1
        if admitted and again and loop.time() - started < INSTANT:
            # Let through at once after being turned away: the breaker's forecast and its
            # admission disagree (another instance holds the trial lease). Once is a race;
            # twice in a row, a request would spin on it.
            self._instant += 1
            return self._instant < 2
        self._instant = 0
        return admitted


async def _until_available_or_shutdown(
    service: PaymentService, operation: Operation, seconds: float, shutdown: asyncio.Event | None
) -> bool:
    """Wait for the breaker, at most ``seconds``, and no longer than the server runs: a held
    request stops waiting when a graceful shutdown begins (draining.py) and is answered as
    without the preference, instead of holding the shutdown for its grace. Whether the
    breaker would let the request through."""
    if shutdown is None:
        return await service.wait_available(operation, seconds)
    if shutdown.is_set():
        return False
    available = asyncio.ensure_future(service.wait_available(operation, seconds))
    waits = [available, asyncio.ensure_future(shutdown.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return available.done() and not available.cancelled() and available.result()
