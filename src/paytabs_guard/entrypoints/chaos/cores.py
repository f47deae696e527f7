"""Which cores the benchmark's processes run on.

In production the merchants and PayTabs are other machines: they never take CPU from the
service. On one machine they do, and at the moment that matters most, the recovery from an
outage, several hundred merchants' HTTP clients and the simulator's answers compete with the
service for the same two cores, so the benchmark measured the harness's own contention as the
service's slowness. With ``split`` the service's process (with its relay and the benchmark's
subscriber) runs on the first core alone, and the merchants' and the simulator's processes share
the others; PostgreSQL and Redis are not pinned. On a two-core machine that measured worse
(the one other core saturates in a recovery surge), so ``shared``, every process free to run
anywhere, is the default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

LAYOUTS: Final = ("split", "shared")


@dataclass(frozen=True, slots=True)
class Cores:
    """The cores of the service's process and of the others (merchants, simulator)."""

    service: frozenset[int]
    others: frozenset[int]

    def pin_other(self, pid: int) -> None:
        os.sched_setaffinity(pid, self.others)

    def describe(self) -> dict[str, list[int]]:
        return {"service": sorted(self.service), "merchants_and_simulator": sorted(self.others)}


def split_cores() -> Cores | None:
    """The first core for the service and the rest for the others; None on a machine with one
    core or without CPU affinity (the processes then share what there is)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return Cores(frozenset(cores[:1]), frozenset(cores[1:]))


@contextlib.contextmanager
def service_pinned(cores: Cores | None) -> Iterator[None]:
    """Run this process (the service's) on its own core for the duration, then put its
    affinity back (the benchmark also runs inside other programs, such as the test suite)."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores.service)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
