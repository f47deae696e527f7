"""The chaos benchmark's parts that need no full run: the oracle, scenario files, and what the
merchants send (``Prefer: wait``) and how they read a 503's wait."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from paytabs_guard.entrypoints.chaos import main
from paytabs_guard.entrypoints.chaos.driver import Budgets, CompletionWaiters, Driver, prefer_wait
from paytabs_guard.entrypoints.chaos.merchants import merchants, merchants_process
from paytabs_guard.entrypoints.chaos.oracle import completable, down_spans, oracle, share_of_oracle
from paytabs_guard.entrypoints.chaos.scenario_file import ScenarioFileError, load_scenario_file
from paytabs_guard.entrypoints.chaos.scenarios import SHORT, Window
from paytabs_guard.entrypoints.chaos.simulator import Simulator
from paytabs_guard.entrypoints.loopback import serve_app

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "chaos-scenarios"

# ---- the oracle ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrival", "budget", "expected"),
    [
        (0.0, 1.0, True),  # before the outage, up for the whole budget
        (9.5, 0.4, True),  # 0.4 s before the outage starts: room for a 0.2 s create
        (9.9, 0.5, False),  # 0.1 s before it starts, and the budget ends inside it
        (12.0, 3.0, False),  # inside it, and the budget ends inside it too
        (12.0, 8.3, True),  # inside it, the budget reaches 0.3 s past recovery
        (12.0, 8.1, False),  # ... but 0.1 s past is too short for a 0.2 s create
        (25.0, 5.0, True),  # after it
    ],
)
def test_an_order_is_completable_when_create_is_up_long_enough_in_its_budget(
    arrival: float, budget: float, expected: bool
) -> None:
    down = down_spans([Window(10.0, 20.0, "hang")])
    assert completable(arrival, budget, down, need=0.2) is expected


def test_a_gap_between_outages_counts_only_when_it_fits_one_create() -> None:
    down = down_spans([Window(1.0, 2.0, "reset"), Window(2.1, 3.0, "reset")])
    assert completable(1.5, 1.4, down, need=0.2) is False  # the 0.1 s gap is too short
    assert completable(1.5, 1.4, down, need=0.1) is True
    assert completable(1.5, 1.7, down, need=0.2) is True  # reaches 0.2 s past the second


def test_overlapping_outages_merge() -> None:
    down = down_spans([Window(5.0, 8.0, "hang"), Window(1.0, 6.0, "hang")])
    assert down == [(1.0, 8.0)]


def test_a_partial_outage_without_create_takes_no_order() -> None:
    windows = [Window(0.0, 100.0, "status", 503, ("query", "follow_up"))]
    assert down_spans(windows) == []
    assert down_spans(windows, "query") == [(0.0, 100.0)]
    result = oracle([1.0, 2.0], 3.0, windows, 0.2)
    assert (result["completable"], result["share"]) == (2, 1.0)


def test_the_oracle_share_and_a_configurations_share_of_it() -> None:
    result = oracle([0.0, 11.0, 30.0], 2.0, [Window(10.0, 20.0, "hang")], 0.2)
    assert result["completable_by_order"] == [True, False, True]
    assert result["share"] == pytest.approx(2 / 3)
    achieved = share_of_oracle([True, False, False], result["completable_by_order"])
    assert (achieved["completed"], achieved["completable"], achieved["share"]) == (1, 2, 0.5)
    # An order that completed although the oracle ruled it out still counts as possible.
    lucky = share_of_oracle([True, True, True], result["completable_by_order"])
    assert (lucky["share"], lucky["completed_not_completable"]) == (1.0, 1)


# ---- scenario files --------------------------------------------------------------------------


def test_the_shipped_examples_load() -> None:
    partial = load_scenario_file(EXAMPLES / "partial-create-outage.json")
    assert partial.rate == 12
    assert partial.order_budget == 4
    (window,) = partial.outages
    assert (window.mode, window.status, window.operations) == ("status", 503, ("create",))
    faults = partial.simulator_faults()
    assert faults["outages"][0]["operations"] == ["create"]
    assert faults["error_rate"] == 0.1
    assert faults["error_phase"] == "mixed"
    assert "reset_rate" not in faults  # a zero rate draws nothing, so seeds stay stable
    hang = load_scenario_file(EXAMPLES / "short-hang-outage.json")
    assert hang.outages[0].operations is None
    assert hang.outages[0].as_fault() == {"start": 3, "end": 5, "mode": "hang", "status": 503}
    assert hang.slowest_create() == pytest.approx(0.2)
    long = load_scenario_file(EXAMPLES / "long-hang-outage.json")
    assert long.settings["CIRCUIT_BREAKER_TIMEOUT"] == "30000"  # the production defaults


def _minimal(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "key": "x",
        "title": "t",
        "duration_s": 5,
        "rate_per_s": 12,
        "budget_s": 4,
        "outages": [{"start_s": 1, "end_s": 2, "mode": "reset"}],
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (_minimal(rate_per_s=0), "rate_per_s"),
        (_minimal(duration=5), "duration"),  # a misspelt field is refused, not ignored
        (_minimal(outages=[{"start_s": 3, "end_s": 2}]), "outages.0"),
        (_minimal(outages=[{"start_s": 1, "end_s": 2, "mode": "down"}]), "outages.0.mode"),
        (
            _minimal(outages=[{"start_s": 1, "end_s": 2, "operations": ["refund"]}]),
            "outages.0.operations.0",
        ),
        (_minimal(outages=[{"start_s": 1, "end_s": 2, "operations": []}]), "outages.0.operations"),
        (_minimal(transient={"error_rate": 1.5}), "transient.error_rate"),
        (_minimal(latency_ms=[200, 80]), "latency_ms"),
        (_minimal(outages=[{"start_s": 9, "end_s": 10}]), "outages.0.start_s"),
        (_minimal(key="Has Space"), "key"),
        (_minimal(settings={"PAYTABS_TIMEOUTS": "1"}), "PAYTABS_TIMEOUTS"),  # not a variable
    ],
)
def test_a_bad_scenario_file_is_refused_naming_the_field(
    tmp_path: Path, document: dict[str, Any], field: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ScenarioFileError) as refused:
        load_scenario_file(path)
    message = str(refused.value)
    assert "\n" not in message
    assert field in message


def test_the_command_refuses_a_bad_file_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_minimal(budget_s=-1)), encoding="utf-8")
    assert main(["--short", "--quiet", "--scenario-file", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("bad scenario file:")
    assert "budget_s" in err[0]
    assert main(["--short", "--quiet", "--scenario-file", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path.write_text("{", encoding="utf-8")
    assert main(["--short", "--quiet", "--scenario-file", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_scenario_e_needs_postgresql_and_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--short", "--quiet", "--scenarios", "e"]) == 2
    assert "--redis-url" in capsys.readouterr().err


def test_scenario_e_runs_two_instances() -> None:
    (cluster,) = [s for s in SHORT.scenarios if s.key == "e"]
    assert cluster.instances == 2
    assert cluster.outages[0].mode == "hang"
    assert len(cluster.outages) >= 2  # an outage, then flapping
    assert all(a.end < b.start for a, b in zip(cluster.outages, cluster.outages[1:], strict=False))


# ---- what the merchants send ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "header"), [(7.9, "wait=7"), (0.4, "wait=0"), (-1, "wait=0")]
)
def test_prefer_wait_is_the_remaining_budget_in_whole_seconds(
    remaining: float, header: str
) -> None:
    assert prefer_wait(remaining) == header


class _Merchant:
    """A stand-in service on a real socket: answers create with the given responses in turn
    and keeps the headers it received."""

    def __init__(self, *responses: Response) -> None:
        self.responses = list(responses)
        self.headers: list[dict[str, str]] = []
        self.app = FastAPI()

        @self.app.post("/payments/v2/create")
        async def create(request: Request) -> Response:
            self.headers.append(dict(request.headers))
            return self.responses.pop(0)


async def _one_order(merchant: _Merchant, *, prefer: bool, budget: float) -> Driver:
    async with serve_app(merchant.app) as url:
        simulator = Simulator(url, "inprocess")  # the order never reaches the payment page
        try:
            driver = Driver(
                service_urls=[url],
                api_key="k",
                simulator=simulator,
                waiters=CompletionWaiters(),
                budgets=Budgets(budget, 1.0),
                prefer_wait=prefer,
            )
            await driver.run([(0.0, "10.00")], time.monotonic())
        finally:
            await simulator.aclose()
    return driver


REJECTED = JSONResponse({"title": "no"}, status_code=422)


@pytest.mark.anyio
@pytest.mark.parametrize("prefer", [True, False])
async def test_the_wait_configuration_sends_prefer_wait_on_create(prefer: bool) -> None:
    merchant = _Merchant(REJECTED)
    driver = await _one_order(merchant, prefer=prefer, budget=5.5)
    assert driver.orders[0].outcome == "rejected"
    (headers,) = merchant.headers
    assert headers.get("prefer") == ("wait=5" if prefer else None)


@pytest.mark.anyio
async def test_the_precise_wait_in_a_503_body_wins_over_retry_after() -> None:
    open_breaker = JSONResponse(
        {"title": "PayTabs unavailable", "status": 503, "retry_after_ms": 0},
        status_code=503,
        headers={"Retry-After": "30"},
        media_type="application/problem+json",
    )
    merchant = _Merchant(open_breaker, REJECTED)
    driver = await _one_order(merchant, prefer=False, budget=20.0)
    # Had the merchant waited Retry-After (30 s), the 20 s budget would have run out first.
    assert driver.orders[0].outcome == "rejected"
    assert [call.status for call in driver.creates] == [503, 422]
    assert driver.creates[1].start - driver.creates[0].end < 5.0


@pytest.mark.anyio
async def test_merchants_in_their_own_process_report_every_order_and_create() -> None:
    """The default layout: the driver runs in a child process and sends its orders back."""
    merchant = _Merchant(REJECTED, REJECTED)
    async with serve_app(merchant.app) as url:
        simulator = Simulator(url, "inprocess")  # the orders never reach the payment page
        try:
            async with merchants(
                "process",
                service_urls=[url],
                api_key="k",
                simulator=simulator,
                budgets=Budgets(5.5, 1.0),
                prefer_wait=True,
            ) as running:
                await running.run([(0.0, "10.00"), (0.05, "12.50")], time.monotonic())
        finally:
            await simulator.aclose()
    assert [order.outcome for order in running.orders] == ["rejected", "rejected"]
    assert [order.amount for order in running.orders] == ["10.00", "12.50"]
    assert [call.status for call in running.creates] == [422, 422]
    assert [h.get("prefer") for h in merchant.headers] == ["wait=5", "wait=5"]
    assert all(h["authorization"] == "Bearer k" for h in merchant.headers)
    assert running.cpu_seconds is not None
    assert running.cpu_seconds > 0


@pytest.mark.anyio
async def test_one_merchants_process_serves_run_after_run() -> None:
    """A benchmark starts the merchants' process once; each run gets its own orders back,
    and the child ends when the benchmark closes its stdin."""
    merchant = _Merchant(REJECTED, REJECTED, REJECTED)
    async with serve_app(merchant.app) as url:
        simulator = Simulator(url, "inprocess")
        try:
            async with merchants_process() as child:
                got = []
                for schedule in ([(0.0, "10.00")], [(0.0, "20.00"), (0.05, "30.00")]):
                    async with merchants(
                        "process",
                        service_urls=[url],
                        api_key="k",
                        simulator=simulator,
                        budgets=Budgets(1.0, 1.0),
                        prefer_wait=False,
                        child=child,
                    ) as running:
                        await running.run(schedule, time.monotonic())
                    got.append([order.amount for order in running.orders])
                assert child.returncode is None  # still there for the next run
        finally:
            await simulator.aclose()
    assert got == [["10.00"], ["20.00", "30.00"]]
    assert child.returncode == 0
