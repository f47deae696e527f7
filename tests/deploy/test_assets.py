"""The operator assets in deploy/ match the service: every alert and every dashboard query names
only metrics that a live app's /metrics exports, the expressions are well formed (and accepted by
promtool where it is installed), and the example deployment is consistent with itself and with
the settings."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from paytabs_guard.bootstrap import build_container
from paytabs_guard.entrypoints.api.app import create_app
from paytabs_guard.setting_values import IPNetwork
from paytabs_guard.settings import Settings, load_settings

from .promql_check import check
from .yaml_subset import Node, load

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "paytabs-guard.json"
COMPOSE = DEPLOY / "examples" / "docker-compose.yml"
PRODUCTION_ENV = DEPLOY / "examples" / "production.env"
NGINX = DEPLOY / "examples" / "nginx.conf"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"

#: Metrics that are not ours, each with the job that produces it in prometheus.yml.
EXTERNAL_METRICS = {
    "up": "paytabs-guard",  # Prometheus' own: did the scrape of an instance work
    "probe_success": "paytabs-guard-readyz",  # the blackbox exporter probing /readyz
}
#: What the issue asks alerts for, and the alerts that answer it.
REQUIRED_ALERTS = {
    "breaker open, by family": {"PayTabsBreakerOpen", "PayTabsBreakerOpenLong"},
    "signature rejections rising": {"CallbackSignatureRejectionsRising"},
    "payments stuck undecided": {"PaymentsStuckUndecided", "PaymentsStuckUnresolved"},
    "callbacks lost": {"CallbacksLostSettledByReconciliation"},
    "outbox lag": {"OutboxLag"},
    "conflicts / payment.conflict": {"PaymentConflict"},
    "dead letters": {"EventDeadLetters"},
    "API 5xx rate": {"ApiServerErrors"},
    "readiness failing": {"ReadinessFailing", "InstanceDown"},
}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*", "${datasource}": "prometheus"}


# ---- what the service exports -------------------------------------------------------------------


def sample_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition can produce, from its ``# TYPE`` lines
    (labelled metrics with no children yet still declare their type)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        match = re.fullmatch(r"# TYPE (\S+) (\S+)", line)
        if match is None:
            continue
        name, kind = match.groups()
        if kind == "counter":
            base = name.removesuffix("_total")
            names |= {f"{base}_total", f"{base}_created"}
        elif kind in ("histogram", "summary"):
            names |= {f"{name}_sum", f"{name}_count", f"{name}_created"}
            if kind == "histogram":
                names.add(f"{name}_bucket")
        else:
            names.add(name)
    return names


@pytest.fixture
async def exported(tmp_path: Path) -> AsyncIterator[set[str]]:
    """Series names of a live app's ``GET /metrics`` (SQLite; PayTabs is never called)."""
    database = tmp_path / "service.db"
    settings = load_settings(
        {
            "PAYTABS_PROFILE_ID": "987654",
            "PAYTABS_SERVER_KEY": "metrics-test-server-key",
            "PAYTABS_BASE_URL": "http://127.0.0.1:9",
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        }
    )
    container = await build_container(settings, reconcile=False)
    try:
        transport = httpx.ASGITransport(app=create_app(container))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        yield sample_names(response.text)
    finally:
        await container.aclose()


# ---- the files ----------------------------------------------------------------------------------


def mapping(node: Node) -> dict[str, Node]:
    assert isinstance(node, dict), node
    return node


def sequence(node: Node) -> list[Node]:
    assert isinstance(node, list), node
    return node


def text(node: Node) -> str:
    assert isinstance(node, str), node
    return node


def alert_rules() -> list[dict[str, Node]]:
    groups = sequence(mapping(load(ALERTS.read_text(encoding="utf-8")))["groups"])
    return [mapping(rule) for group in groups for rule in sequence(mapping(group)["rules"])]


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, expression with Grafana's variables filled in) for every panel query."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expression = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            yield panel["title"], expression


# ---- alerts -------------------------------------------------------------------------------------


def test_every_alert_rule_has_an_expression_a_severity_and_words_for_the_operator() -> None:
    rules = alert_rules()
    names = [text(rule["alert"]) for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        assert text(rule["expr"]).strip()
        assert mapping(rule["labels"])["severity"] in ("warning", "critical"), rule["alert"]
        annotations = mapping(rule["annotations"])
        assert text(annotations["summary"]), rule["alert"]
        assert text(annotations["description"]), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", text(rule["for"])), rule["alert"]


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = {text(rule["alert"]) for rule in alert_rules()}
    for need, answers in REQUIRED_ALERTS.items():
        assert answers <= names, need
    breaker = next(rule for rule in alert_rules() if rule["alert"] == "PayTabsBreakerOpen")
    assert "by (breaker)" in text(breaker["expr"])  # one alert per breaker family


#: Alerts that must read the gauge that measures their question directly, not a proxy of it.
DIRECT_ALERTS = {
    "EventDeadLetters": "paytabs_guard_event_dead_letters",
    "PaymentsStuckUndecided": "paytabs_guard_payments_undecided_oldest_age_seconds",
}


def test_dead_letters_and_stuck_payments_are_alerted_from_their_own_gauges() -> None:
    rules = {text(rule["alert"]): rule for rule in alert_rules()}
    for alert, metric in DIRECT_ALERTS.items():
        assert check(text(rules[alert]["expr"])).metrics == {metric}, alert


@pytest.mark.anyio
async def test_alert_expressions_are_well_formed_and_use_only_exported_metrics(
    exported: set[str],
) -> None:
    for rule in alert_rules():
        found = check(text(rule["expr"]))
        assert found.problems == [], (rule["alert"], found.problems)
        assert found.metrics, rule["alert"]
        unknown = found.metrics - exported - set(EXTERNAL_METRICS)
        assert unknown == set(), (rule["alert"], unknown)


def test_external_metrics_come_from_jobs_that_prometheus_yml_scrapes() -> None:
    configs = sequence(mapping(load(PROMETHEUS.read_text(encoding="utf-8")))["scrape_configs"])
    jobs = {text(mapping(config)["job_name"]) for config in configs}
    for rule in alert_rules():
        expression = text(rule["expr"])
        for metric, job in EXTERNAL_METRICS.items():
            if metric in check(expression).metrics:
                assert f'job="{job}"' in expression, rule["alert"]
                assert job in jobs


# ---- the dashboard ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_dashboard_query_uses_only_exported_metrics(exported: set[str]) -> None:
    queries = list(dashboard_queries())
    assert len(queries) >= 20
    for title, expression in queries:
        found = check(expression)
        assert found.problems == [], (title, found.problems)
        assert found.metrics, title
        assert found.metrics <= exported, (title, found.metrics - exported)


def test_the_dashboard_covers_each_area_and_its_panels_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rows = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert rows == {
        "Overview",
        "API (RED)",
        "PayTabs (RED per operation)",
        "Circuit breakers",
        "Callbacks and returns",
        "Payments",
        "Events and reconciliation",
    }
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert not area & cells, panel["title"]
        cells |= area


# ---- promtool, where installed ------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(  # noqa: S603 - a fixed tool with our own files
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


@needs_promtool
def test_promtool_accepts_the_rules_the_config_and_the_rule_unit_tests() -> None:
    folder = DEPLOY / "prometheus"
    for args in (
        ("check", "rules", "alerts.yml"),
        ("check", "config", "prometheus.yml"),
        ("test", "rules", "alerts.test.yml"),
    ):
        done = promtool(*args, cwd=folder)
        assert done.returncode == 0, (args, done.stdout, done.stderr)


@needs_promtool
def test_promtool_accepts_every_dashboard_query(tmp_path: Path) -> None:
    records = [
        f"      - record: dashboard:query_{n}\n        expr: {json.dumps(expression)}\n"
        for n, (_, expression) in enumerate(dashboard_queries())
    ]
    rules = tmp_path / "dashboard-queries.yml"
    rules.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(records))
    done = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)


# ---- the example deployment ---------------------------------------------------------------------


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_production_env_names_only_real_settings_and_they_validate() -> None:
    values = env_file(PRODUCTION_ENV)
    known = {name.upper() for name in Settings.model_fields}
    assert set(values) <= known, set(values) - known
    settings = load_settings(values)
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.redis_url is not None
    assert settings.circuit_breaker_shared
    assert settings.trusted_proxies, "instances behind a proxy must trust it (TRUSTED_PROXIES)"


def test_compose_migrates_first_and_runs_several_instances_behind_the_trusted_proxy() -> None:
    services = mapping(mapping(load(COMPOSE.read_text(encoding="utf-8")))["services"])
    migrate = mapping(services["migrate"])
    assert sequence(migrate["command"]) == ["paytabs-guard", "db", "upgrade"]
    apps = sorted(name for name in services if re.fullmatch(r"app\d+", name))
    assert len(apps) >= 2
    upstreams = set(re.findall(r"server (app\d+):8000", NGINX.read_text(encoding="utf-8")))
    assert upstreams == set(apps)
    nginx = mapping(services["nginx"])
    address = text(mapping(mapping(nginx["networks"])["backend"])["ipv4_address"])
    trusted = load_settings(env_file(PRODUCTION_ENV) | {"PAYTABS_SERVER_KEY": "x"})
    assert any(ip_in(address, network) for network in trusted.trusted_proxies)
    for name in apps:
        app = mapping(services[name])
        depends = mapping(app["depends_on"])
        assert mapping(depends["migrate"])["condition"] == "service_completed_successfully"
        assert sequence(app["env_file"]) == ["production.env"]
    nginx_conf = NGINX.read_text(encoding="utf-8")
    assert "$proxy_add_x_forwarded_for" in nginx_conf  # append, never replace


def test_the_example_proxy_keeps_every_health_and_metrics_route_internal() -> None:
    # Each route the health module serves, matched against the example's deny locations as
    # nginx matches a regex location (against the decoded path).
    from paytabs_guard.entrypoints.api import health

    conf = NGINX.read_text(encoding="utf-8")
    denied = [
        re.compile(pattern)
        for pattern, body in re.findall(r"location ~ (\S+) \{([^}]*)\}", conf)
        if "deny all;" in body
    ]
    paths = sorted({route.path for route in health.router.routes if hasattr(route, "path")})
    assert {"/payments/v2/health", "/metrics"} <= set(paths)
    open_to_all = [path for path in paths if not any(p.search(path) for p in denied)]
    assert open_to_all == []


def ip_in(address: str, network: IPNetwork) -> bool:
    return ipaddress.ip_address(address) in network


def test_the_image_installs_the_service_its_commands_run() -> None:
    # The example image ran `pip install .`: the library alone, so the migration step and both
    # instances stopped at once with "this command needs the service extra".
    dockerfile = (DEPLOY / "examples" / "Dockerfile").read_text(encoding="utf-8")
    instructions = re.sub(r"\\\n\s*", " ", dockerfile)
    (install,) = re.findall(r"^RUN pip install (.*?)(?:&&|$)", instructions, re.MULTILINE)
    words = install.split()
    targets = [word.strip("\"'") for word in words if word.strip("\"'").startswith(".")]
    assert targets, install
    extras = {extra for target in targets for extra in re.findall(r"[\w-]+", target)}
    assert "service" in extras, f"the image must install the service extra: {install}"
    # At the versions the suite ran against, and the lock is in the build context.
    assert "-c constraints.txt" in install
    assert re.search(r"^COPY .*\bconstraints\.txt\b", dockerfile, re.MULTILINE)
    assert re.search(r'^CMD \["paytabs-guard", "serve"', dockerfile, re.MULTILINE)
