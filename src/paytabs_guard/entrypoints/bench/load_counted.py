"""The service as ``serve`` runs it, plus a statement counter for ``bench load``.

``COUNTED_SERVICE_APP`` is the uvicorn factory the benchmark gives its service runner: each
worker counts every statement and round trip its engines send (the request path and the relay
alike: ``adapters/sql/statements.py``) and writes the running totals to
``$PAYTABS_GUARD_BENCH_COUNTS/<pid>.json`` every ``FLUSH_SECONDS`` from a daemon thread, so
the benchmark can divide a phase's statements by its requests. Nothing here runs in
production.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from paytabs_guard.adapters.sql.statements import StatementCount, count_every_engine
from paytabs_guard.entrypoints.api.main import service

COUNTED_SERVICE_APP: Final = "paytabs_guard.entrypoints.bench.load_counted:counted_service"
COUNTS_ENV: Final = "PAYTABS_GUARD_BENCH_COUNTS"
FLUSH_SECONDS: Final = 0.5
"""Seldom enough that the writes cost the measured worker next to nothing (at 0.2 s they took
about 2 % of its samples in a profile), often enough that a phase's end waits only a moment."""


def counted_service() -> FastAPI:
    directory = os.environ.get(COUNTS_ENV)
    if directory:
        count = count_every_engine()
        path = Path(directory) / f"{os.getpid()}.json"
        threading.Thread(target=_flush_forever, args=(count, path), daemon=True).start()
    return service()


def _flush_forever(count: StatementCount, path: Path) -> None:
    partial = path.with_suffix(".tmp")
    written: dict[str, int] | None = None
    while True:
        totals = {"statements": count.statements, "round_trips": count.round_trips}
        if totals != written:
            partial.write_text(json.dumps(totals), encoding="utf-8")
            partial.replace(path)  # atomic: a reader never sees half a file
            written = totals
        time.sleep(FLUSH_SECONDS)


def read_counts(directory: Path) -> tuple[int, int]:
    """(statements, round trips) of every worker so far."""
    statements = round_trips = 0
    for path in directory.glob("*.json"):
        try:
            totals = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        statements += int(totals["statements"])
        round_trips += int(totals["round_trips"])
    return statements, round_trips
