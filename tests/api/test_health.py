"""Health endpoints in each failure mode, and the metrics they feed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc

from paytabs_guard.adapters.events import CloudEvent
from paytabs_guard.bootstrap import Container
from paytabs_guard.service.ports import UnitOfWork
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator
from testkit.clock import FakeClock
from testkit.held_answers import Arrivals, held_answers
from testkit.pause import HandPause

from .api_support import FAST_OPTIONS, Service, deliver, new_key, running_service, transaction

pytestmark = pytest.mark.anyio
HEALTH = "application/health+json"


def _statuses(document: dict[str, Any]) -> dict[str, str]:
    return {name: entries[0]["status"] for name, entries in document["checks"].items()}


async def test_all_pass_when_everything_is_up(service: Service) -> None:
    for path in ("/livez", "/readyz", "/payments/v2/health", "/health/paytabs",
                 "/health/circuit-breakers"):  # fmt: skip
        response = await service.anonymous.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == HEALTH
        assert response.json()["status"] == "pass", (path, response.text)


async def test_database_down_fails_readiness_but_not_liveness(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    unreachable = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'db.sqlite'}"
    async with running_service(sim, unreachable, migrate=False) as service:
        assert (await service.anonymous.get("/livez")).status_code == 200
        ready = await service.anonymous.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "fail"
        assert _statuses(ready.json())["database:responseTime"] == "fail"
        detailed = await service.anonymous.get("/payments/v2/health")
        assert detailed.status_code == 503
        # The API answers at once with a problem a client can retry on, not a crash.
        await _answers_storage_unavailable(service)


async def _answers_storage_unavailable(service: Service) -> None:
    started = time.perf_counter()
    listing = await service.api.get("/payments/v2")
    assert time.perf_counter() - started < 5
    assert listing.status_code == 503, listing.text
    assert listing.headers["content-type"] == "application/problem+json"
    assert listing.headers["retry-after"] == "5"
    assert listing.json()["type"].endswith("/storage-unavailable")
    assert listing.json()["request_id"] == listing.headers["x-request-id"]


async def test_postgres_down_is_503_problem_and_not_ready(sim: RunningSimulator) -> None:
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"
    async with running_service(sim, unreachable, migrate=False) as service:
        ready = await service.anonymous.get("/readyz")
        assert ready.status_code == 503
        assert _statuses(ready.json())["database:responseTime"] == "fail"
        await _answers_storage_unavailable(service)


async def test_postgres_that_accepts_but_never_answers_is_503_problem_not_500(
    sim: RunningSimulator,
) -> None:
    # A database behind a dead network path: the TCP connection opens, nothing comes back.
    # asyncpg's connect timeout raises the builtin TimeoutError, unwrapped by SQLAlchemy; it
    # was a 500 "Internal error", unlike a refused connection's 503 with Retry-After.
    silent: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        async with running_service(sim, url, migrate=False) as service:
            listing = await service.api.get("/payments/v2")
            assert listing.status_code == 503, listing.text
            assert listing.headers["content-type"] == "application/problem+json"
            assert listing.headers["retry-after"] == "5"
            assert listing.json()["type"].endswith("/storage-unavailable")
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_redis_down_is_a_warning_not_unreadiness(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # Redis is shared by every instance and the service runs without it: failing readiness
    # would take every instance out of the load balancer at once.
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    async with running_service(sim, sqlite_url, env=env) as service:
        ready = await service.anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "warn"
        assert _statuses(ready.json()) == {
            "database:responseTime": "pass",
            "redis:responseTime": "warn",
        }
        health = await service.anonymous.get("/payments/v2/health")
        assert health.status_code == 200
        assert health.json()["status"] == "warn"
        assert "unreachable" in health.json()["checks"]["redis:responseTime"][0]["output"]
        scraped = (await service.anonymous.get("/metrics")).text
        assert 'paytabs_guard_dependency_up{dependency="redis"} 0.0' in scraped
        assert 'paytabs_guard_dependency_up{dependency="database"} 1.0' in scraped
        # Payments still work on the database alone; the stats cache falls back to memory.
        payment = await service.create()
        assert payment["state"] == "awaiting_customer"
        assert (await service.api.get("/payments/v2/stats")).status_code == 200


@pytest.mark.redis
async def test_with_redis_readiness_checks_it_and_stats_are_shared(
    sim: RunningSimulator, sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    env = {"REDIS_URL": redis_url, "EVENTS_REDIS_STREAM": f"{redis_prefix}events"}
    async with running_service(sim, sqlite_url, env=env, redis_prefix=redis_prefix) as first:
        ready = await first.anonymous.get("/readyz")
        assert ready.status_code == 200
        assert _statuses(ready.json())["redis:responseTime"] == "pass"
        assert (await first.api.get("/payments/v2/stats")).headers["x-cache"] == "miss"
        breakers = (await first.anonymous.get("/health/circuit-breakers")).json()
        assert breakers["status"] == "pass"
        async with running_service(sim, sqlite_url, env=env, redis_prefix=redis_prefix) as second:
            cached = await second.api.get("/payments/v2/stats")
            assert cached.headers["x-cache"] == "hit"


async def test_paytabs_down_is_a_warning_never_a_failure(service: Service) -> None:
    service.sim.engine.set_faults(Faults(down=True))
    paytabs = await service.anonymous.get("/health/paytabs")
    assert paytabs.status_code == 200
    assert paytabs.json()["status"] == "warn"
    assert "did not answer" in paytabs.json()["checks"]["paytabs:responseTime"][0]["output"]
    assert (await service.anonymous.get("/readyz")).status_code == 200


async def test_concurrent_paytabs_checks_share_one_query(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The endpoint needs no key and each check is a PayTabs query signed with the merchant's
    # server key: fifty callers at once must not make fifty queries.
    def queries() -> int:
        return service.sim.engine.stats["requests /payment/query"]

    # PayTabs holds the query until all thirty callers are there (a latency of 200 ms was a
    # window a loaded machine could close before the last of them arrived: its own query).
    cache = service.app.state.runtime.probe_cache
    share = cache.shared
    callers = Arrivals()

    async def shared(*args: Any) -> Any:
        callers.arrive()
        return await share(*args)

    monkeypatch.setattr(cache, "shared", shared)
    before = queries()
    with held_answers(service.sim.engine) as paytabs:
        checks = [asyncio.create_task(service.anonymous.get("/health/paytabs")) for _ in range(30)]
        await callers.reached(30)
        await paytabs.arrived()
        paytabs.release()
        answers = await asyncio.gather(*checks)
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["status"] for answer in answers} == {"pass"}
    assert queries() - before == 1


async def test_an_open_breaker_is_a_warning(service: Service) -> None:
    await service.admin.post("/payments/v2/circuit-breaker/query/open")
    breakers = await service.anonymous.get("/health/circuit-breakers")
    assert breakers.status_code == 200
    assert breakers.json()["status"] == "warn"
    query = next(
        c for c in breakers.json()["checks"]["circuitBreaker:state"] if c["componentId"] == "query"
    )
    assert query["observedValue"] == "forced_open"
    paytabs = (await service.anonymous.get("/health/paytabs")).json()
    assert paytabs["status"] == "warn"
    assert "circuit open" in paytabs["checks"]["paytabs:responseTime"][0]["output"]


async def test_outbox_lag_warns_when_a_sink_falls_behind(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    options = dataclasses.replace(FAST_OPTIONS, outbox_lag_warn_seconds=0.0)
    async with running_service(sim, sqlite_url, options=options) as service:

        async def refuse(_event: CloudEvent) -> None:
            raise RuntimeError("the ERP is down")

        service.container.events.on("*", refuse, name="erp")
        await service.create()
        await service.container.relay.run_once()
        health = await service.anonymous.get("/payments/v2/health")
        assert health.status_code == 200
        outbox = health.json()["checks"]["outbox:lag"][0]
        assert outbox["status"] == "warn"
        assert "oldest undelivered event" in outbox["output"]
        metrics = (await service.anonymous.get("/metrics")).text
        assert "paytabs_guard_outbox_pending 2.0" in metrics


async def test_metrics_use_route_templates_and_no_identifiers(service: Service) -> None:
    payment = await service.create()
    await service.api.get(f"/payments/v2/{payment['id']}")
    await deliver(service.anonymous, transaction(payment))
    await service.api.get("/definitely/not/here")
    # Starlette's own routes: the OpenAPI document FastAPI adds and the docs' assets mount
    assert (await service.anonymous.get("/openapi.json")).status_code == 200
    assert (await service.anonymous.get("/docs-assets/swagger-ui.css")).status_code == 200
    response = await service.anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'route="/payments/v2/{payment_id}"' in text
    assert 'route="/payments/v2/webhook"' in text
    assert 'route="unmatched"' in text
    assert 'route="/openapi.json",status_class="2xx"} 1.0' in text
    assert 'route="/docs-assets/{path}",status_class="2xx"} 1.0' in text
    unmatched = [
        line
        for line in text.splitlines()
        if line.startswith("paytabs_guard_http_requests_total") and 'route="unmatched"' in line
    ]
    assert unmatched == [
        'paytabs_guard_http_requests_total{method="GET",route="unmatched",status_class="4xx"} 1.0'
    ]
    assert 'paytabs_guard_gateway_requests_total{operation="create",outcome="ok"} 1.0' in text
    assert 'paytabs_guard_circuit_breaker_state{breaker="create",state="closed"} 1.0' in text
    for identifier in (payment["id"], payment["tran_ref"], "127.0.0.1"):
        assert identifier not in text


async def test_methods_outside_http_are_one_metrics_label(service: Service) -> None:
    # The parser takes some thirty methods besides HTTP's own (WebDAV, UPnP): anyone could
    # send each to each route, unauthenticated, and every one became series of its own (2.8 MB
    # and 0.4-0.7 s per scrape, the event loop held, after 1,500 requests).
    for method in ("PROPFIND", "MKCOL", "M-SEARCH", "PURGE", "QUERY"):
        answer = await service.anonymous.request(method, "/livez")
        assert answer.status_code == 405
    await service.anonymous.request("PATCH", "/livez")
    text = (await service.anonymous.get("/metrics")).text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("paytabs_guard_http_requests_total") and 'route="/livez"' in line
    ]
    assert sorted(counted) == [
        'paytabs_guard_http_requests_total{method="PATCH",route="/livez",status_class="4xx"} 1.0',
        'paytabs_guard_http_requests_total{method="_OTHER",route="/livez",status_class="4xx"} 5.0',
    ]
    for method in ("PROPFIND", "MKCOL", "M-SEARCH", "PURGE", "QUERY"):
        assert f'method="{method}"' not in text


async def test_breaker_transitions_are_counted(service: Service) -> None:
    await service.admin.post("/payments/v2/circuit-breaker/create/open")
    await service.admin.post("/payments/v2/circuit-breaker/create/reset")
    assert (
        service.metric(
            "paytabs_guard_circuit_breaker_transitions_total",
            breaker="create",
            from_state="closed",
            to_state="forced_open",
        )
        == 1
    )
    assert (
        service.metric("paytabs_guard_circuit_breaker_state", breaker="create", state="closed") == 1
    )


async def test_reconciliation_runs_in_the_background_and_reports_its_last_pass(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    pause = HandPause()

    def hand_driven(container: Container) -> Container:
        container.reconciliation.pause = pause
        return container

    env = {"RECONCILE_INTERVAL_SECONDS": "1", "RECONCILE_STUCK_AFTER_SECONDS": "1"}
    async with running_service(
        sim, sqlite_url, env=env, reconcile=True, container_hook=hand_driven
    ) as service:
        status = service.container.reconciliation
        await pause.passed()  # the pass a serving instance runs at start
        assert pause.intervals == [timedelta(seconds=1)]
        assert status.last_run_at is not None
        health = (await service.anonymous.get("/payments/v2/health")).json()
        check = health["checks"]["reconciliation:lastRun"][0]
        assert check["status"] == "pass"
        assert check["observedValue"] == status.last_run_at.isoformat()
        assert service.metric("paytabs_guard_reconciliation_runs_total", result="ok") == 1
        await pause.resume()
        assert service.metric("paytabs_guard_reconciliation_runs_total", result="ok") == 2


async def test_a_reconciliation_pass_that_fails_as_a_whole_is_counted(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # It was only logged ("reconcile pass failed"): the counter did not move, and only the
    # 15-minute ReconciliationStalled alert noticed, from the last finished pass's age.
    pause = HandPause()
    database_down = True

    def with_a_database_that_can_go_down(container: Container) -> Container:
        container.reconciliation.pause = pause
        real = container.payments.uow

        def open_unit_of_work() -> UnitOfWork:
            if database_down:
                raise sqlalchemy.exc.OperationalError("BEGIN", None, ConnectionRefusedError())
            return real()

        return container.with_payments(
            dataclasses.replace(container.payments, uow=open_unit_of_work)
        )

    env = {"RECONCILE_INTERVAL_SECONDS": "1", "RECONCILE_STUCK_AFTER_SECONDS": "1"}
    async with running_service(
        sim, sqlite_url, env=env, reconcile=True, container_hook=with_a_database_that_can_go_down
    ) as service:
        await pause.passed()  # the pass at start, with the database down
        assert service.metric("paytabs_guard_reconciliation_runs_total", result="aborted") == 1
        assert service.container.reconciliation.last_run_at is None  # it finished nothing
        database_down = False
        await pause.resume()
        assert service.metric("paytabs_guard_reconciliation_runs_total", result="ok") == 1
        assert service.metric("paytabs_guard_reconciliation_runs_total", result="aborted") == 1


async def _follow_up(service: Service, payment: dict[str, Any], action: str, **body: str) -> Any:
    response = await service.api.post(
        f"/payments/v2/{payment['id']}/{action}", json=body, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_refunds_captures_and_voids_count_as_payment_transitions(service: Service) -> None:
    # They were applied without telling the metrics: the transitions panel never showed a
    # refund, a capture or a void.
    sale = await service.create("10.00")
    auth = await service.create("10.00", tran_type="auth")
    held = await service.create("10.00", tran_type="auth")
    for payment in (sale, auth, held):
        await service.pay(payment)
    await service.callbacks_done()
    assert (await _follow_up(service, sale, "refund", amount="4.00"))[
        "state"
    ] == "partially_refunded"
    assert (await _follow_up(service, sale, "refund", amount="6.00"))["state"] == "refunded"
    assert (await _follow_up(service, auth, "capture"))["state"] == "completed"
    assert (await _follow_up(service, held, "void"))["state"] == "voided"
    for before, after in [
        ("completed", "partially_refunded"),
        ("partially_refunded", "refunded"),
        ("authorized", "completed"),
        ("authorized", "voided"),
    ]:
        labels = {"from_state": before, "to_state": after, "source": "api"}
        assert service.metric("paytabs_guard_payment_transitions_total", **labels) == 1, labels


async def test_what_reconciliation_settles_counts_as_its_transition(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # The CallbacksLostSettledByReconciliation alert counts transitions from source
    # "reconciliation"; the background passes settled payments without counting any.
    clock, pause = FakeClock(datetime.now(UTC)), HandPause()

    def hand_driven(container: Container) -> Container:
        container.reconciliation.pause = pause
        return container

    env = {"RECONCILE_INTERVAL_SECONDS": "1", "RECONCILE_STUCK_AFTER_SECONDS": "1"}
    sim.engine.set_faults(Faults(callback_withhold_rate=1.0))
    async with running_service(
        sim, sqlite_url, env=env, reconcile=True, clock=clock, container_hook=hand_driven
    ) as service:
        await pause.passed()  # the pass at start, before there is anything to settle
        payment = await service.create()
        await service.pay(payment)
        assert (await service.get(payment["id"]))["state"] == "awaiting_customer"
        clock.advance(2)  # past RECONCILE_STUCK_AFTER_SECONDS
        await pause.resume()
        assert (await service.get(payment["id"]))["state"] == "completed"
        labels = {"from_state": "awaiting_customer", "to_state": "completed"}
        assert (
            service.metric(
                "paytabs_guard_payment_transitions_total", source="reconciliation", **labels
            )
            == 1
        )
        assert (
            service.metric("paytabs_guard_payment_transitions_total", source="callback", **labels)
            == 0
        )
