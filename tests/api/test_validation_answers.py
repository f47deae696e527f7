"""Every 422 is RFC 9457 problem+json, and the API description says so for every route.

FastAPI describes a route's 422 as its own ``HTTPValidationError`` JSON unless the route says
otherwise; the service answers every validation error as a problem, so a client generated
from the description would parse the wrong shape.
"""

from __future__ import annotations

import json

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
