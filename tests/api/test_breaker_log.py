"""Every circuit-breaker state change is a log line (docs/operations.md, "Logs").

Nothing was logged when a breaker opened or closed: an operator reading the service's log
during a PayTabs outage saw creates answered 503 and no word of the breaker. Real HTTP, the
real simulator taken down and brought back through its faults, the service's own logging.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from paytabs_guard.observability import configure_logging
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """The root logger as the service configures it (and nothing else), into a string."""
    root = logging.getLogger()
    kept_handlers, kept_level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream)
    root.handlers = [handler]
    try:
        yield stream
    finally:
        root.handlers = kept_handlers
        root.setLevel(kept_level)


def breaker_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "paytabs_guard.circuit_breaker"]


async def _create(service: Service) -> int:
    response = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    return response.status_code


async def test_an_opening_is_a_warning_and_the_way_back_is_logged_too(
    sim: RunningSimulator, sqlite_url: str, service_log: io.StringIO
) -> None:
    env = {
        "PAYTABS_RETRY_ATTEMPTS": "0",
        "CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS": "1",
        "CIRCUIT_BREAKER_PROBE_INTERVAL": "0",  # the operator's reset brings it back below
    }
    async with running_service(sim, sqlite_url, env=env) as service:
        sim.engine.set_faults(Faults(down=True))
        try:
            statuses = [await _create(service) for _ in range(6)]
        finally:
            sim.engine.set_faults(Faults())
        assert statuses == [503] * 6
        assert (await service.admin.post("/payments/v2/circuit-breaker/create/reset")).is_success
    lines = breaker_lines(service_log)
    assert [(line["event"], line["level"]) for line in lines] == [
        ("circuit breaker opened", "warning"),
        ("circuit breaker closed", "info"),
    ]
    opened, closed = lines
    assert opened["breaker"] == "create"
    assert (opened["from_state"], opened["to_state"]) == ("closed", "open")
    assert opened["reason"] == "error_rate"
    assert opened["error_rate"] == 100.0
    assert (closed["from_state"], closed["to_state"], closed["reason"]) == (
        "open",
        "closed",
        "reset",
    )


async def test_an_operators_forced_state_is_logged(
    service: Service, service_log: io.StringIO
) -> None:
    assert (await service.admin.post("/payments/v2/circuit-breaker/follow_up/open")).is_success
    assert (await service.admin.post("/payments/v2/circuit-breaker/follow_up/close")).is_success
    lines = breaker_lines(service_log)
    assert [(line["event"], line["to_state"], line["reason"]) for line in lines] == [
        ("circuit breaker opened", "forced_open", "forced"),
        ("circuit breaker closed", "forced_closed", "forced"),
    ]
