"""A new user's first create: the README's and the banner's curl run as written (with only what
every machine has), and a create without an Idempotency-Key works but warns."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import anyio
import pytest

from paytabs_guard.entrypoints.api.idempotency import MISSING_KEY_WARNING
from paytabs_guard.entrypoints.serve import banner

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
