"""``paytabs-guard reconcile``: one reconciliation pass, for cron jobs and operators.

Safe while ``serve`` instances run their own passes: claims skip rows others hold and applying
a result twice changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta

from paytabs_guard.bootstrap import DATABASE_UNREACHABLE, build_container
from paytabs_guard.entrypoints.serve import secret_values
from paytabs_guard.observability import configure_logging
from paytabs_guard.service.reconciliation import reconcile_once
from paytabs_guard.setting_values import redact_url
from paytabs_guard.settings import Settings


async def reconcile(
    settings: Settings, *, limit: int, stuck_after: timedelta | None
) -> dict[str, object]:
    container = await build_container(settings, reconcile=False)
    try:
        wait = (
            stuck_after
            if stuck_after is not None
            else timedelta(seconds=settings.reconcile_stuck_after_seconds)
        )
        report = await reconcile_once(container.payments, stuck_after=wait, limit=limit)
    finally:
        await container.aclose()
    return {
        "started_at": report.started_at.isoformat(),
        "examined": report.examined,
        "changed": report.changed,
        "unreachable": report.unreachable,
        "failed": report.failed,
        "tokens_deleted": report.tokens_deleted,
        "states": report.states,
    }


def run_reconcile(settings: Settings, *, limit: int, stuck_after_seconds: int | None) -> int:
    """Print the pass's report as JSON; exit 1 when PayTabs could not be asked about some
    payments, or settling some failed (each failure is logged)."""
    stuck_after = None if stuck_after_seconds is None else timedelta(seconds=stuck_after_seconds)
    # The pass's log lines as serve writes them: JSON on stderr (the report is stdout), with
    # the payment id of each one it cannot settle. Without a handler, Python's last resort
    # printed the bare message and a traceback, and a cron job's log never said which payment.
    configure_logging(settings.log_level, secrets=secret_values(settings))
    try:
        report = asyncio.run(reconcile(settings, limit=limit, stuck_after=stuck_after))
    except DATABASE_UNREACHABLE as error:
        # A cron job's log: which database and why, in a line, not a traceback.
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = redact_url(settings.database_url)
        print(f"paytabs-guard reconcile: cannot use {where}: {why}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 1 if report["unreachable"] or report["failed"] else 0
