"""From what the merchants, the service and the simulator saw to the report's figures.

Times are seconds since the run started (the moment the simulator was reset, which is also when
its outage clock starts). Every figure is computed here, after the run, never on the hot path.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .driver import CreateCall, Order
from .oracle import oracle, share_of_oracle
from .scenarios import Window
from .service import BreakerChange, BreakerProbe, ServedCreate, StoredOutcome

JsonObject = dict[str, Any]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _summary(values: Sequence[float]) -> JsonObject:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


@dataclass(frozen=True, slots=True)
class Interval:
    start: float
    end: float
    state: str


def breaker_intervals(
    changes: Sequence[BreakerChange], breaker: str, t0: float, run_end: float
) -> list[Interval]:
    """The states of one breaker over the run, as intervals (``closed`` until the first change)."""
    intervals: list[Interval] = []
    state, since = "closed", 0.0
    for change in changes:
        if change.breaker != breaker:
            continue
        at = change.at - t0
        if at > since:
            intervals.append(Interval(since, at, state))
        state, since = change.state, max(at, since)
    intervals.append(Interval(since, max(run_end, since), state))
    return intervals


def _state_at(intervals: Sequence[Interval], at: float) -> str:
    for interval in intervals:
        if interval.start <= at < interval.end:
            return interval.state
    return intervals[-1].state if intervals else "closed"


def _charges(transactions: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Successful sales/auths: money taken from a customer."""
    return [
        t
        for t in transactions
        if str(t.get("tran_type", "")).lower() in ("sale", "auth")
        and (t.get("payment_result") or {}).get("response_status") == "A"
    ]


def duplicates(
    transactions: Sequence[Mapping[str, Any]], stored: StoredOutcome, orders: Sequence[Order]
) -> JsonObject:
    """Customers charged more than once: per cart id, per payment, per order."""
    charges = _charges(transactions)
    by_cart = Counter(str(t.get("cart_id")) for t in charges)
    by_payment: Counter[str] = Counter()
    unattributed = 0
    for t in charges:
        payment = stored.cart_to_payment.get(str(t.get("cart_id")))
        if payment is None:
            unattributed += 1
        else:
            by_payment[payment] += 1
    order_of = {pid: order.index for order in orders for pid in order.payment_ids}
    by_order: Counter[int] = Counter()
    for payment, count in by_payment.items():
        if payment in order_of:
            by_order[order_of[payment]] += count
    charged_not_completed = sum(1 for payment in by_payment if payment not in stored.completed_ids)
    return {
        "charges": len(charges),
        "carts_charged_twice": sum(1 for n in by_cart.values() if n > 1),
        "payments_charged_twice": sum(1 for n in by_payment.values() if n > 1),
        "orders_charged_twice": sum(1 for n in by_order.values() if n > 1),
        "extra_charges": max(
            sum(n - 1 for n in counts.values() if n > 1)
            for counts in (by_cart, by_payment, by_order)
        ),
        "charges_without_payment": unattributed,
        "charged_not_completed": charged_not_completed,
    }


def recovery_family(window: Window) -> str:
    """The breaker whose recovery an outage tests: create when create was down, else the
    first operation the (partial) outage took down."""
    if window.covers("create") or not window.operations:
        return "create"
    return window.operations[0]


def _closed_after(
    changes: Sequence[BreakerChange],
    family: str,
    instance: int,
    recovered: float,
    next_start: float,
    t0: float,
) -> float | None:
    for change in changes:
        at = change.at - t0
        if (
            change.instance == instance
            and change.breaker == family
            and change.state == "closed"
            and at >= recovered
        ):
            return at - recovered if at < next_start else None
    return None


def _recovery(
    windows: Sequence[Window],
    creates: Sequence[CreateCall],
    changes: Sequence[BreakerChange],
    t0: float,
    run_end: float,
    instances: int,
) -> list[JsonObject]:
    """Per outage: time from the gateway's recovery to the first page created, and to the
    breaker closing on every instance (None when it was not open at recovery, or did not close
    before the next outage began). ``breaker_closed_after`` is the slowest instance's."""
    out = []
    successes = sorted(call.end for call in creates if call.status == 201)
    for number, window in enumerate(windows):
        recovered = window.end
        next_start = windows[number + 1].start if number + 1 < len(windows) else math.inf
        first = next((end for end in successes if end >= recovered), None)
        family = recovery_family(window)
        per_instance: list[JsonObject] = []
        for instance in range(instances):
            mine = [c for c in changes if c.instance == instance]
            state = _state_at(breaker_intervals(mine, family, t0, run_end), recovered)
            closed_after = None
            if state in ("open", "half_open"):
                closed_after = _closed_after(mine, family, instance, recovered, next_start, t0)
            per_instance.append(
                {"instance": instance, "at_recovery": state, "closed_after": closed_after}
            )
        was_open = [i for i in per_instance if i["at_recovery"] in ("open", "half_open")]
        closes: list[float | None] = [i["closed_after"] for i in was_open]
        out.append(
            {
                "outage_start": window.start,
                "recovered_at": recovered,
                "operations": None if window.operations is None else list(window.operations),
                "breaker": family,
                "first_success_after": None if first is None else first - recovered,
                "breaker_at_recovery": per_instance[0]["at_recovery"] if not was_open else "open",
                "breaker_closed_after": None
                if not closes or any(c is None for c in closes)
                else max(c for c in closes if c is not None),
                "instances": per_instance,
                "next_outage_after": None if math.isinf(next_start) else next_start - recovered,
            }
        )
    return out


def recovery_summary(items: Sequence[JsonObject]) -> JsonObject:
    """p50 and worst over outages of "gateway up -> breaker closed" (outages the breaker was
    open at, and closed before the next) and of "gateway up -> first page"."""
    closes = [i["breaker_closed_after"] for i in items if i["breaker_closed_after"] is not None]
    open_at = [i for i in items if i["breaker_at_recovery"] in ("open", "half_open")]
    never = sum(
        1
        for i in open_at
        if i["breaker_closed_after"] is None and i.get("next_outage_after") is None
    )
    firsts = [i["first_success_after"] for i in items if i["first_success_after"] is not None]
    return {
        "outages": len(items),
        "breaker_open_at_recovery": len(open_at),
        "closed": {"p50": percentile(closes, 50), "worst": max(closes, default=None)},
        "closed_count": len(closes),
        "never_closed": never,
        "first_page": {"p50": percentile(firsts, 50), "worst": max(firsts, default=None)},
        "first_page_count": len(firsts),
    }


def probe_summary(
    probes: Sequence[BreakerProbe],
    stats: Sequence[Mapping[str, Any]],
    instances: int,
    t0: float,
) -> JsonObject:
    """Probes per instance: from the probe events, and from each instance's breaker stats
    endpoint (its ``probes`` block: sent, succeeded, failed, and whether it holds the lease)."""
    by_instance: list[JsonObject] = []
    for instance in range(instances):
        mine = [p for p in probes if p.instance == instance]
        results = Counter(p.result for p in mine)
        reported: dict[str, JsonObject] = {}
        if instance < len(stats):
            for name, snapshot in (stats[instance].get("breakers") or {}).items():
                block = snapshot.get("probes") if isinstance(snapshot, Mapping) else None
                if isinstance(block, Mapping):
                    reported[str(name)] = {
                        "sent": int(block.get("sent") or 0),
                        "succeeded": int(block.get("succeeded") or 0),
                        "failed": int(block.get("failed") or 0),
                        "prober": bool(block.get("prober")),
                    }
        by_instance.append(
            {
                "instance": instance,
                "events": len(mine),
                "succeeded": results.get("succeeded", 0),
                "failed": results.get("failed", 0),
                "by_breaker": dict(Counter(p.breaker for p in mine)),
                "endpoint": reported,
                "sent_by_endpoint": sum(r["sent"] for r in reported.values()),
            }
        )
    return {
        "total": len(probes),
        "instances": by_instance,
        "events": [
            {
                "at": round(p.at - t0, 4),
                "breaker": p.breaker,
                "result": p.result,
                "instance": p.instance,
            }
            for p in probes[:5000]
        ],
    }


def _timeline(
    orders: Sequence[Order], creates: Sequence[CreateCall], duration: float, bucket: float
) -> list[JsonObject]:
    buckets = max(1, math.ceil(duration / bucket))
    arrived = [0] * buckets
    completed = [0] * buckets
    latencies: list[list[float]] = [[] for _ in range(buckets)]
    answered_201 = [0] * buckets
    calls = [0] * buckets
    for order in orders:
        index = min(int(order.arrival / bucket), buckets - 1)
        arrived[index] += 1
        completed[index] += order.outcome == "completed"
    for call in creates:
        index = int(call.start / bucket)
        if 0 <= index < buckets:
            latencies[index].append(call.seconds)
            calls[index] += 1
            answered_201[index] += call.status == 201
    return [
        {
            "t": round(i * bucket, 3),
            "orders": arrived[i],
            "success_rate": completed[i] / arrived[i] if arrived[i] else None,
            "creates": calls[i],
            "create_201_rate": answered_201[i] / calls[i] if calls[i] else None,
            "create_p50": percentile(latencies[i], 50),
            "create_p95": percentile(latencies[i], 95),
        }
        for i in range(buckets)
    ]


def analyse(
    *,
    orders: Sequence[Order],
    creates: Sequence[CreateCall],
    changes: Sequence[BreakerChange],
    completed_events: Mapping[str, int],
    stored: StoredOutcome,
    transactions: Sequence[Mapping[str, Any]],
    sim_stats: Mapping[str, Any],
    windows: Sequence[Window],
    t0: float,
    run_end: float,
    duration: float,
    bucket: float,
    budget: float,
    need: float,
    probes: Sequence[BreakerProbe] = (),
    breaker_stats: Sequence[Mapping[str, Any]] = (),
    instances: int = 1,
    calls_in_outages: Sequence[int] = (),
    served: Sequence[ServedCreate] = (),
) -> JsonObject:
    attempted = len(orders)
    best = oracle([order.arrival for order in orders], budget, windows, need)
    flags = best.pop("completable_by_order")
    achieved = share_of_oracle([order.outcome == "completed" for order in orders], flags)
    completed = sum(1 for order in orders if order.outcome == "completed")
    first_try = sum(1 for order in orders if order.outcome == "completed" and order.first_try)
    outcomes = Counter(order.outcome for order in orders)
    statuses = Counter(str(call.status) for call in creates)

    # Each order talks to one instance (round-robin), so its creates meet that instance's breaker.
    open_by_instance = [
        [
            span
            for span in breaker_intervals(
                [c for c in changes if c.instance == instance], "create", t0, run_end
            )
            if span.state == "open"
        ]
        for instance in range(instances)
    ]
    open_spans = open_by_instance[0]
    fail_fast = [
        call.seconds
        for call in creates
        if call.status == 503
        and any(
            span.start <= call.start and call.end <= span.end
            for span in open_by_instance[call.order % instances]
        )
    ]
    # The same rejections timed inside the service: what the breaker costs, without the
    # merchants' HTTP client and the queue of the event loop they share with it.
    fail_fast_service = [
        call.seconds
        for call in served
        if call.status == 503
        and any(
            span.start <= call.start - t0 and call.start - t0 + call.seconds <= span.end
            for span in open_by_instance[call.instance]
        )
    ]
    opened = sum(1 for change in changes if change.breaker == "create" and change.state == "open")
    states_by_breaker: dict[str, list[JsonObject]] = defaultdict(list)
    for change in changes:
        states_by_breaker[change.breaker].append(
            {
                "at": round(change.at - t0, 4),
                "state": change.state,
                "reason": change.reason,
                "instance": change.instance,
            }
        )

    recovery = _recovery(windows, creates, changes, t0, run_end, instances)
    received = set(completed_events)
    lost = sorted(stored.completed_ids - received)
    pages = [order.page_at - order.arrival for order in orders if order.page_at is not None]
    end_to_end = [
        order.completed_at - order.arrival for order in orders if order.completed_at is not None
    ]
    counters = sim_stats.get("counters") or {}
    requests = {
        key.removeprefix("requests "): int(value)
        for key, value in counters.items()
        if str(key).startswith("requests ")
    }
    faults = {
        key.removeprefix("faults "): int(value)
        for key, value in counters.items()
        if str(key).startswith("faults ")
    }
    return {
        "missed": _missed(orders, flags, creates, budget),
        "orders": {
            "attempted": attempted,
            "completed": completed,
            "success_rate": completed / attempted if attempted else None,
            "first_try_completed": first_try,
            "first_try_success_rate": first_try / attempted if attempted else None,
            "outcomes": dict(sorted(outcomes.items())),
            "completed_by_event": sum(1 for o in orders if o.completed_by_event),
            "payments_per_order_max": max((len(o.payment_ids) for o in orders), default=0),
            "confirm_polls": sum(o.confirms for o in orders),
            # recurring charges of saved cards (driver.RECURRING_EVERY): outcome -> count
            "renewals": dict(sorted(Counter(o.renewal for o in orders if o.renewal).items())),
        },
        "duplicates": duplicates(transactions, stored, orders),
        "create_latency": _summary([call.seconds for call in creates]),
        "create_statuses": dict(sorted(statuses.items())),
        "time_to_page": _summary(pages),
        "end_to_end": _summary(end_to_end),
        "fail_fast": _summary(fail_fast),
        "fail_fast_service": _summary(fail_fast_service),
        "breaker": {
            "create_opened": opened,
            "open_seconds": sum(span.end - span.start for span in open_spans),
            "changes": dict(states_by_breaker),
        },
        "recovery": recovery,
        "recovery_summary": recovery_summary(recovery),
        "probes": probe_summary(probes, breaker_stats, instances, t0),
        "oracle": best,
        "share_of_oracle": achieved,
        "instances": instances,
        "events": {
            "completed_payments": len(stored.completed_ids),
            "completed_events_received": len(received & stored.completed_ids),
            "deliveries": sum(completed_events.values()),
            "redelivered": sum(n - 1 for n in completed_events.values() if n > 1),
            "lost": len(lost),
            "lost_payment_ids": lost[:20],
            "undelivered_at_end": stored.undelivered,
        },
        "service_states": stored.states,
        "gateway": {
            "requests": requests,
            "requests_total": sum(requests.values()),
            "during_outages": sum(calls_in_outages) if windows else None,
            "during_each_outage": list(calls_in_outages),
            "faults_injected": faults,
            "transactions": len(transactions),
        },
        "timeline": _timeline(orders, creates, duration, bucket),
    }


def _missed(
    orders: Sequence[Order],
    completable: Sequence[bool],
    creates: Sequence[CreateCall],
    budget: float,
) -> list[JsonObject]:
    """The orders the oracle says could have completed and did not: where to look first when
    a configuration falls short of it (times in seconds since the run started)."""
    calls: dict[int, list[CreateCall]] = defaultdict(list)
    for call in creates:
        calls[call.order].append(call)
    return [
        {
            "order": order.index,
            "arrival": round(order.arrival, 3),
            "deadline": round(order.arrival + budget, 3),
            "outcome": order.outcome,
            "creates": [[round(c.start, 3), round(c.end, 3), c.status] for c in calls[order.index]],
            "page_at": None if order.page_at is None else round(order.page_at, 3),
        }
        for order, can in zip(orders, completable, strict=True)
        if can and order.outcome != "completed"
    ]
