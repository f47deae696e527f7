"""Hosted pages expire at their deadline, not at the next reconciliation pass.

One sleeper per process (no task per payment) sleeps until the earliest deadline of the pages
still awaiting the customer, then settles every page that is due exactly as reconciliation
does (:func:`settle`: ask PayTabs first, so a page paid at the last second completes instead of
expiring; expire only when PayTabs holds no transaction for it). It learns its deadlines from
the database: at start (pages that expired while the service was down are settled at once) and
after each wake. A create in this process whose deadline comes before the one it sleeps until
wakes it (``arm``, given to the use cases as ``PaymentDeps.page_opened``); pages created by
other instances are found at the next wake, at the latest ``longest_nap`` later.

Safe on several instances: each may settle the same page at its deadline; the expiry is
decided under the row lock and only while the payment still awaits the customer, so exactly
one transition and one ``payment.expired`` event result, and the others change nothing.

What it leaves to reconciliation: a page PayTabs could not be asked about, and one PayTabs
answered about without settling it (a quarantined result). Both stay ``awaiting_customer``
and the next reconciliation pass asks again; the sleeper does not come back to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from paytabs_guard.domain import Operation
from paytabs_guard.service.payment_steps import Clock, PaymentDeps, PaymentNotFound
from paytabs_guard.service.ports import PageDeadline
from paytabs_guard.service.reconciliation import settle

log = logging.getLogger(__name__)

Sleep = Callable[[datetime | None, asyncio.Event], Awaitable[None]]
"""``sleep(until, wake)``: return once the clock reaches ``until`` or ``wake`` is set, whichever
comes first (with ``until`` None, when ``wake`` is set or at the sleeper's longest nap)."""

#: The longest the sleeper sleeps without looking at the database: how late a page created by
#: another instance (that cannot wake this one) may expire here, and how far a wall-clock jump
#: can delay an expiry.
LONGEST_NAP = timedelta(seconds=60)


def clock_sleep(clock: Clock, *, longest: timedelta = LONGEST_NAP) -> Sleep:
    """The production :data:`Sleep`: the deadline is on ``clock`` (the use cases' wall clock),
    the wait on the event loop's timer, never longer than ``longest``."""

    async def sleep(until: datetime | None, wake: asyncio.Event) -> None:
        nap = longest if until is None else min(until - clock(), longest)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(nap.total_seconds(), 0.0)):
                await wake.wait()

    return sleep


class PageExpiry:
    """The page-deadline sleeper of one process: :meth:`arm` on creates, :meth:`run_forever`
    in ``serve``; :meth:`tick` is one look at the deadlines (what tests drive)."""

    def __init__(
        self, sleep: Sleep, *, batch: int = 50, retry_after: timedelta = timedelta(seconds=5)
    ) -> None:
        self._sleep = sleep
        self._batch = batch
        self._retry_after = retry_after
        self._wake = asyncio.Event()
        self._asleep_until: datetime | None = None
        self._asleep = False
        # The last page this process settled, or gave up on: the next look starts after it.
        self._through: PageDeadline | None = None

    def arm(self, deadline: datetime) -> None:
        """A page waits for its customer until ``deadline``: wake the sleeper if that is sooner
        than what it sleeps until (or it is awake: it then looks once more)."""
        sooner = self._asleep_until is None or deadline < self._asleep_until
        if sooner or not self._asleep:
            self._wake.set()

    async def tick(self, deps: PaymentDeps) -> datetime | None:
        """Settle every page whose deadline has passed; return when to look again: the next
        deadline, a retry time while PayTabs' query circuit is open, or None (no page waits)."""
        now = deps.clock()
        while True:
            async with deps.uow() as uow:
                pages = await uow.payments.waiting_pages(after=self._through, limit=self._batch)
            for page in pages:
                if page.at > now:
                    return page.at
                wait = deps.gateway.unavailable_for(Operation.QUERY)
                if wait is not None:  # nothing would be sent: try this page again then
                    return now + timedelta(seconds=wait)
                with contextlib.suppress(PaymentNotFound):
                    await settle(deps, page.payment_id)
                self._through = page
            if len(pages) < self._batch:
                return None

    async def run_forever(self, deps: PaymentDeps, stop: asyncio.Event) -> None:
        """Tick, sleep until the next deadline (or an earlier ``arm``), until ``stop`` is set;
        a tick that fails is logged and tried again ``retry_after`` later."""

        async def wake_on_stop() -> None:
            await stop.wait()
            self._wake.set()

        watcher = asyncio.create_task(wake_on_stop(), name="page-expiry-stop")
        try:
            while not stop.is_set():
                self._wake.clear()  # before the tick: an arm during it is not lost
                try:
                    until = await self.tick(deps)
                except Exception:  # a failed look must not end the sleeper
                    log.exception("page expiry: looking at the deadlines failed")
                    until = deps.clock() + self._retry_after
                if stop.is_set():
                    break
                self._asleep_until, self._asleep = until, True
                try:
                    await self._sleep(until, self._wake)
                finally:
                    self._asleep = False
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
