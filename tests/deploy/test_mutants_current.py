"""Every curated mutant still applies: its pattern is found exactly once in its file.

The code moves on; a mutant whose pattern no longer matches silently stops guarding its
invariant (three did after the request-path work). ``scripts/mutants`` runs them; this keeps
the list honest in every CI run at no cost.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = tomllib.loads((ROOT / "tests" / "mutants.toml").read_text(encoding="utf-8"))["mutant"]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m["id"] for m in MUTANTS])
def test_the_mutant_applies_exactly_once(mutant: dict[str, object]) -> None:
    source = (ROOT / str(mutant["file"])).read_text(encoding="utf-8")
    assert source.count(str(mutant["pattern"])) == 1, f"{mutant['id']}: pattern not found once"
    assert mutant["pattern"] != mutant["replacement"]
    tests = mutant["tests"]
    assert isinstance(tests, list)
    assert tests
    for test in tests:
        assert (ROOT / str(test).split("::")[0]).exists(), f"{mutant['id']}: {test} is gone"
