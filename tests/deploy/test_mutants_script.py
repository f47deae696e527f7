"""scripts/mutants judges a mutant only by tests that ran.

A mutant counts as killed when a named test failed. When pytest could not run at all (missing
from the interpreter, a broken plugin), nothing was learnt about the mutant; with
``--no-baseline`` that used to be reported as a kill and the score said 2/2.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANT = """
[[mutant]]
id = "harmless"
invariant = "none"
file = "pyproject.toml"
pattern = "[tool.pytest.ini_options]"
replacement = "[tool.pytest.ini_options] "
tests = ["tests/deploy/test_mutants_current.py"]
description = "a mutant whose tests cannot run in an interpreter without pytest"
"""


def test_a_run_where_pytest_cannot_start_is_broken_not_killed(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)  # the standard library only: no pytest
    python = bare / "bin" / "python"
    mutants = tmp_path / "mutants.toml"
    mutants.write_text(MUTANT, encoding="utf-8")
    completed = subprocess.run(  # noqa: S603 - our own script and a fresh interpreter
        [str(python), str(ROOT / "scripts" / "mutants.py"), "--mutants", str(mutants),
         "--no-baseline"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert sys.executable != str(python)
    assert "No module named pytest" in completed.stdout
    assert "BROKEN" in completed.stdout
    assert "KILLED" not in completed.stdout
    assert "mutation score: 0/1 killed" in completed.stdout
    assert completed.returncode == 1
