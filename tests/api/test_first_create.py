"""A new user's first create: the README's and the banner's curl run as written (with only what
every machine has), and a create without an Idempotency-Key works but warns."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr
from rich.console import Console

from paytabs_guard.entrypoints.api.idempotency import MISSING_KEY_WARNING
from paytabs_guard.entrypoints.demo import where_to_look
from paytabs_guard.entrypoints.serve import banner
from paytabs_guard.settings import load_settings

from .api_support import API_KEY, Service, new_key

pytestmark = pytest.mark.anyio
README = Path(__file__).parents[2] / "README.md"
BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


def _curl_block(text: str) -> str:
    """The shell text from ``curl`` to the line with ``-d`` (continuation lines included)."""
    match = re.search(r"curl -s -X POST .*?-d '[^\n]*'", text, flags=re.DOTALL)
    assert match, "no curl command found"
    return match.group(0)


async def _run_shell(command: str) -> tuple[int, dict[str, str]]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    # -w appends the status; the body is JSON on the line before.
    done = await anyio.run_process(
        ["bash", "-c", command.replace("curl -s", "curl -s -w '\\n%{http_code}'", 1)],
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    body, _, status = done.stdout.decode().rpartition("\n")
    return int(status), json.loads(body)


def _idempotency(service: Service, outcome: str) -> float:
    return service.metric("paytabs_guard_idempotency_requests_total", outcome=outcome)


async def test_the_readme_curl_runs_as_written_and_sends_a_key(service: Service) -> None:
    command = _curl_block(README.read_text())
    assert "uuidgen" not in command
    command = command.replace("http://127.0.0.1:8000", service.url).replace(
        "<the demo key it printed>", API_KEY
    )
    status, payment = await _run_shell(command)
    assert status == 201, payment
    assert payment["state"] == "awaiting_customer"
    assert _idempotency(service, "new") == 1
    assert _idempotency(service, "missing") == 0


async def test_the_banner_curl_runs_as_written_and_sends_a_key(service: Service) -> None:
    command = _curl_block(banner(service.url, None, demo_key=API_KEY))
    status, payment = await _run_shell(command)
    assert status == 201, payment
    assert _idempotency(service, "new") == 1


def _demo_panel(
    service_url: str, configured: dict[str, str], payment_id: str | None = None
) -> list[str]:
    """The demo's last panel as an 80-column terminal shows it, borders taken off."""
    running = load_settings(configured).model_copy(
        update={
            "api_keys": (SecretStr(API_KEY),),
            "admin_api_keys": (SecretStr("admin-generated-0123"),),
        }
    )
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    console.print(where_to_look(service_url, "http://127.0.0.1:9", load_settings(configured),
                                running, payment_id=payment_id))  # fmt: skip
    rows = out.getvalue().splitlines()
    assert all(len(row) <= 80 for row in rows)
    return [row.strip("│╭╮╰╯─ ").rstrip() for row in rows]


async def test_the_demo_curl_survives_80_columns_and_runs(service: Service) -> None:
    payment = await service.create()
    rows = _demo_panel(service.url, {}, payment["id"])
    # The console, and the story's payment to open in it, both answer (a sign-in page).
    for url in (f"{service.url}/console", f"{service.url}/console/payments/{payment['id']}"):
        assert any(url in row for row in rows), rows
        assert (await service.anonymous.get(url)).status_code == 401
    assert not any(row.endswith("-H") for row in rows)  # no option cut from its value
    command = _curl_block("\n".join(rows))
    assert all(line.endswith("\\") for line in command.splitlines()[:-1]), command
    assert "admin-generated-0123" in "\n".join(rows)  # the generated admin key is shown
    status, payment = await _run_shell(command)
    assert status == 201, payment


def test_the_demo_never_shows_keys_it_did_not_generate() -> None:
    rows = "\n".join(
        _demo_panel(
            "http://127.0.0.1:8000", {"API_KEYS": API_KEY, "ADMIN_API_KEYS": "admin-mine-0123"}
        )
    )
    assert API_KEY not in rows
    assert "admin-generated-0123" not in rows
    assert "one of API_KEYS" in rows


async def test_a_create_without_a_key_works_but_warns(service: Service) -> None:
    unkeyed = await service.api.post("/payments/v2/create", json=BODY)
    assert unkeyed.status_code == 201
    assert unkeyed.headers["warning"] == MISSING_KEY_WARNING
    assert "Idempotency-Key" in unkeyed.headers["warning"]
    assert _idempotency(service, "missing") == 1
    keyed = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    assert keyed.status_code == 201
    assert "warning" not in keyed.headers
