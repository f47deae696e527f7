"""Number types for the command line's arguments: a value out of range is a usage error (one
line, exit 2), not a traceback later or a run that means nothing (a port past 65535 failing
in ``bind()``, a negative ``--limit`` meaning no limit, ``--duration -1`` measuring nothing)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_in(low: int, high: int | None = None, *, name: str = "") -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {name or 'int value'}: {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"{low}-{high}"
            subject = f"{name} must" if name else "must"
            raise argparse.ArgumentTypeError(f"{subject} be {span}, got {value}")
        return value

    return parse


def _number(text: str, *, zero: bool) -> float:
    """``text`` as a finite float above zero (from zero with ``zero``), or a usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    # NaN fails both comparisons; infinity is refused by name.
    in_range = value >= 0 if zero else value > 0
    if not in_range or value == float("inf"):
        bound = "from 0" if zero else "above 0"
        raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero (seconds, a rate)."""
    return _number(text, zero=False)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number from zero (a warm-up that may be skipped)."""
    return _number(text, zero=True)


def int_list(low: int, high: int, *, name: str) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: comma-separated integers, each from ``low`` to ``high``, no repeats
    (``--workers 1,2``)."""
    one = int_in(low, high, name=name)

    def parse(text: str) -> tuple[int, ...]:
        values = tuple(one(part.strip()) for part in text.split(","))
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{name} repeats a value: {text!r}")
        return values

    return parse


def subset_of(allowed: tuple[str, ...], *, name: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated, non-empty subset of ``allowed``, in the order given
    (``--databases sqlite,postgres``)."""

    def parse(text: str) -> tuple[str, ...]:
        values = tuple(part.strip() for part in text.split(","))
        unknown = [value for value in values if value not in allowed]
        if unknown or not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(
                f"{name} must be a comma-separated subset of {','.join(allowed)}, got {text!r}"
            )
        return values

    return parse
