"""Curated mutation testing: break one money or security invariant at a time, run its tests.

The mutants are data (tests/mutants.toml): a file, an exact text that must occur in it exactly
once, its replacement, the tests that must notice, and what the change breaks. For each mutant
this copies the repository to a temporary directory once, writes the mutated file there, runs
``pytest -x -q`` on the named tests with the copy's ``src`` first on ``PYTHONPATH``, and puts the
file back. A mutant is *killed* when the tests fail, *survived* when they pass (a bug in the
suite), *broken* when its text does not occur exactly once, its tests cannot be collected, or
pytest fails without naming a failed test (it could not run at all).

Usage: scripts/mutants [--only ID,ID] [--list] [--timeout S] [--no-baseline] [--mutants TOML]
Exit status: 0 when every mutant was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "tests" / "mutants.toml"
IGNORED = (".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.db")
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)


@dataclass(frozen=True)
class Mutant:
    id: str
    invariant: str
    file: str
    pattern: str
    replacement: str
    tests: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Result:
    mutant: Mutant
    verdict: str  # killed | survived | broken
    detail: str
    seconds: float


def load(path: Path) -> list[Mutant]:
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    mutants = [
        Mutant(
            id=entry["id"],
            invariant=entry["invariant"],
            file=entry["file"],
            pattern=entry["pattern"],
            replacement=entry["replacement"],
            tests=tuple(entry["tests"]),
            description=entry["description"],
        )
        for entry in document["mutant"]
    ]
    ids = [m.id for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"duplicate mutant ids: {', '.join(duplicates)}")
    return mutants


def copy_repository(into: Path) -> Path:
    copy = into / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    return copy


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy's src wins over the editable install of the real tree (a .pth entry), in this
    # process's children too (tests that start the service or the simulator as a subprocess).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy / "src"), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def pytest_command(tests: tuple[str, ...], timeout: float, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
        f"--timeout={timeout:g}", *options, *tests,
    ]  # fmt: skip


def run_tests(
    copy: Path, tests: tuple[str, ...], timeout: float, *, baseline: bool = False
) -> tuple[int, str]:
    # The baseline runs every mutant's test paths at once: on every core, and with a backstop
    # for the whole run (on a slow 2-vCPU host it took over five minutes in one process, past
    # the backstop of one mutant's run).
    options = ("-n", "auto") if baseline else ()
    completed = subprocess.run(  # noqa: S603 - our own interpreter and test paths
        pytest_command(tests, timeout, *options),
        cwd=copy,
        env=environment(copy),
        capture_output=True,
        text=True,
        check=False,
        timeout=3600 if baseline else timeout * 4 + 60,  # a backstop above pytest-timeout's
    )
    return completed.returncode, completed.stdout + completed.stderr


def try_mutant(copy: Path, mutant: Mutant, timeout: float) -> Result:
    started = time.monotonic()
    target = copy / mutant.file
    if not target.is_file():
        return Result(mutant, "broken", f"no file {mutant.file}", 0.0)
    original = target.read_text(encoding="utf-8")
    occurrences = original.count(mutant.pattern)
    if occurrences != 1:
        return Result(mutant, "broken", f"pattern occurs {occurrences} times", 0.0)
    target.write_text(original.replace(mutant.pattern, mutant.replacement), encoding="utf-8")
    try:
        code, output = run_tests(copy, mutant.tests, timeout)
    except subprocess.TimeoutExpired:
        code, output = -1, "FAILED (the test run passed its backstop timeout)"
    finally:
        target.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - started
    if code == 0:
        return Result(mutant, "survived", "every named test passed", seconds)
    if code in (4, 5):  # usage error, nothing collected: the mutant's entry is wrong
        return Result(mutant, "broken", f"pytest exit {code}: {_last_line(output)}", seconds)
    killer = FAILED_LINE.search(output)
    if killer is None:
        # No test failed or errored: pytest itself could not run (not installed, a broken
        # plugin, a crash). That says nothing about the mutant, so it must not count as a kill.
        return Result(
            mutant, "broken", f"pytest exit {code}, no test failed: {_last_line(output)}", seconds
        )
    return Result(mutant, "killed", killer.group(1), seconds)


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant ids to run")
    parser.add_argument(
        "--mutants", type=Path, default=MUTANTS, help="the list to use (default: %(default)s)"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=60, help="per-test timeout (s)")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the unmutated run of every named test"
    )
    options = parser.parse_args(argv)

    mutants = load(options.mutants)
    if options.only:
        wanted = set(options.only.split(","))
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            parser.error(f"unknown mutant ids: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.id in wanted]
    if options.list:
        for mutant in mutants:
            print(f"{mutant.id:32} {mutant.invariant:18} {mutant.description}")
        return 0

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="paytabs-guard-mutants-") as scratch:
        copy = copy_repository(Path(scratch))
        if not options.no_baseline:
            every_test = tuple(sorted({test for mutant in mutants for test in mutant.tests}))
            code, output = run_tests(copy, every_test, options.timeout, baseline=True)
            if code != 0:
                print(output[-4000:])
                print("baseline: the unmutated tests fail; fix them before judging mutants")
                return 1
            print(f"baseline: {len(every_test)} test paths pass unmutated "
                  f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
        results = []
        for number, mutant in enumerate(mutants, 1):
            result = try_mutant(copy, mutant, options.timeout)
            results.append(result)
            print(f"[{number:2}/{len(mutants)}] {result.verdict.upper():8} {mutant.id:32} "
                  f"{result.seconds:5.1f} s  {result.detail}", flush=True)  # fmt: skip

    killed = sum(r.verdict == "killed" for r in results)
    print(f"\nmutation score: {killed}/{len(results)} killed "
          f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    for result in results:
        if result.verdict != "killed":
            print(f"  {result.verdict}: {result.mutant.id} ({result.mutant.file}): "
                  f"{result.mutant.description} - {result.detail}")  # fmt: skip
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
