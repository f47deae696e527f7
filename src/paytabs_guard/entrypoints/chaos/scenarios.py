"""What goes wrong (scenarios), how the service is protected (configurations), and how long and
how hard the run is (profiles: full, short, tiny).

Every scenario runs once per configuration with the same seed: the same arrival times, amounts
and fault probabilities. The simulator's fault draws depend on the order requests arrive in, so
two configurations see the same *rates*, not the same failing request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Final

from paytabs_guard.domain import Operation
from paytabs_guard.settings import Settings

FAMILIES: Final = tuple(Operation)
FLAPPING_SEED: Final = 17
"""The breaker families of ``bootstrap.build_gateway``."""

# The gateway's usual latency in every scenario: 80 ms plus up to 120 ms.
BASE_LATENCY: Final[dict[str, Any]] = {"latency_ms": 80.0, "latency_jitter_ms": 120.0}

# 20 % of PayTabs calls fail: hangs, then resets, then 5xx are drawn in that order, so
# 1 - (1 - 0.04) * (1 - 0.06) * (1 - 0.1135) = 0.2000. Half of each happen after PayTabs did
# the work ("mixed"), the case that charges naive clients twice.
TRANSIENT: Final[dict[str, Any]] = {
    "hang_rate": 0.04,
    "hang_phase": "mixed",
    "reset_rate": 0.06,
    "reset_phase": "mixed",
    "error_rate": 0.1135,
    "error_statuses": [500, 502, 503, 504],
    "error_phase": "mixed",
}


@dataclass(frozen=True, slots=True)
class Window:
    """A time when the gateway is down, in seconds since the run started: for every operation
    family, or (a partial outage) only for ``operations``."""

    start: float
    end: float
    mode: str
    status: int = 503
    operations: tuple[str, ...] | None = None

    def as_fault(self) -> dict[str, Any]:
        fault: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "mode": self.mode,
            "status": self.status,
        }
        if self.operations is not None:
            fault["operations"] = list(self.operations)
        return fault

    def covers(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    description: str
    duration: float
    """Seconds during which new orders arrive."""
    faults: dict[str, Any]
    outages: tuple[Window, ...] = ()
    rate_factor: float = 1.0
    """Arrival rate relative to the profile's."""
    rate: float | None = None
    """Orders per second, overriding the profile's (scenario files set it)."""
    order_budget: float | None = None
    """Seconds to get a page, overriding the profile's (scenario files set it)."""
    latency: dict[str, Any] = field(default_factory=lambda: dict(BASE_LATENCY))
    """The gateway's usual latency: ``latency_ms`` plus up to ``latency_jitter_ms``."""
    instances: int = 1
    """Service instances sharing one database and breaker state (PostgreSQL + Redis)."""
    settings: dict[str, str] = field(default_factory=dict)
    """The service's settings for this scenario, over the profile's (scenario files set them:
    an incident replayed with the production timeouts)."""

    def simulator_faults(self) -> dict[str, Any]:
        """The body of ``PUT /_sim/faults`` for this scenario."""
        return {
            **self.latency,
            **self.faults,
            "outages": [window.as_fault() for window in self.outages],
        }

    def arrival_rate(self, profile_rate: float) -> float:
        return self.rate if self.rate is not None else profile_rate * self.rate_factor

    def budget(self, profile_budget: float) -> float:
        return self.order_budget if self.order_budget is not None else profile_budget

    def slowest_create(self) -> float:
        """Seconds the slowest healthy create takes at the gateway (no spike, no fault)."""
        return (
            float(self.latency.get("latency_ms", 0.0))
            + float(self.latency.get("latency_jitter_ms", 0.0))
        ) / 1000.0


@dataclass(frozen=True, slots=True)
class Configuration:
    """How much protection the service has."""

    key: str
    title: str
    retries: bool
    breaker: bool
    prefer_wait: bool = False
    """Merchants send ``Prefer: wait=<remaining budget, whole seconds>`` on create (RFC 7240):
    they would rather the service hold the request than answer 503 at once."""

    @property
    def ours(self) -> bool:
        """Every configuration is our code; 'no protection' still never re-sends blind."""
        return True


CONFIGURATIONS: Final = (
    Configuration("full", "full protection (retries + breaker)", retries=True, breaker=True),
    Configuration(
        "wait",
        "full protection, merchants send Prefer: wait",
        retries=True,
        breaker=True,
        prefer_wait=True,
    ),
    Configuration("retries", "retries only (breaker disabled)", retries=True, breaker=False),
    Configuration("none", "no protection (no retries, no breaker)", retries=False, breaker=False),
)


@dataclass(frozen=True, slots=True)
class Profile:
    """How big a run is, and the service tuning that goes with its time scale."""

    name: str
    rate: float
    """New orders per second."""
    order_budget: float
    """Seconds a merchant keeps trying to get a payment page before telling the customer no."""
    completion_budget: float
    """Seconds the merchant waits for the payment to complete after the customer paid."""
    paytabs_timeout_ms: int
    reset_timeout_ms: int
    rolling_timeout_ms: int
    operation_deadline_ms: int
    callback_retry_delays: tuple[float, ...]
    scenarios: tuple[Scenario, ...]
    retry_delay_ms: int = 1000
    retry_max_delay_ms: int = 10000
    drain_seconds: float = 30.0
    """Longest wait for the outbox relay to deliver the last events after the last order."""
    probe_interval_ms: int = 1000
    """CIRCUIT_BREAKER_PROBE_INTERVAL, for services that have recovery probes."""
    env: dict[str, str] = field(default_factory=dict)
    default_scenarios: tuple[str, ...] | None = None
    """The scenarios run when none are named; None: every one but the reference (0)."""

    def service_env(self, configuration: Configuration) -> dict[str, str]:
        """The service's settings for ``configuration`` (credentials and URLs added later)."""
        return {
            "PAYTABS_TIMEOUT": str(self.paytabs_timeout_ms),
            "PAYTABS_RETRY_ATTEMPTS": "3" if configuration.retries else "0",
            "PAYTABS_RETRY_DELAY": str(self.retry_delay_ms),
            "PAYTABS_RETRY_MAX_DELAY": str(self.retry_max_delay_ms),
            "PAYTABS_OPERATION_DEADLINE": str(self.operation_deadline_ms),
            "PAYTABS_RETRY_BUDGET_PERCENT": "20",
            "CIRCUIT_BREAKER_TIMEOUT": str(self.paytabs_timeout_ms),
            "CIRCUIT_BREAKER_ERROR_THRESHOLD": "50",
            "CIRCUIT_BREAKER_RESET_TIMEOUT": str(self.reset_timeout_ms),
            "CIRCUIT_BREAKER_ROLLING_TIMEOUT": str(self.rolling_timeout_ms),
            "CIRCUIT_BREAKER_ROLLING_BUCKETS": "10",
            "CIRCUIT_BREAKER_VOLUME_THRESHOLD": "5",
            "CIRCUIT_BREAKER_SHARED": "false",
            **_probe_setting(self.probe_interval_ms),
            **self.env,
        }

    def select(self, keys: set[str]) -> Profile:
        """The same profile with only the scenarios named in ``keys``."""
        chosen = tuple(s for s in self.scenarios if s.key in keys)
        return replace(self, scenarios=chosen, env=dict(self.env))


def _probe_setting(interval_ms: int) -> dict[str, str]:
    """CIRCUIT_BREAKER_PROBE_INTERVAL when this service has the setting (recovery probes came
    after the benchmark; an older service would ignore it, but the table would then lie)."""
    if "circuit_breaker_probe_interval" not in Settings.model_fields:
        return {}
    return {"CIRCUIT_BREAKER_PROBE_INTERVAL": str(interval_ms)}


def _flapping(
    first: float, down: tuple[float, float], up: tuple[float, float], until: float, mode: str
) -> tuple[Window, ...]:
    """Outages of random length separated by random up-times, from a fixed seed.

    Irregular on purpose: with outages exactly every P seconds and a reset timeout that is a
    multiple of P, every half-open trial lands in an outage and the breaker never closes (the
    first full run measured it: P = 15 s, reset 30 s). Real flapping is not a metronome.
    """
    rng = random.Random(FLAPPING_SEED)
    windows = []
    start = first
    while True:
        length = rng.uniform(*down)
        if start + length > until:
            break
        windows.append(Window(round(start, 2), round(start + length, 2), mode))
        start += length + rng.uniform(*up)
    return tuple(windows)


def _scenarios(
    *,
    transient: float,
    spikes: float,
    spike_ms: float,
    before: float,
    outage: float,
    after: float,
    flap_first: float,
    flap_down: tuple[float, float],
    flap_up: tuple[float, float],
    flapping: float,
    cluster: tuple[float, float, float, float],
) -> tuple[Scenario, ...]:
    up, outage_e, gap, flap_e = cluster
    flaps_from = up + outage_e + gap
    return (
        Scenario(
            "0",
            "(0) healthy gateway",
            "No faults: the reference, and the calibration of the simulator layouts.",
            transient,
            {},
        ),
        Scenario(
            "a",
            "(a) 20 % transient failures",
            "Every PayTabs call fails with probability 0.2: 5xx (11.35 %), connection resets "
            "(6 %) and hangs until the timeout (4 %); half of them after PayTabs did the work.",
            transient,
            dict(TRANSIENT),
        ),
        Scenario(
            "b",
            "(b) latency spikes",
            f"2 % of PayTabs calls take {spike_ms / 1000:g} s more (gateway p99 ~ "
            f"{spike_ms / 1000:g} s); the rest 80-200 ms.",
            spikes,
            {"latency_spike_rate": 0.02, "latency_spike_ms": spike_ms},
        ),
        Scenario(
            "c",
            f"(c) {outage:g} s outage",
            f"PayTabs answers nothing (connections hang) for {outage:g} s, then recovers.",
            before + outage + after,
            {},
            (Window(before, before + outage, "hang"),),
        ),
        Scenario(
            "d",
            "(d) flapping gateway",
            f"PayTabs cuts every connection for {flap_down[0]:g}-{flap_down[1]:g} s, then works "
            f"for {flap_up[0]:g}-{flap_up[1]:g} s, again and again (seeded, irregular).",
            flapping,
            {},
            _flapping(flap_first, flap_down, flap_up, flapping, "reset"),
        ),
        Scenario(
            "e",
            "(e) two instances, outage + flapping",
            f"Two service instances on PostgreSQL share breaker state through Redis; merchants "
            f"alternate between them. PayTabs hangs for {outage_e:g} s, works for {gap:g} s, "
            f"then flaps ({flap_down[0]:g}-{flap_down[1]:g} s down).",
            up + outage_e + gap + flap_e,
            {},
            (
                Window(up, up + outage_e, "hang"),
                *_flapping(flaps_from, flap_down, flap_up, flaps_from + flap_e, "reset"),
            ),
            instances=2,
        ),
    )


FULL: Final = Profile(
    name="full",
    rate=10.0,
    order_budget=30.0,
    completion_budget=40.0,
    paytabs_timeout_ms=3000,
    reset_timeout_ms=30000,
    rolling_timeout_ms=10000,
    operation_deadline_ms=15000,
    callback_retry_delays=(1.0, 2.0, 4.0, 8.0, 16.0),
    scenarios=_scenarios(
        transient=120.0,
        spikes=60.0,
        spike_ms=5000.0,
        before=20.0,
        outage=60.0,
        after=40.0,
        flap_first=10.0,
        flap_down=(3.0, 6.0),
        flap_up=(5.0, 15.0),
        flapping=90.0,
        cluster=(15.0, 30.0, 10.0, 45.0),
    ),
)

SHORT: Final = Profile(
    name="short",
    rate=12.0,
    order_budget=4.0,
    completion_budget=5.0,
    paytabs_timeout_ms=1000,
    reset_timeout_ms=2000,
    rolling_timeout_ms=2000,
    operation_deadline_ms=3000,
    callback_retry_delays=(0.1, 0.2, 0.4, 0.8, 1.6),
    retry_delay_ms=100,
    retry_max_delay_ms=1000,
    drain_seconds=5.0,
    # The four scenarios of the brief, in under two minutes on two shared cores with every
    # configuration (about 100 s here); the two-instance scenario (e) adds about 40 s, so it
    # runs when named (CI runs it in the tiny profile).
    default_scenarios=("a", "b", "c", "d"),
    # Time runs about seven times faster than in the full profile (flaps of 0.5-1 s, budgets
    # of 4 s), so the breaker's own clock is scaled with it: probes every 150 ms, a first
    # open period of 300 ms, a return slot of 3 ms (330 a second). Leaving them at the
    # production 1 s / 2 s / 20 ms would measure a breaker tuned for a different time scale.
    probe_interval_ms=150,
    env={"CIRCUIT_BREAKER_MIN_OPEN_TIME": "300", "CIRCUIT_BREAKER_RETURN_RATE": "330"},
    scenarios=_scenarios(
        transient=4.0,
        spikes=3.0,
        spike_ms=1500.0,
        before=1.0,
        outage=3.0,
        after=2.0,
        flap_first=1.0,
        flap_down=(0.5, 1.0),
        flap_up=(0.8, 2.0),
        flapping=6.0,
        cluster=(1.0, 2.5, 1.0, 3.0),
    ),
)

TINY: Final = Profile(
    name="tiny",
    rate=8.0,
    order_budget=3.0,
    completion_budget=4.0,
    paytabs_timeout_ms=800,
    reset_timeout_ms=1000,
    rolling_timeout_ms=1000,
    operation_deadline_ms=2000,
    callback_retry_delays=(0.1, 0.2, 0.4, 0.8),
    retry_delay_ms=50,
    retry_max_delay_ms=500,
    drain_seconds=4.0,
    probe_interval_ms=100,
    env={"CIRCUIT_BREAKER_MIN_OPEN_TIME": "150", "CIRCUIT_BREAKER_RETURN_RATE": "500"},
    scenarios=_scenarios(
        transient=1.5,
        spikes=1.0,
        spike_ms=1000.0,
        before=0.5,
        outage=1.0,
        after=1.0,
        flap_first=0.5,
        flap_down=(0.2, 0.4),
        flap_up=(0.3, 0.6),
        flapping=2.0,
        cluster=(0.5, 1.0, 0.5, 1.5),
    ),
)

PROFILES: Final = {profile.name: profile for profile in (FULL, SHORT, TINY)}
