"""The README's main job: the demo story runs end to end on embedded defaults."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import paytabs_guard
from paytabs_guard.entrypoints.demo import demo
from paytabs_guard.entrypoints.serve import free_port
from paytabs_guard.settings import load_settings

pytestmark = pytest.mark.anyio


async def test_the_demo_story_shows_success_decline_refund_outage_and_recovery(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    settings = load_settings({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"})
    await demo(settings, port=free_port(), wait=False, console=console)
    text = out.getvalue()
    assert text.count("completed") >= 2
    assert "payment declined  20.00 AED gift: failed" in text
    assert "partially_refunded" in text
    assert "breaker opens" in text
    assert "HTTP 503" in text
    # Recovery comes from a probe, not from the 30 s timer: the held create went through.
    assert "probe answers" in text
    assert "Preference-Applied wait=10" in text
    assert "real trial calls succeeded: closed" in text
    assert "create breaker: closed" in text
    assert "payment.refunded" in text
    # 80 columns: panels on their own lines, the event list says it is the tail of the list.
    assert "╯╭" not in text
    assert re.search(r"subscriber: \d+ \(the last 8 below\)", text)
    # --no-wait: the service is gone, so no URL of it is offered, only how to start one.
    assert "the demo has ended" in text
    assert "/docs" not in text
    assert "paytabs-guard serve --simulator" in text


def test_the_demos_log_lines_are_json_like_the_services(tmp_path: Path) -> None:
    # The breaker the story opens was logged through Python's last-resort handler: a dict
    # repr (`{'breaker': <Operation.CREATE: 'create'>, ...}`) over the live view, unredacted.
    source = Path(paytabs_guard.__file__).parents[1]
    command = ["demo", "--no-wait", "--port", str(free_port())]
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", *command],
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "the story opens a breaker: that warning is logged"
    events = [json.loads(line) for line in lines]
    assert {"event": "circuit breaker opened", "breaker": "create"}.items() <= events[0].items()
    assert all(event["level"] in ("warning", "error") for event in events)
