"""The CLI's service commands, and docs generated from the code staying current."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from paytabs_guard.adapters.paytabs.callbacks import PayTabsCallbacks
from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.entrypoints.api.app import openapi_document
from paytabs_guard.entrypoints.api.reference import render_json, render_markdown
from paytabs_guard.entrypoints.cli import main
from paytabs_guard.entrypoints.serve import banner, free_port
from paytabs_guard.entrypoints.simulator_mode import (
    replaced_settings,
    simulator_environment,
    simulator_webhook_secret,
)
from paytabs_guard.service.callbacks import InvalidCallbackSignature
from paytabs_guard.settings import load_settings
from paytabs_simulator.config import DEFAULT_SERVER_KEY
from paytabs_simulator.signing import sign_body

from .api_support import encode, transaction

DOCS = Path(__file__).parents[2] / "docs"


def test_docs_api_md_and_openapi_json_are_current() -> None:
    document = openapi_document()
    assert (DOCS / "openapi.json").read_text() == render_json(document), (
        "docs/openapi.json is stale: run `paytabs-guard openapi --json docs/openapi.json "
        "--markdown docs/api.md`"
    )
    assert (DOCS / "api.md").read_text() == render_markdown(document), "docs/api.md is stale"


def test_every_operation_is_in_the_reference() -> None:
    text = (DOCS / "api.md").read_text()
    for path, item in openapi_document()["paths"].items():  # type: ignore[attr-defined]
        for method in item:
            assert f"`{method.upper()} {path}`" in text


def test_openapi_command_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    assert json.loads(capsys.readouterr().out)["info"]["title"].startswith("paytabs-guard")


def test_db_upgrade_migrates_the_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    assert "newest schema" in capsys.readouterr().out
    assert (tmp_path / "cli.db").stat().st_size > 0


def test_simulator_environment_points_everything_at_the_simulator() -> None:
    env = simulator_environment({}, "http://127.0.0.1:9", "http://127.0.0.1:8000")
    assert env["PAYTABS_BASE_URL"] == "http://127.0.0.1:9"
    assert env["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert env["PAYTABS_PROFILE_ID"] == "987654"
    assert env["API_KEYS"].startswith("demo_")
    assert "API_KEYS" not in simulator_environment({"API_KEYS": "mine"}, "a", "b")


WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LIVE_KEY = "SLIVEKEY99-LIVEKEY999-LIVEKEY999"  # a real profile's PayTabs key, in .env


def test_simulator_mode_names_the_operator_s_settings_it_replaces() -> None:
    """--simulator replaced PUBLIC_BASE_URL (and the PayTabs credentials) without a word: the
    console cookie lost Secure and the return URL its host, and the operator saw neither."""
    env = {
        "PUBLIC_BASE_URL": "https://shop.example",
        "PAYTABS_PROFILE_ID": "123456",
        "PAYTABS_SERVER_KEY": "SREAL-KEY-NEVER-SHOWN",
    }
    changes = simulator_environment(env, "http://127.0.0.1:9", "http://127.0.0.1:8000")
    warnings = replaced_settings(env, changes)
    assert len(warnings) == 3
    assert warnings[0].startswith("PUBLIC_BASE_URL: replaced with --simulator by http://127.0.0")
    assert any(w.startswith("PAYTABS_SERVER_KEY: replaced") for w in warnings)
    assert not any("SREAL" in w or "123456" in w for w in warnings)
    # Nothing set, or set to what --simulator sets anyway: nothing to say.
    assert replaced_settings({}, changes) == []
    assert replaced_settings({"PUBLIC_BASE_URL": "http://127.0.0.1:8000"}, changes) == []


def test_simulator_environment_leaves_the_configured_webhook_secret_alone() -> None:
    # Like PAYTABS_IP_WHITELIST and TRUSTED_PROXIES: serve decides what to keep of it.
    env = {"PAYTABS_WEBHOOK_SECRET": WHSEC, "PAYTABS_IP_WHITELIST": "10.0.0.0/8"}
    changes = simulator_environment(env, "http://127.0.0.1:9", "http://127.0.0.1:8000")
    assert "PAYTABS_WEBHOOK_SECRET" not in changes
    assert "PAYTABS_IP_WHITELIST" not in changes


def _verifier(secret: str) -> PayTabsCallbacks:
    settings = load_settings({"PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
                              "PAYTABS_WEBHOOK_SECRET": secret})  # fmt: skip
    return PayTabsCallbacks(settings.webhook_secrets, timestamp_tolerance=300)


def test_with_the_simulator_whsec_secrets_are_kept_and_its_key_verifies() -> None:
    secret, warnings = simulator_webhook_secret([SecretStr(LIVE_KEY), SecretStr(WHSEC)])
    verifier = _verifier(secret)
    raw = b'{"tran_ref":"TST1"}'
    now = datetime.now(UTC)
    # A relay's Standard Webhooks delivery signed with the configured secret verifies...
    verifier.verify_callback(raw, standard.headers_for("msg_1", raw, WHSEC, now), [], now=now)
    # ...and so does a callback the simulator signs with its own server key.
    verifier.verify_callback(raw, {}, [sign_body(raw, DEFAULT_SERVER_KEY)], now=now)
    # The real profile's key signs nothing the simulator sends: left out, and said so.
    with pytest.raises(InvalidCallbackSignature):
        verifier.verify_callback(raw, {}, [sign_body(raw, LIVE_KEY)], now=now)
    assert len(warnings) == 1
    assert "PAYTABS_WEBHOOK_SECRET" in warnings[0]
    assert "1 whsec_ secret(s) kept" in warnings[0]
    assert LIVE_KEY not in warnings[0]
    assert WHSEC not in warnings[0]


def test_with_the_simulator_and_no_configured_secret_nothing_is_warned() -> None:
    secret, warnings = simulator_webhook_secret(())
    assert secret == DEFAULT_SERVER_KEY
    assert warnings == []
    assert "warning" not in banner("http://s", "http://sim", "demo_x", warnings)


def test_serve_with_the_simulator_takes_a_payment_and_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PAYTABS_", "API_KEYS", "DATABASE_URL", "REDIS_URL"))
    }
    env |= {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "API_KEYS": "k-12345678",
        # A relay's whsec_ secret is kept; a real profile's PayTabs key is not (and said so).
        "PAYTABS_WEBHOOK_SECRET": f"{LIVE_KEY},{WHSEC}",
    }
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", "serve", "--simulator",
         "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        created = httpx.post(
            f"{base}/payments/v2/create",
            json={"amount": "12.50", "currency": "SAR", "description": "Order 1"},
            headers={"Authorization": "Bearer k-12345678", "Idempotency-Key": "cli-test-key-1"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        assert created.json()["redirect_url"].startswith("http://127.0.0.1:")
        # A Standard Webhooks delivery signed with the configured secret is verified and applied.
        raw = encode(transaction(created.json()))
        headers = standard.headers_for("msg_serve_1", raw, WHSEC, datetime.now(UTC))
        delivered = httpx.post(f"{base}/payments/v2/webhook", content=raw, timeout=10,
                               headers=headers | {"Content-Type": "application/json"})  # fmt: skip
        assert delivered.status_code == 200, delivered.text
        assert delivered.json()["outcome"] == "processed"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"{base}/docs" in out
    assert "curl" in out
    # The operator's key is a secret: the banner says where it is, and neither it nor the
    # logs ever show it.
    assert "one of API_KEYS" in out
    assert "k-12345678" not in out
    assert "k-12345678" not in err
    assert "warning: PAYTABS_WEBHOOK_SECRET: 1 PayTabs key(s) not used with --simulator" in out
    for secret in (LIVE_KEY, WHSEC):
        assert secret not in out + err
    # One format per stream: the banner on stdout, JSON log lines on stderr; the simulator's
    # plain uvicorn lines and alembic's plugin list stay out of both.
    assert "INFO:" not in out + err
    assert "setup plugin" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert json.loads(line)["event"], line
    assert "Running upgrade" in err  # the migrations themselves are still logged
    # A request is logged once, by the service's access line: not again by uvicorn's access
    # log nor by httpx for the PayTabs call it made.
    request_id = created.headers["x-request-id"]
    about_it = [json.loads(line) for line in lines if request_id in line]
    assert [(r["logger"], r["event"]) for r in about_it] == [("paytabs_guard.access", "request")]


def test_the_banner_shows_only_a_key_serve_generated() -> None:
    generated = banner("http://127.0.0.1:8000", "http://127.0.0.1:9", demo_key="demo_abc123")
    assert "demo_abc123" in generated
    assert "Bearer demo_abc123" in generated
    operators = banner("http://127.0.0.1:8000", None)
    assert "one of API_KEYS" in operators
    assert "demo API key" not in operators
    # The console is on the banner too, with the admin key to open it when serve made one.
    assert "http://127.0.0.1:8000/console   (an admin key: ADMIN_API_KEYS)" in operators
    demo = banner("http://s", "http://sim", "demo_x", demo_admin_key="demo_admin_y")
    assert "http://s/console   (sign in with demo_admin_y, generated for this run)" in demo


def test_serve_with_the_simulator_makes_the_keys_it_needs_and_keeps_the_operators() -> None:
    made = simulator_environment({}, "http://sim", "http://s")
    assert made["API_KEYS"].startswith("demo_")
    assert made["ADMIN_API_KEYS"].startswith("demo_admin_")
    assert made["API_KEYS"] != made["ADMIN_API_KEYS"]
    kept = simulator_environment({"API_KEYS": "a" * 24, "ADMIN_API_KEYS": "b" * 24}, "x", "y")
    assert "API_KEYS" not in kept
    assert "ADMIN_API_KEYS" not in kept


def test_serve_on_a_busy_port_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYTABS_")}
        env |= {"API_KEYS": "", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}"}
        done = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "paytabs_guard.entrypoints.cli", "serve", "--simulator",
             "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""  # no banner, no generated key for a service that never ran
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {port} is already in use" in lines[0]
    assert not (tmp_path / "busy.db").exists()


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a clean environment plus ``env``, in an empty directory."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAYTABS_", "API_KEYS", "ADMIN_API_KEYS", "EVENTS_", "DATABASE_URL"))
    }
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", *args],
        cwd=tmp_path, env=clean | env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_config_check_refuses_what_serve_refuses(tmp_path: Path) -> None:
    bare = _cli(tmp_path, "config", "check")
    assert bare.returncode == 2
    assert "configuration OK" not in bare.stdout
    assert "PAYTABS_PROFILE_ID: required" in bare.stderr
    assert "PAYTABS_SERVER_KEY: required" in bare.stderr
    credentials = {"PAYTABS_PROFILE_ID": "987654", "PAYTABS_SERVER_KEY": "SXXXXXXXXX-XXXXXXXXXX"}
    bad_secret = _cli(
        tmp_path, "config", "check", **credentials, PAYTABS_WEBHOOK_SECRET="whsec_!!notbase64"
    )
    assert bad_secret.returncode == 2
    assert "PAYTABS_WEBHOOK_SECRET" in bad_secret.stderr
    assert "notbase64" not in bad_secret.stderr  # the secret itself is never echoed
    good = _cli(tmp_path, "config", "check", **credentials, API_KEYS="k-12345678")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("configuration OK")
    no_keys = _cli(tmp_path, "config", "check", **credentials)
    assert no_keys.returncode == 0
    assert "API_KEYS" in no_keys.stderr
    # A key short enough to guess is named by its place, never shown; long ones say nothing.
    keys = {
        "API_KEYS": "shop-key-of-32-characters",
        "ADMIN_API_KEYS": "long-admin-key-0123456,admin1",
    }
    weak = _cli(tmp_path, "config", "check", **credentials, **keys)
    assert weak.returncode == 0
    assert "warning: ADMIN_API_KEYS: key 2 of 2 is shorter than 20 characters" in weak.stderr
    assert "admin1" not in weak.stderr
    assert "API_KEYS: key" not in weak.stderr.replace("ADMIN_API_KEYS: key", "")
    # A key that is the server key could sign callbacks; one in both lists is an admin's.
    server = credentials["PAYTABS_SERVER_KEY"]
    same = _cli(tmp_path, "config", "check", **credentials, API_KEYS=server, ADMIN_API_KEYS=server)
    assert "is the PayTabs server key" in same.stderr
    assert "is in ADMIN_API_KEYS too" in same.stderr
    assert server not in same.stderr


def test_a_misspelt_setting_is_named_with_the_one_it_meant(tmp_path: Path) -> None:
    """A misspelt name was ignored without a word: here the server key looked unset ("required")
    though the operator had set it, and the breaker ran on the threshold's default."""
    (tmp_path / ".env").write_text("PAYTABS_PROFILEID=987654\n", encoding="utf-8")
    typo = _cli(
        tmp_path,
        "config",
        "check",
        PAYTABS_SERVERKEY="SXXXXXXXXX-XXXXXXXXXX",
        CIRCUIT_BREAKER_THRESHOLD="20",
        PAYTABS_FOO="1",
    )
    assert typo.returncode == 2
    lines = typo.stderr.splitlines()
    assert "configuration error: PAYTABS_SERVER_KEY: required" in typo.stderr
    for wrong, meant in (
        ("PAYTABS_SERVERKEY", "PAYTABS_SERVER_KEY"),
        ("PAYTABS_PROFILEID", "PAYTABS_PROFILE_ID"),  # from the .env file
        ("CIRCUIT_BREAKER_THRESHOLD", "CIRCUIT_BREAKER_ERROR_THRESHOLD"),
    ):
        assert any(
            line.startswith(f"warning: {wrong}: not a setting") and line.endswith(f"{meant}?")
            for line in lines
        ), typo.stderr
    assert any(line.startswith("warning: PAYTABS_FOO: not a setting") for line in lines)
    assert "SXXXXXXXXX" not in typo.stderr  # names only, never a value
    # Other programs' variables, and ones merely like ours, say nothing.
    (tmp_path / ".env").unlink()
    quiet = _cli(
        tmp_path,
        "config",
        "check",
        PAYTABS_PROFILE_ID="987654",
        PAYTABS_SERVER_KEY="SXXXXXXXXX-XXXXXXXXXX",
        API_KEYS="shop-key-of-32-characters-long!!",
        PUBLIC_BASE_URL="https://shop.example",
        OTEL_SERVICE_NAME="shop",
        REDIS_HOST="cache",
        TEST_DATABASE_URL="postgresql://x",
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "warning" not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({"PUBLIC_BASE_URL": "http://shop.example"}, "is not HTTPS"),
        ({"PUBLIC_BASE_URL": "https://shop.example:8443"}, "has a port"),
        ({"PUBLIC_BASE_URL": "https://127.0.0.1"}, "is not a public address"),
        ({"PUBLIC_BASE_URL": "https://10.1.2.3"}, "is not a public address"),
        ({}, "is not HTTPS"),  # the default, http://127.0.0.1:8000
        ({"PUBLIC_BASE_URL": "https://shop.example"}, None),
        # a simulator (or any other PAYTABS_BASE_URL) takes loopback HTTP URLs
        ({"PAYTABS_BASE_URL": "http://127.0.0.1:8090"}, None),
    ],
)
def test_config_check_warns_of_a_public_url_paytabs_cannot_deliver_to(
    tmp_path: Path, env: dict[str, str], warned: str | None
) -> None:
    """Over HTTP PayTabs sends the callback with an empty body and the customer back without
    the signed result; with a port or a private address it delivers nothing. The simulator
    takes such URLs (docs/simulator.md, choice 11), so only the real PayTabs found out."""
    credentials = {"PAYTABS_PROFILE_ID": "987654", "PAYTABS_SERVER_KEY": "SXXXXXXXXX-XXXXXXXXXX"}
    keys = {"API_KEYS": "shop-key-of-32-characters-000000"}
    done = _cli(tmp_path, "config", "check", **credentials, **keys, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("configuration OK")
    if warned is None:
        assert "PUBLIC_BASE_URL" not in done.stderr
    else:
        assert "warning: PUBLIC_BASE_URL: " in done.stderr
        assert warned in done.stderr
