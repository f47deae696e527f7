"""The README's main job: the demo story runs end to end on embedded defaults."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

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
