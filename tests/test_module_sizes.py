"""Modules stay small enough to read (issue 11: none over 500 lines outside the simulator and
the benchmarks). One is still over and is listed with its size today: it may shrink, not
grow, and no other may pass the bound."""

from __future__ import annotations

from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src" / "paytabs_guard"
LIMIT = 500
EXEMPT_DIRS = ("entrypoints/bench", "entrypoints/chaos")  # the benchmarks
STILL_OVER = {  # to be split; a ceiling, not an allowance
    "resilience/shared.py": 660,
}


def _sizes() -> dict[str, int]:
    sizes = {}
    for path in SOURCE.rglob("*.py"):
        name = path.relative_to(SOURCE).as_posix()
        if not name.startswith(EXEMPT_DIRS):
            sizes[name] = len(path.read_text(encoding="utf-8").splitlines())
    return sizes


def test_no_module_passes_the_bound_and_the_known_ones_only_shrink() -> None:
    sizes = _sizes()
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert set(over) <= set(STILL_OVER), f"split these (over {LIMIT} lines): {over}"
    grown = {name: sizes[name] for name in STILL_OVER if sizes.get(name, 0) > STILL_OVER[name]}
    assert not grown, f"these may only shrink: {grown}"
