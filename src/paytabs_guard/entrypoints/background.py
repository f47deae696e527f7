"""The loops a serving instance runs beside its requests: reconciliation passes, the sleeper
that expires unpaid pages at their deadlines (the outbox relay runs its own), the move of
deliveries written by position during a rolling upgrade, and the start-up report of
deliveries left to sinks no longer configured."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

from paytabs_guard.adapters.events.webhook_aliases import adopt_position_names, sink_names
from paytabs_guard.bootstrap import Container
from paytabs_guard.domain import ResultSource
from paytabs_guard.entrypoints.health_checks import configured_sinks, event_store
from paytabs_guard.observability import get_logger
from paytabs_guard.service.reconciliation import ReconcileReport, reconcile_forever

log = get_logger(__name__)

ADOPT_EVERY_SECONDS: Final = 60.0
"""How often deliveries written by position (during a rolling upgrade) are moved."""


async def report_unconfigured_sinks(container: Container) -> None:
    """Once, at start-up: the sinks no longer configured (a URL taken out of
    EVENTS_WEBHOOK_URLS) that still have pending or dead deliveries, which nothing sends and
    the outbox lag does not count. One read of the pending and dead rows' indexes. Before it,
    which sink is which URL: a sink is named by a hash of its URL (``webhook:3f2a9c01b7de``);
    the line shows its position and origin only (a token may be in the path or the query)."""
    urls = container.settings.events_webhook_urls
    for position, (url, sink) in enumerate(zip(urls, sink_names(urls), strict=True), start=1):
        log.info("webhook sink", sink=sink, origin=_origin(url), position=position)
    try:
        # Deliveries an instance of the older version still writes by position (a rolling
        # upgrade past migration 0013) go to their URL's sink first.
        moved = await adopt_position_names(container.engine)
        if moved:
            log.info("deliveries written by position moved to their URL's sink", moved=moved)
        # (the store's own read: the use case would move them again first)
        left = await event_store(container).left_deliveries(configured_sinks(container))
    except Exception as error:  # the relay's own runs report a database that is down
        log.warning(
            "could not look for deliveries left to unconfigured sinks",
            error=type(error).__name__,
        )
        return
    if not left:
        return
    pending = sum(found.pending for found in left)
    dead = sum(found.dead for found in left)
    sinks = ", ".join(
        f"{found.sink} ({found.pending} pending, {found.dead} dead)" for found in left
    )
    log.warning(
        f"{pending} deliveries pending for sinks no longer configured: {sinks}",
        pending=pending,
        dead=dead,
        hint="nothing sends them: configure the sinks again, or drop their deliveries with "
        "POST /payments/v2/events/unconfigured-sinks/drop (docs/events.md)",
    )


async def adopt_position_names_until(
    container: Container, stop: asyncio.Event, every: float = ADOPT_EVERY_SECONDS
) -> None:
    """Every ``every`` seconds until ``stop`` is set, move what instances of the version
    before sinks were named by URL wrote by position to their URL's sink; ends at its first
    look when the upgrade recorded no position. At start-up alone, what the last of them wrote after
    the last new instance started stayed under ``webhook:N``, sent by nobody until the next
    restart."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            moved = await adopt_position_names(container.engine)
        except Exception as error:  # the relay's own runs report a database that is down
            log.warning("could not move deliveries written by position", error=type(error).__name__)
            continue
        if moved is None:
            return
        if moved:
            log.info("deliveries written by position moved to their URL's sink", moved=moved)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: nothing of its user info, path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


async def reconcile_until(container: Container, stop: asyncio.Event) -> None:
    """Reconciliation passes every ``reconciliation.interval`` until ``stop`` is set; each
    report goes to the health endpoint's status and the metrics."""
    interval = container.reconciliation.interval
    if interval is None:
        return

    def on_report(report: ReconcileReport) -> None:
        finished = container.payments.clock()
        container.reconciliation.record(report, finished)
        # unreachable first: its alert is the critical one, and a payment that fails to settle
        # fails again at the next pass, which a recovered PayTabs lets count as failed
        result = "unreachable" if report.unreachable else "failed" if report.failed else "ok"
        container.metrics.reconciliation(result, finished.timestamp())
        for before, after in report.transitions:
            # what reconciliation settled counts as a transition of its own source: the
            # CallbacksLostSettledByReconciliation alert watches exactly these
            container.metrics.payment_result(
                "applied", ResultSource.RECONCILIATION.value, before.value, after.value
            )

    stuck_after = timedelta(seconds=container.settings.reconcile_stuck_after_seconds)
    await reconcile_forever(
        container.payments,
        stop,
        interval=interval,
        stuck_after=stuck_after,
        on_report=on_report,
        # Counted, so that passes failing as a whole show at once (the ReconciliationAborted
        # alert), not only when the last finished pass grows old (ReconciliationStalled).
        on_abort=container.metrics.reconciliation_aborted,
        pause=container.reconciliation.pause,
    )


async def expire_pages_until(container: Container, stop: asyncio.Event) -> None:
    """Expire unpaid pages at their deadlines until ``stop`` is set (with reconciliation)."""
    if container.page_expiry is not None:
        await container.page_expiry.run_forever(container.payments, stop)
