"""Every 422 is RFC 9457 problem+json, and the API description says so for every route.

FastAPI describes a route's 422 as its own ``HTTPValidationError`` JSON unless the route says
otherwise; the service answers every validation error as a problem, so a client generated
from the description would parse the wrong shape.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from paytabs_guard.entrypoints.api.app import openapi_document

from .api_support import Service

pytestmark = pytest.mark.anyio


def test_no_route_is_described_with_fastapis_own_validation_error() -> None:
    document = json.dumps(openapi_document())
    assert "HTTPValidationError" not in document
    for path, operations in openapi_document()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            answer = operation["responses"].get("422")
            if answer is not None:
                assert list(answer["content"]) == ["application/problem+json"], (method, path)


async def test_the_routes_that_lacked_it_answer_422_as_a_problem(service: Service) -> None:
    created = await service.api.post(
        "/payments/v2/create",
        json={"amount": "1.00", "currency": "SAR", "description": "x"},
        headers={"Idempotency-Key": "validation-answers-1"},
    )
    payment_id = created.json()["id"]
    answers = [
        await service.api.get("/payments/v2/stats", params={"bogus": "1"}),
        await service.api.get(f"/payments/v2/{payment_id}", params={"bogus": "1"}),
        await service.api.get(f"/payments/v2/process/{payment_id}", params={"bogus": "1"}),
        await service.api.get(f"/payments/v2/{payment_id}/events", params={"bogus": "1"}),
        await service.admin.post("/payments/v2/circuit-breaker/create/explode"),
    ]
    for answer in answers:
        assert answer.status_code == 422, (answer.request.url, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["status"] == 422


async def test_what_the_front_door_answers_a_write_is_described_for_it(service: Service) -> None:
    """A malformed Idempotency-Key, a body that is not JSON or breaks the strict rules: real
    answers a generated client must find described (it drops an undescribed status)."""
    paths: Any = openapi_document()["paths"]
    created = await service.api.post(
        "/payments/v2/create",
        json={"amount": "1.00", "currency": "SAR", "description": "x"},
        headers={"Idempotency-Key": "front-door-answers-1"},
    )
    refund = f"/payments/v2/{created.json()['id']}/refund"
    body = {"amount": "1.00", "currency": "SAR", "description": "x"}
    json_type = {"content-type": "application/json"}
    answers = [
        (
            "/payments/v2/create",
            "/payments/v2/create",
            await service.api.post(
                "/payments/v2/create", json=body, headers={"Idempotency-Key": "short"}
            ),
        ),
        (
            "/payments/v2/create",
            "/payments/v2/create",
            await service.api.post(
                "/payments/v2/create",
                content=b'{"amount": "1.00", "amount": "2.00"}',
                headers={**json_type, "Idempotency-Key": "front-door-answers-2"},
            ),
        ),
        (
            "/payments/v2/{payment_id}/refund",
            refund,
            await service.api.post(
                refund,
                content=b"amount=1.00",
                headers={"content-type": "text/plain", "Idempotency-Key": "front-door-answers-3"},
            ),
        ),
        (
            "/payments/v2/events/dead-letters/replay",
            "/payments/v2/events/dead-letters/replay",
            await service.admin.post(
                "/payments/v2/events/dead-letters/replay",
                content=b"{}",
                headers={"content-type": "text/plain"},
            ),
        ),
    ]
    for template, url, answer in answers:
        assert answer.status_code in (400, 415), (url, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        described = paths[template]["post"]["responses"]
        assert str(answer.status_code) in described, (url, answer.status_code)
        problem = described[str(answer.status_code)]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/ProblemOut"}
