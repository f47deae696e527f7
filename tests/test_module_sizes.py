"""Modules stay small enough to read (issue 11: none over 500 lines outside the simulator and
the benchmarks)."""

from __future__ import annotations

from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src" / "paytabs_guard"
LIMIT = 500
EXEMPT_DIRS = ("entrypoints/bench", "entrypoints/chaos")  # the benchmarks


def _sizes() -> dict[str, int]:
    sizes = {}
    for path in SOURCE.rglob("*.py"):
        name = path.relative_to(SOURCE).as_posix()
        if not name.startswith(EXEMPT_DIRS):
            sizes[name] = len(path.read_text(encoding="utf-8").splitlines())
    return sizes


def test_no_module_passes_the_bound() -> None:
    sizes = _sizes()
    assert sizes, f"no modules found under {SOURCE}"
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert not over, f"split these (over {LIMIT} lines): {over}"
