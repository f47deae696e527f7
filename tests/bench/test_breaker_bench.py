"""The breaker benchmark runs end to end (a tiny run: the numbers are not checked here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paytabs_guard.entrypoints.bench.breaker import main, markdown


def test_a_tiny_benchmark_run_reports_every_contestant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "breaker.json"
    assert (
        main(["--rounds", "1", "--calls", "200", "--rejects", "2000", "--json", str(output)]) == 0
    )
    report = json.loads(output.read_text(encoding="utf-8"))
    names = [row["name"] for row in report["results"]]
    assert names[:3] == ["baseline: await noop()", "paytabs-guard", "paytabs-guard"]
    assert set(names[3:]) | set(report["skipped"]) == {
        "pybreaker",
        "aiobreaker",
        "purgatory",
        "circuitbreaker",
    }
    ours = report["results"][1]
    assert ours["closed"]["median_ns"] > 0
    assert ours["memory_rejects"] == 2000
    assert ours["memory_bytes"] < 64 * 1024  # flat: nothing kept per rejection
    assert "paytabs-guard" in capsys.readouterr().out
    table = markdown(report)
    assert table.startswith("| variant |")
    assert table.count("\n") == len(names) + 2


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--rounds", "0"])
