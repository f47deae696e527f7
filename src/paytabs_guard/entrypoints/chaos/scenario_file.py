"""Scenarios as data: ``paytabs-guard bench chaos --scenario-file FILE``.

An operator replays an incident by describing it in JSON: how long orders arrive, how fast,
each order's budget, the gateway's usual latency, its transient failure rates, and its outages
(all operations, or a partial outage of some). The file is validated strictly (unknown fields
are refused) and a bad one is refused with one line that names the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paytabs_guard.settings import Settings

from .scenarios import Scenario, Window

Operation = Literal["create", "query", "follow_up", "token"]


class ScenarioFileError(ValueError):
    """A scenario file that cannot be run; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Transient(_Strict):
    """Failures drawn per PayTabs call: hangs, then resets, then 5xx (500/502/503/504)."""

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    reset_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    hang_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    phase: Literal["before", "after", "mixed"] = "mixed"
    """Whether PayTabs did the work before the failure: never, always, or half the time."""


class OutageSpec(_Strict):
    start_s: float = Field(ge=0.0)
    end_s: float
    mode: Literal["reset", "hang", "status"] = "hang"
    status: int = Field(default=503, ge=400, le=599)
    operations: list[Operation] | None = Field(default=None, min_length=1)
    """Limit the outage to these operation families (a partial outage); default all."""

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> OutageSpec:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be greater than start_s")
        return self


class ScenarioSpec(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$")
    title: str = Field(min_length=1, max_length=80)
    description: str = ""
    duration_s: float = Field(gt=0.0, le=3600.0)
    rate_per_s: float = Field(gt=0.0, le=200.0)
    budget_s: float = Field(gt=0.0, le=600.0)
    latency_ms: tuple[float, float] = (80.0, 200.0)
    """The gateway's usual latency: uniform between the two bounds."""
    transient: Transient = Transient()
    outages: list[OutageSpec] = Field(default_factory=list)
    settings: dict[str, str] = Field(default_factory=dict)
    """The service's settings over the profile's, by variable (``"PAYTABS_TIMEOUT": "30000"``):
    replay an incident with the timeouts it happened with. Only variables the service has."""

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioSpec:
        low, high = self.latency_ms
        if not 0.0 <= low <= high:
            raise ValueError("latency_ms must be [low, high] with 0 <= low <= high")
        for number, outage in enumerate(self.outages):
            if outage.start_s >= self.duration_s:
                raise ValueError(f"outages.{number}.start_s is after duration_s")
        known = Settings.model_fields
        unknown = sorted(name for name in self.settings if name.lower() not in known)
        if unknown:
            raise ValueError(f"settings: the service has no {', '.join(unknown)}")
        return self

    def scenario(self) -> Scenario:
        transient = self.transient
        faults: dict[str, object] = {}
        for kind in ("hang", "reset", "error"):
            rate = getattr(transient, f"{kind}_rate")
            if rate > 0:
                faults[f"{kind}_rate"] = rate
                faults[f"{kind}_phase"] = transient.phase
        low, high = self.latency_ms
        return Scenario(
            key=self.key,
            title=self.title,
            description=self.description or f"from a scenario file ({len(self.outages)} outages)",
            duration=self.duration_s,
            faults=faults,
            outages=tuple(
                Window(
                    o.start_s,
                    o.end_s,
                    o.mode,
                    o.status,
                    None if o.operations is None else tuple(o.operations),
                )
                for o in self.outages
            ),
            rate=self.rate_per_s,
            order_budget=self.budget_s,
            latency={"latency_ms": low, "latency_jitter_ms": high - low},
            settings=dict(self.settings),
        )


def load_scenario_file(path: Path) -> Scenario:
    """The scenario in ``path``; raises ScenarioFileError with a one-line reason."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioFileError(f"{path}: cannot read it ({error.strerror})") from error
    except ValueError as error:
        raise ScenarioFileError(f"{path}: not valid JSON ({error})") from error
    try:
        return ScenarioSpec.model_validate(raw).scenario()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the document)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ScenarioFileError(f"{path}: {where}: {message}{more}") from error
