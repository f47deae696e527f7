"""What became of each delivery the relay claimed, and the order a batch goes to a sink in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, TypeVar


class _LeaseLost:
    """A claimed delivery not attempted because its lease ran out first."""


LEASE_LOST: Final = _LeaseLost()


class _Held:
    """A claimed delivery not attempted because an earlier event of its payment was not
    accepted in the same batch (it failed, or its lease ran out): it goes back unclaimed."""


HELD: Final = _Held()

Outcome = Exception | _LeaseLost | _Held | None
"""What became of a claimed delivery: None when the sink accepted it."""

T = TypeVar("T")


def waves(claimed: Sequence[T], payment_of: Callable[[T], str]) -> list[list[T]]:
    """``claimed`` (in ``seq`` order) as waves: the n-th wave holds each payment's n-th
    claimed event, in ``seq`` order. A wave goes to the sink only once every event of the
    waves before it was accepted, so no payment's event overtakes an earlier one."""
    result: list[list[T]] = []
    depth: dict[str, int] = {}
    for item in claimed:
        payment = payment_of(item)
        n = depth.get(payment, 0)
        depth[payment] = n + 1
        if n == len(result):
            result.append([])
        result[n].append(item)
    return result
