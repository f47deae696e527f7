"""A worker settles the cycle collector once the service has started (``collector.py``).

Each check runs in a child interpreter: freezing and the thresholds are process-wide, and the
test process must keep its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from paytabs_guard.entrypoints.collector import YOUNG_THRESHOLD


def _run(tmp_path: Path, script: str) -> dict[str, object]:
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(script), encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - our own interpreter on a file this test wrote
        [sys.executable, str(probe)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_service_settles_the_collector_after_its_start_up(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        f"""
        import asyncio, gc, json
        from paytabs_guard.entrypoints.api.app import create_service
        from paytabs_guard.settings import load_settings

        settings = load_settings({{
            "PAYTABS_PROFILE_ID": "987654",
            "PAYTABS_SERVER_KEY": "collector-test-server-key",
            "PAYTABS_BASE_URL": "http://127.0.0.1:9",
            "DATABASE_URL": "sqlite+aiosqlite:///{tmp_path / "service.db"}",
        }})
        app = create_service(settings)
        before = (gc.get_threshold()[0], gc.get_freeze_count())

        async def main():
            async with app.router.lifespan_context(app):
                return gc.get_threshold()[0], gc.get_freeze_count()

        during = asyncio.run(main())
        print(json.dumps({{"before": before, "during": during}}))
        """,
    )
    assert result["before"] == [700, 0]  # the interpreter's defaults until start-up ends
    during = result["during"]
    assert isinstance(during, list)
    threshold, frozen = during
    assert threshold == YOUNG_THRESHOLD
    assert frozen > 10_000  # the app, the container and the modules they loaded


def test_start_ups_garbage_is_freed_not_frozen(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        import gc, json, weakref
        from paytabs_guard.entrypoints.collector import settle_after_start

        class Node:
            pass

        gc.disable()  # so only settle_after_start can free the cycle
        dropped = Node()
        dropped.me = dropped
        gone = weakref.ref(dropped)
        del dropped
        settle_after_start()
        print(json.dumps({"dropped_freed": gone() is None,
                          "frozen": gc.get_freeze_count() > 0}))
        """,
    )
    assert result == {"dropped_freed": True, "frozen": True}
