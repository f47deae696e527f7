"""A tiny ``paytabs-guard bench chaos`` run: the report's structure and the invariants that
must hold whatever the machine's speed.

Timing targets (fail-fast p99, recovery times) are printed by the benchmark, not asserted here:
a benchmark is a command that prints numbers, not a timed test.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from paytabs_guard.entrypoints.chaos import main

CONFIGURATIONS = ("full", "wait", "retries", "none")

# The module's one chaos run (the report fixture) takes 20-25 s on a busy 2-core machine and is
# charged to whichever test here runs first: three times that before calling it a hang.
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("chaos")
    level = logging.getLogger().level
    code = main(
        [
            "--profile",
            "tiny",
            "--scenarios",
            "a,c",
            "--quiet",
            "--check",
            "--json",
            str(out / "chaos.json"),
            "--svg",
            str(out / "chaos.svg"),
            "--markdown",
            str(out / "chaos.md"),
        ]
    )
    assert code == 0
    assert logging.getLogger().level == level  # the run leaves logging as it found it
    document: dict[str, Any] = json.loads((out / "chaos.json").read_text(encoding="utf-8"))
    document["_svg"] = (out / "chaos.svg").read_text(encoding="utf-8")
    document["_markdown"] = (out / "chaos.md").read_text(encoding="utf-8")
    return document


def runs(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (scenario["key"], key, run)
        for scenario in report["scenarios"]
        for key, run in scenario["runs"].items()
    ]


def test_every_scenario_ran_under_every_configuration(report: dict[str, Any]) -> None:
    assert report["profile"] == "tiny"
    assert [s["key"] for s in report["scenarios"]] == ["a", "c"]
    assert [c["key"] for c in report["configurations"]] == list(CONFIGURATIONS)
    for scenario in report["scenarios"]:
        assert tuple(scenario["runs"]) == CONFIGURATIONS
    assert report["machine"]["nproc"] >= 1
    assert set(report["settings"]["service_env"]) == set(CONFIGURATIONS)
    assert report["settings"]["service_env"]["none"]["PAYTABS_RETRY_ATTEMPTS"] == "0"


def test_the_same_orders_arrive_in_every_configuration(report: dict[str, Any]) -> None:
    for scenario in report["scenarios"]:
        attempted = {run["orders"]["attempted"] for run in scenario["runs"].values()}
        assert len(attempted) == 1
        assert attempted.pop() > 0


def test_the_numbers_are_present(report: dict[str, Any]) -> None:
    for _, _, run in runs(report):
        orders = run["orders"]
        assert 0.0 <= orders["success_rate"] <= 1.0
        assert 0.0 <= orders["first_try_success_rate"] <= orders["success_rate"]
        assert sum(orders["outcomes"].values()) == orders["attempted"]
        latency = run["create_latency"]
        assert latency["count"] >= orders["attempted"]
        assert 0.0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert run["gateway"]["requests_total"] > 0
        assert run["timeline"]
        assert run["run_seconds"] > 0


def test_no_customer_is_charged_twice(report: dict[str, Any]) -> None:
    for scenario, key, run in runs(report):
        duplicates = run["duplicates"]
        assert duplicates["extra_charges"] == 0, (scenario, key, duplicates)
        assert duplicates["carts_charged_twice"] == 0
        assert duplicates["orders_charged_twice"] == 0
        assert duplicates["charges_without_payment"] == 0


def test_saved_cards_are_charged_again_within_the_duplicate_count(report: dict[str, Any]) -> None:
    # Scenario (a) fails 20 % of PayTabs calls at random, so a renewal (a recurring charge of
    # the card an order saved) may end undecided within its budget; most complete. Every charge
    # PayTabs took is an order's or a renewal's, and none is extra (checked above).
    renewed = 0
    for scenario, key, run in runs(report):
        renewals = run["orders"]["renewals"]
        if scenario == "a":
            assert renewals, key  # orders did save a card and renew it
            completed = renewals.get("completed", 0)
            renewed += completed
            assert run["duplicates"]["charges"] >= run["orders"]["completed"] + completed
    assert renewed >= 1


def test_no_event_is_lost(report: dict[str, Any]) -> None:
    for scenario, key, run in runs(report):
        events = run["events"]
        assert events["lost"] == 0, (scenario, key, events)
        assert events["completed_events_received"] == events["completed_payments"]
        completed = run["orders"]["completed"]
        assert events["completed_payments"] >= completed


def test_the_outage_is_reported_with_its_recovery(report: dict[str, Any]) -> None:
    outage = next(s for s in report["scenarios"] if s["key"] == "c")
    assert len(outage["outages"]) == 1
    for run in outage["runs"].values():
        (recovery,) = run["recovery"]
        assert recovery["recovered_at"] == outage["outages"][0]["end"]
        gateway = run["gateway"]
        (during,) = gateway["during_each_outage"]
        assert 0 <= during == gateway["during_outages"] <= gateway["requests_total"]
    for key in ("retries", "none"):
        assert outage["runs"][key]["fail_fast"]["count"] == 0  # no breaker, nothing to fail fast
        assert outage["runs"][key]["breaker"]["create_opened"] == 0


def test_every_run_is_measured_against_the_oracle(report: dict[str, Any]) -> None:
    for scenario in report["scenarios"]:
        oracles = [run["oracle"] for run in scenario["runs"].values()]
        assert all(o == oracles[0] for o in oracles)  # the same for every configuration
        oracle = oracles[0]
        assert oracle["attempted"] == next(iter(scenario["runs"].values()))["orders"]["attempted"]
        if scenario["key"] == "a":
            assert oracle["share"] == 1.0  # transient failures never rule an order out
        for run in scenario["runs"].values():
            achieved = run["share_of_oracle"]
            assert achieved["completed"] == run["orders"]["completed"]
            assert oracle["completable"] <= achieved["completable"] <= oracle["attempted"]
            assert 0.0 <= achieved["share"] <= 1.0
            assert run["recovery_summary"]["outages"] == len(scenario["outages"])
            assert len(run["probes"]["instances"]) == 1


def test_targets_and_outputs(report: dict[str, Any]) -> None:
    targets = {item["target"]: item for item in report["targets"]}
    assert targets["zero duplicate charges, every configuration"]["met"] is True
    assert targets["zero events lost anywhere"]["met"] is True
    assert any(name.startswith("(a) success") for name in targets)
    assert report["_svg"].startswith("<svg")
    assert "<polyline" in report["_svg"]
    assert "| scenario | configuration |" in report["_markdown"]
    assert "| of oracle |" in report["_markdown"]
    assert any(name.startswith(">= 97 % of the oracle") for name in targets)
