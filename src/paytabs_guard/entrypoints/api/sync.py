"""Ask PayTabs about a payment, but never make the caller wait longer than a bound.

The query runs as a background task: when it outlasts ``sync_wait_seconds`` the caller gets the
last known state at once (``confirmed`` false), and the task goes on, so an answer that arrives
later is still applied (and shutdown waits for it).

The browser return needs no credentials, and its signed form never expires: replayed in a
loop for a payment that stays undecided, each replay was a PayTabs query with the merchant's
server key. :class:`SyncGate` makes it one query per payment at a time, and none within
``sync_min_interval_seconds`` of PayTabs' last answer about it (that answer is already applied).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from paytabs_guard.domain import Payment, PaymentState
from paytabs_guard.service.gateway import GatewayNotReached, GatewayOutcomeUnknown
from paytabs_guard.service.payments import PaymentService

if TYPE_CHECKING:  # runtime.py holds a SyncGate
    from .runtime import Runtime


@dataclass(frozen=True, slots=True)
class Synced:
    """The payment after asking PayTabs; ``reason`` says why it is not confirmed."""

    payment: Payment
    confirmed: bool
    reason: str | None = None
    retry_after: float | None = None
    """Seconds until PayTabs may be asked again, when an open circuit said so."""


@dataclass(frozen=True, slots=True)
class _NotAsked:
    reason: str
    retry_after: float | None = None


async def _sync_quietly(service: PaymentService, known: Payment) -> Payment | _NotAsked:
    """The synced payment, or why PayTabs could not be asked (expected, so not raised)."""
    try:
        return await service.sync(known.id)
    except GatewayNotReached as error:
        return _NotAsked(f"PayTabs is unavailable: {error}", error.retry_after)
    except GatewayOutcomeUnknown:
        return _NotAsked("PayTabs gave no clear answer; the payment is reconciled later")


_Query = asyncio.Task[Payment | _NotAsked]


@dataclass
class SyncGate:
    """At most one PayTabs query per payment at a time in this process, and none within
    ``interval`` seconds of PayTabs' last answer about it. Remembers answers only for
    ``interval`` (oldest first out), so it holds no more than the payments asked about lately."""

    interval: float
    clock: Callable[[], float] = time.monotonic
    _running: dict[str, _Query] = field(default_factory=dict)
    _answered: dict[str, float] = field(default_factory=dict)  # id -> when, oldest first

    def answered_lately(self, payment_id: str) -> bool:
        return self.asked_again_in(payment_id) > 0

    def asked_again_in(self, payment_id: str) -> float:
        """Seconds until PayTabs may be asked about ``payment_id`` again (0: now)."""
        when = self._answered.get(payment_id)
        return 0.0 if when is None else max(0.0, self.interval - (self.clock() - when))

    def query(self, payment_id: str, start: Callable[[], _Query]) -> _Query:
        """The query under way for ``payment_id``, or one ``start`` begins now."""
        running = self._running.get(payment_id)
        if running is None:
            running = self._running[payment_id] = start()
            running.add_done_callback(lambda task: self._done(payment_id, task))
        return running

    def _done(self, payment_id: str, task: _Query) -> None:
        del self._running[payment_id]
        if task.cancelled() or task.exception() is not None or isinstance(task.result(), _NotAsked):
            return  # PayTabs gave no answer: the next caller may ask
        now = self.clock()
        self._answered.pop(payment_id, None)
        self._answered[payment_id] = now  # to the end: the dict stays ordered by time
        while self._answered:
            oldest, when = next(iter(self._answered.items()))
            if now - when < self.interval:
                break
            del self._answered[oldest]

    def __len__(self) -> int:
        return len(self._running) + len(self._answered)


async def sync_within(runtime: Runtime, service: PaymentService, payment_id: str) -> Synced:
    """``PaymentService.sync`` bounded in time (raises PaymentNotFound for an unknown id)."""
    before = await service.get(payment_id)
    if before.state.is_final and not before.awaits_follow_up:
        # Decided, and no refund, capture or void whose outcome PayTabs alone knows.
        return Synced(before, confirmed=True)
    gate = runtime.sync_gate
    if gate.answered_lately(payment_id):
        # PayTabs answered about it a moment ago, and that answer is what ``before`` holds;
        # a payment still waited for is asked about again no sooner than the gate allows.
        return _as_answered(service, before, not_before=gate.asked_again_in(payment_id))
    task = gate.query(
        payment_id,
        lambda: runtime.background.spawn(_sync_quietly(service, before), name=f"sync-{payment_id}"),
    )
    done, _ = await asyncio.wait({task}, timeout=runtime.options.sync_wait_seconds)
    if not done:
        wait = runtime.options.sync_wait_seconds
        return Synced(before, False, f"PayTabs did not answer within {wait:g} s; asked again later")
    outcome = task.result()
    if isinstance(outcome, _NotAsked):
        payment = await service.get(payment_id)
        return Synced(payment, False, outcome.reason, outcome.retry_after)
    return _as_answered(service, outcome)


def _as_answered(service: PaymentService, payment: Payment, *, not_before: float = 0.0) -> Synced:
    """The payment as PayTabs' answer left it. Still unknown means PayTabs holds nothing for
    it yet while its request may still arrive: not confirmed until that can no longer be, and
    asked about again then (or when the gate next lets a query through, ``not_before``
    seconds from now, if that is later)."""
    until = service.no_record_before(payment)
    if until is None:
        return Synced(payment, confirmed=True)
    wait = max(not_before, (until - service.now()).total_seconds())
    when = until.isoformat().replace("+00:00", "Z")
    if payment.state is PaymentState.INITIATING:
        reason = f"its create is still under way; PayTabs is asked about it from {when}"
    else:
        reason = (
            "PayTabs holds nothing for this payment yet, and its request may still reach "
            f"PayTabs; it is taken as never sent (failed) at {when}"
        )
    return Synced(payment, False, reason, wait)
