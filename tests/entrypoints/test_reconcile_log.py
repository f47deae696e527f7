"""``paytabs-guard reconcile`` as a cron job runs it: the report on stdout, and the pass's log
lines as the service writes them on stderr, naming the payment it could not settle."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import paytabs_guard
from paytabs_guard.entrypoints.serve import free_port

SOURCE = Path(paytabs_guard.__file__).parents[1]
SERVER_KEY = "S-TOPSECRET-server-key"


def _cli(*argv: str, database: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        "PYTHONPATH": str(SOURCE),
        "PATH": "/usr/bin:/bin",
        "PAYTABS_PROFILE_ID": "987654",
        "PAYTABS_SERVER_KEY": SERVER_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        # Nothing listens there: the pass fails on the row before it would ask PayTabs.
        "PAYTABS_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", *argv],
        env=environment,
        cwd=database.parent,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_a_payment_the_pass_cannot_settle_is_a_json_line_with_its_id(tmp_path: Path) -> None:
    # Without a handler, Python's last resort printed "reconcile: settling a payment failed"
    # and a bare traceback: the cron job's log said that one failed, never which.
    database = tmp_path / "reconcile.db"
    assert _cli("db", "upgrade", database=database).returncode == 0
    with sqlite3.connect(database) as connection:  # a row it cannot read: no such currency
        connection.execute(
            "INSERT INTO payments (id, cart_id, profile_id, amount_minor, currency, tran_type,"
            " description, state, metadata, captured_minor, refunded_minor, conflict_count,"
            " created_at, updated_at, version, expires_at) VALUES ('pay_unreadable',"
            " 'pay_unreadable', 987654, 100, 'ZZZ', 'sale', 'x', 'awaiting_customer', '{}',"
            " 0, 0, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1, '2026-01-01 00:20:00')"
        )

    result = _cli("reconcile", "--stuck-after", "0", database=database)

    assert result.returncode == 1  # failed > 0
    assert json.loads(result.stdout)["failed"] == 1
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    (failed,) = [line for line in lines if line["event"] == "reconcile: settling a payment failed"]
    assert failed["payment_id"] == "pay_unreadable"
    assert failed["level"] == "error"
    assert "unknown or unsupported currency" in failed["exception"]
    assert SERVER_KEY not in result.stderr + result.stdout
