"""The best any client could have done: which orders were completable at all.

An order is *completable* when, somewhere inside ``[arrival, arrival + budget]``, the gateway is
up for **create** for at least the time one create needs at the gateway (its slowest healthy
latency: the scenario's ``latency_ms`` upper bound, 200 ms by default). Nothing else in the
order's path can be down in these scenarios: the hosted page and the callbacks never fail, and
an outage of other operations (query, follow_up, token) does not stop a page from being created.

Transient failures (error, reset and hang rates, latency spikes) never make an order
uncompletable: each call fails independently, so a client that retries would get through; the
oracle ignores them. Only outage windows that cover create count. An order that completes
although the oracle says it could not (a create that slipped in just before an outage) is
counted as completed and as completable, so the share of the oracle never exceeds 100 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .scenarios import Window

JsonObject = dict[str, Any]

DEFINITION = (
    "completable: the gateway is up for create for at least the slowest healthy create "
    "latency somewhere inside [arrival, arrival + budget]; transient failures ignored"
)


def down_spans(
    windows: Sequence[Window], operation: str | None = "create"
) -> list[tuple[float, float]]:
    """The times ``operation`` (None: any operation) is down, merged and sorted."""
    spans = sorted((w.start, w.end) for w in windows if operation is None or w.covers(operation))
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def completable(
    arrival: float, budget: float, down: Sequence[tuple[float, float]], need: float
) -> bool:
    """True when ``[arrival, arrival + budget]`` holds an up time of at least ``need``."""
    end = arrival + budget
    free_from = arrival
    for start, stop in down:
        if stop <= free_from:
            continue
        if start >= end:
            break
        if start - free_from >= need:
            return True
        free_from = max(free_from, stop)
        if free_from >= end:
            return False
    return end - free_from >= need


def oracle(
    arrivals: Sequence[float], budget: float, windows: Sequence[Window], need: float
) -> JsonObject:
    down = down_spans(windows)
    flags = [completable(at, budget, down, need) for at in arrivals]
    count = sum(flags)
    return {
        "attempted": len(arrivals),
        "completable": count,
        "share": count / len(arrivals) if arrivals else None,
        "need_seconds": need,
        "budget_seconds": budget,
        "completable_by_order": flags,
        "definition": DEFINITION,
    }


def share_of_oracle(completed: Sequence[bool], completable_by_order: Sequence[bool]) -> JsonObject:
    """Completed orders as a share of the completable ones (a completed order counts as
    completable whatever the oracle said)."""
    possible = sum(
        1 for done, can in zip(completed, completable_by_order, strict=True) if can or done
    )
    done = sum(completed)
    return {
        "completed": done,
        "completable": possible,
        "share": done / possible if possible else None,
        "completed_not_completable": sum(
            1 for d, c in zip(completed, completable_by_order, strict=True) if d and not c
        ),
    }
