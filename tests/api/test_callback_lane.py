"""The PayTabs callback's short way in (``callbacks.answer_callback``): the front door hands it
to the receiver past FastAPI's router. It must still get what every request gets from the
request middleware, and answer like the route it skips."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from paytabs_guard.entrypoints.api.runtime import Runtime

from .api_support import Service, deliver, encode, signed_headers, transaction

pytestmark = pytest.mark.anyio


def _lines(captured: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]


async def test_a_callback_keeps_its_request_id_access_line_and_route_label(
    service: Service, captured: io.StringIO
) -> None:
    payment = await service.create()
    response = await deliver(
        service.anonymous, transaction(payment), **{"X-Request-ID": "paytabs-delivery-7"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "outcome": "processed"}
    assert response.headers["x-request-id"] == "paytabs-delivery-7"
    assert (await service.get(payment["id"]))["state"] == "completed"

    lines = _lines(captured)
    access = [line for line in lines if line.get("logger") == "paytabs_guard.access"]
    callback = [line for line in access if line.get("route") == "/payments/v2/webhook"]
    assert len(callback) == 1, access
    assert callback[0]["status"] == 200
    assert callback[0]["method"] == "POST"
    assert callback[0]["request_id"] == "paytabs-delivery-7"
    # One line per request: the access line says what the callback did.
    assert [line for line in lines if line.get("request_id") == "paytabs-delivery-7"] == callback
    assert callback[0]["outcome"] == "applied"
    assert callback[0]["state"] == "completed"
    assert callback[0]["payment_id"] == payment["id"]
    assert callback[0]["tran_ref"] == payment["tran_ref"]
    assert callback[0]["response_status"] == "A"

    labels = {"route": "/payments/v2/webhook", "method": "POST", "status_class": "2xx"}
    assert service.metric("paytabs_guard_http_requests_total", **labels) == 1.0


async def test_an_error_past_the_receivers_checks_is_a_500_problem_logged_once(
    service: Service, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = service.app.state.runtime
    assert isinstance(runtime, Runtime)

    async def broken(_request: Request) -> Response:
        raise RuntimeError("the receiver broke")

    monkeypatch.setattr(runtime.webhook, "receive", broken)
    payment = await service.create()
    response = await deliver(service.anonymous, transaction(payment))

    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["request_id"] == response.headers["x-request-id"]
    assert "the receiver broke" not in response.text
    errors = [line for line in _lines(captured) if line.get("event") == "unhandled error"]
    assert len(errors) == 1
    assert errors[0]["route"] == "/payments/v2/webhook"
    labels = {"route": "/payments/v2/webhook", "method": "POST", "status_class": "5xx"}
    assert service.metric("paytabs_guard_http_requests_total", **labels) == 1.0


async def test_only_the_exact_path_takes_the_short_way(service: Service) -> None:
    # A trailing slash is another path: a signed callback sent there is not applied. A query
    # string does not change the path: the callback is read as the route would read it.
    payment = await service.create()
    raw = encode(transaction(payment))
    headers = signed_headers(raw)
    elsewhere = await service.anonymous.post("/payments/v2/webhook/", content=raw, headers=headers)
    assert elsewhere.status_code != 200
    assert (await service.get(payment["id"]))["state"] == "awaiting_customer"

    queried = await service.anonymous.post(
        "/payments/v2/webhook?source=paytabs", content=raw, headers=headers
    )
    assert queried.status_code == 200, queried.text
    assert (await service.get(payment["id"]))["state"] == "completed"
