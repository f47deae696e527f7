"""The CLI as the README shows it: every command parses as written, and the commands that own
their options (simulator, benchmarks) get them untouched."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from paytabs_guard.entrypoints.cli import build_parser
from paytabs_guard.entrypoints.serve import free_port

README = Path(__file__).parents[2] / "README.md"
# The README's placeholders, and a value each that the command accepts.
PLACEHOLDERS = {"H": "127.0.0.1", "P": "8001", "N": "2", "S": "60", "PATH": "out.json"}


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def readme_commands() -> list[str]:
    text = README.read_text()
    table = re.findall(r"^\| `paytabs-guard ([^`]+)` \|", text, flags=re.MULTILINE)
    shown = re.findall(r"^paytabs-guard ([^#\n]+?)\s*(?:#.*)?$", text, flags=re.MULTILINE)
    return table + shown


def as_typed(command: str) -> list[str]:
    """``serve [--host H --port P]`` with every optional part given and placeholders filled."""
    words = command.replace("[", " ").replace("]", " ").split()
    return [PLACEHOLDERS.get(word, word) for word in words]


def test_the_readme_shows_the_commands_it_should() -> None:
    commands = readme_commands()
    assert "simulator --port 8090" in commands
    assert len(commands) >= 12


#: Commands whose options are documented with them, not in the README's table.
OWN_OPTIONS = ("simulator", "bench")  # docs/simulator.md, docs/benchmarks.md


def _table_rows() -> list[str]:
    rows = re.findall(r"^\| `paytabs-guard ([^`]+)` \|", README.read_text(), flags=re.MULTILINE)
    return [row for row in rows if not row.startswith(OWN_OPTIONS)]


@pytest.mark.parametrize("row", _table_rows())
def test_the_readme_row_of_a_command_shows_all_its_options(row: str) -> None:
    # `serve --simulator-port` was in `serve --help` and not in the README's table.
    words = [word for word in row.split() if word.isalpha()]  # the command, not its options
    usage = io.StringIO()
    with contextlib.redirect_stdout(usage), pytest.raises(SystemExit):
        build_parser().parse_args([*words, "--help"])
    options = set(re.findall(r"\[(--[a-z-]+)", usage.getvalue())) - {"--help"}
    assert sorted(options - set(as_typed(row))) == []


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses_as_written(command: str, tmp_path: Path) -> None:
    # --help after every option: the command's own parser accepted all of them, then stops.
    done = _cli([*as_typed(command), "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: paytabs-guard"), done.stdout
    assert "error:" not in done.stderr


def test_simulator_with_its_own_options_runs(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", "simulator",
         "--port", str(port), "--seed", "3"],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.1)
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_the_installed_command_passes_exit_codes_on(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "paytabs-guard"
    if not script.exists():
        pytest.skip("paytabs-guard is not installed next to this interpreter")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYTABS_")}
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "config", "check"],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "PAYTABS_PROFILE_ID: required" in done.stderr


def test_bench_options_reach_the_benchmark(tmp_path: Path) -> None:
    done = _cli(["bench", "breaker", "--no-such-option"], tmp_path)
    assert done.returncode == 2
    assert "paytabs-guard bench breaker: error: unrecognized arguments: --no-such-option" in (
        done.stderr
    )
    unknown = _cli(["serve", "--no-such-option"], tmp_path)
    assert unknown.returncode == 2
    assert "unrecognized arguments: --no-such-option" in unknown.stderr
