"""Prometheus metrics of one service instance, on a registry of its own (a leaf module).

Every app instance gets a fresh :class:`Metrics` with its own ``CollectorRegistry``, so tests
that build many apps never collide on the process-wide default registry. Labels are bounded
sets only (route templates, operations, states, reasons): never a payment id, cart id,
``tran_ref`` or address, which would make one time series per payment.

The workers of ``serve --workers N`` are one instance to Prometheus, but each is a process of
its own, and a scrape is answered by whichever worker takes the connection. ``serve`` gives
them a directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode): every
worker writes its values there, and a scrape of any of them adds up all of them. Gauges say
how (``multiprocess_mode``): the database's readings are the most recent, a breaker is open
if it is open in any worker, the per-worker lines add up.

RED for the inbound API and for each outbound PayTabs operation, plus the breaker, the webhook
receiver, payment transitions, the outbox and reconciliation (docs/operations.md lists them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX: Final = "paytabs_guard"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: Where the workers of one ``serve`` write their values (prometheus_client reads the same
#: variable when it is imported, so it is set before the workers start).
SHARED_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

#: How a gauge's values from several worker processes add up ("live": dead workers' left out).
GaugeMode = Literal["livemax", "livesum", "max", "mostrecent"]

# Seconds: API answers are mostly milliseconds; PayTabs calls may take up to the 30 s timeout.
API_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GATEWAY_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

BREAKER_STATES: Final = ("closed", "open", "half_open", "forced_open", "forced_closed", "disabled")
UNMATCHED_ROUTE: Final = "unmatched"


#: The methods of HTTP itself (RFC 9110, 9.1, and PATCH): any other is counted as ``_OTHER``.
HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
OTHER_METHOD: Final = "_OTHER"


def method_label(method: str) -> str:
    """The method label: HTTP's own methods, else ``_OTHER`` (as OpenTelemetry names them).
    The parser takes some thirty more (WebDAV's ``PROPFIND``, ``MKCOL``, ...) from anyone:
    each was a series per route, and a few requests of each made every scrape megabytes."""
    return method if method in HTTP_METHODS else OTHER_METHOD


def status_class(status: int) -> str:
    """``2xx``, ``4xx``…: the status label (a bounded set, unlike raw codes from fuzzers)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class Metrics:
    """The collectors of one instance; ``render()`` gives the Prometheus text exposition."""

    def __init__(self, *, version: str = "0") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = os.environ.get(SHARED_DIR_VARIABLE) or None
        """Set in the workers of ``serve --workers N``: a scrape adds up every worker."""
        self._watched: list[tuple[Gauge, Callable[[], int]]] = []
        counter, gauge, histogram = self._counter, self._gauge, self._histogram
        # An Info metric has no multiprocess form; a gauge of 1 is what it renders as anyway.
        build = gauge("build_info", "Version of the running service", "version", mode="max")
        build.labels(version).set(1)
        self.http_requests = counter(
            "http_requests_total",
            "Inbound HTTP requests by route template, method and status class",
            "route", "method", "status_class",
        )  # fmt: skip
        self.http_duration = histogram(
            "http_request_duration_seconds",
            "Inbound HTTP request duration by route template and method",
            API_BUCKETS, "route", "method",
        )  # fmt: skip
        self.gateway_requests = counter(
            "gateway_requests_total",
            "PayTabs HTTP attempts by operation and outcome (ok or the error class)",
            "operation", "outcome",
        )  # fmt: skip
        self.gateway_duration = histogram(
            "gateway_request_duration_seconds",
            "PayTabs HTTP attempt duration by operation",
            GATEWAY_BUCKETS, "operation",
        )  # fmt: skip
        self.breaker_state = gauge(
            "circuit_breaker_state",
            "1 for the state each circuit breaker is in, 0 for the others (with several "
            "workers, 1 where any worker's breaker is in it)",
            "breaker", "state", mode="livemax",
        )  # fmt: skip
        self.breaker_transitions = counter(
            "circuit_breaker_transitions_total",
            "Circuit breaker state changes",
            "breaker", "from_state", "to_state",
        )  # fmt: skip
        self.breaker_probes = counter(
            "circuit_breaker_probes_total",
            "Recovery probes sent by this instance while a breaker was open, by result",
            "breaker", "result",
        )  # fmt: skip
        self.webhooks = counter(
            "webhook_requests_total",
            "PayTabs-facing deliveries (callback, browser return) by endpoint and outcome",
            "endpoint", "outcome",
        )  # fmt: skip
        self.webhook_duration = histogram(
            "webhook_request_duration_seconds",
            "Time to answer a PayTabs-facing delivery",
            API_BUCKETS, "endpoint",
        )  # fmt: skip
        self.payment_transitions = counter(
            "payment_transitions_total",
            "Payment state changes seen by this instance, by source",
            "from_state", "to_state", "source",
        )  # fmt: skip
        self.payment_results = counter(
            "payment_results_total",
            "Gateway results held against a payment, by what they did "
            "(applied, duplicate, stale, conflict, quarantined, illegal, ignored)",
            "kind", "source",
        )  # fmt: skip
        self.idempotency = counter(
            "idempotency_requests_total",
            "Requests with an Idempotency-Key by what the key said "
            "(new, replayed, mismatch, in_flight, interrupted, missing, kept_unsettled)",
            "outcome",
        )  # fmt: skip
        self.outbox_pending = gauge(
            "outbox_pending",
            "Outbox events not yet handed to the sinks (read at scrape time)",
            mode="mostrecent",
        )
        self.outbox_lag = gauge(
            "outbox_oldest_age_seconds",
            "Age of the oldest outbox event not yet handed to the sinks (read at scrape time)",
            mode="mostrecent",
        )
        self.dead_letters = gauge(
            "event_dead_letters",
            "Event deliveries that failed every attempt and wait to be replayed, all sinks "
            "(read at scrape time; the database's count, so every instance shows the same)",
            mode="mostrecent",
        )
        self.undecided = gauge(
            "payments_undecided",
            "Payments still waiting for the gateway or the customer (read at scrape time)",
            mode="mostrecent",
        )
        self.undecided_age = gauge(
            "payments_undecided_oldest_age_seconds",
            "Seconds since the oldest undecided payment was created, 0 when none waits "
            "(read at scrape time)",
            mode="mostrecent",
        )
        self.dependency_up = gauge(
            "dependency_up",
            "1 when the last check reached the dependency (database, redis), else 0",
            "dependency",
            mode="mostrecent",
        )
        self.return_line = gauge(
            "return_line",
            "Creates an outage turned away (or held) still waiting in the workers' return lines "
            "(read at scrape time)",
            mode="livesum",
        )
        self.return_turns_waiting = gauge(
            "return_turns_waiting",
            "Creates waiting in the workers for their turn to start (read at scrape time)",
            mode="livesum",
        )
        self.requests_held = gauge(
            "requests_held",
            "Requests the workers hold for 'Prefer: wait' (read at scrape time)",
            mode="livesum",
        )
        self.reconciliation_runs = counter(
            "reconciliation_runs_total", "Reconciliation runs by result", "result"
        )
        self.reconciliation_last_run = gauge(
            "reconciliation_last_run_timestamp_seconds",
            "Unix time of the last finished reconciliation run",
            mode="max",
        )

    # ---- declaring a family: named under PREFIX, on this instance's registry ---------------

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(f"{PREFIX}_{name}", documentation, labels, registry=self.registry)

    def _gauge(
        self, name: str, documentation: str, *labels: str, mode: GaugeMode = "mostrecent"
    ) -> Gauge:
        return Gauge(
            f"{PREFIX}_{name}",
            documentation,
            labels,
            registry=self.registry,
            multiprocess_mode=mode,
        )

    def _histogram(
        self, name: str, documentation: str, buckets: tuple[float, ...], *labels: str
    ) -> Histogram:
        return Histogram(
            f"{PREFIX}_{name}", documentation, labels, buckets=buckets, registry=self.registry
        )

    # ---- hooks ---------------------------------------------------------------------------

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One inbound request, labelled by its route *template* (``/payments/v2/{id}``)."""
        method = method_label(method)
        self.http_requests.labels(route, method, status_class(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def observe_gateway(self, operation: str, seconds: float, outcome: str) -> None:
        """The PayTabs client's ``observer``: one attempt of ``operation``."""
        self.gateway_requests.labels(operation, outcome).inc()
        self.gateway_duration.labels(operation).observe(seconds)

    def breaker_changed(self, breaker: str, previous: str | None, state: str) -> None:
        """A breaker entered ``state`` (``previous`` is None for its initial state)."""
        for known in BREAKER_STATES:
            self.breaker_state.labels(breaker, known).set(1 if known == state else 0)
        if previous is not None and previous != state:
            self.breaker_transitions.labels(breaker, previous, state).inc()

    def breaker_probe(self, breaker: str, result: str) -> None:
        """A recovery probe of ``breaker`` sent by this instance: ``succeeded`` or ``failed``."""
        self.breaker_probes.labels(breaker, result).inc()

    def webhook(self, endpoint: str, outcome: str, seconds: float | None = None) -> None:
        """One PayTabs-facing delivery answered with ``outcome`` (a fixed reason)."""
        self.webhooks.labels(endpoint, outcome).inc()
        if seconds is not None:
            self.webhook_duration.labels(endpoint).observe(seconds)

    def payment_result(self, kind: str, source: str, previous: str, state: str) -> None:
        """A gateway result or step held against a payment; a transition when states differ."""
        self.payment_results.labels(kind, source).inc()
        if previous != state:
            self.payment_transitions.labels(previous, state, source).inc()

    def dependency(self, name: str, *, up: bool) -> None:
        self.dependency_up.labels(name).set(1 if up else 0)

    def outbox(
        self, pending: int, oldest_age_seconds: float, dead_letters: int | None = None
    ) -> None:
        self.outbox_pending.set(pending)
        self.outbox_lag.set(oldest_age_seconds)
        if dead_letters is not None:
            self.dead_letters.set(dead_letters)

    def undecided_payments(self, count: int, oldest_age_seconds: float) -> None:
        self.undecided.set(count)
        self.undecided_age.set(oldest_age_seconds)

    def watch_returns(
        self, line: Callable[[], int], waiting: Callable[[], int], held: Callable[[], int]
    ) -> None:
        """Read the return line, the creates waiting for a turn and the held requests at
        scrape time (the API's runtime owns them). With several workers a scrape reads the
        others' values from their files, so each worker writes its own (:meth:`refresh`)."""
        watched = [(self.return_line, line), (self.return_turns_waiting, waiting)]
        watched.append((self.requests_held, held))
        if self.shared_dir is None:
            for gauge, read in watched:
                gauge.set_function(read)
        else:
            self._watched = watched

    def refresh(self) -> None:
        """Write the watched values (with several workers; the app calls it every second)."""
        for gauge, read in self._watched:
            gauge.set(read())

    def reconciliation(self, result: str, finished_at_unix: float) -> None:
        self.reconciliation_runs.labels(result).inc()
        self.reconciliation_last_run.set(finished_at_unix)

    def reconciliation_aborted(self) -> None:
        """A pass that failed as a whole: counted, but it finished nothing (no timestamp)."""
        self.reconciliation_runs.labels("aborted").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry, or of every worker's values."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        self.refresh()
        _forget_dead_workers(self.shared_dir)
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)

    def close(self) -> None:
        """This worker is ending: leave its values out of the live gauges from now on."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]


def _forget_dead_workers(directory: str) -> None:
    """Leave workers that died without a clean exit (killed, out of memory) out of the live
    gauges: uvicorn starts another in their place, and their files would keep a breaker
    "open" in every scrape until ``serve`` restarted. Their counters stay, as they should."""
    pids: set[int] = set()
    for path in Path(directory).glob("gauge_live*.db"):
        number = path.stem.rpartition("_")[2]
        if number.isdigit():
            pids.add(int(number))
    for pid in pids:
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # it exists, as another user's: not ours to judge
            continue
