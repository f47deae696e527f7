"""The API description says what the service takes and answers, so a client generated from it
(or a fuzzer driven by it) sends what the service accepts and parses what it gets back.

Each test reads a claim from ``/openapi.json`` and checks it against the running service.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from paytabs_guard.domain.events import EVENT_TYPES
from paytabs_guard.entrypoints.api.app import openapi_document
from paytabs_guard.entrypoints.api.reference import render_markdown

from .api_support import Service, deliver, transaction

pytestmark = pytest.mark.anyio

DOCUMENT: Any = openapi_document()
PATHS: Any = DOCUMENT["paths"]


def _operations() -> list[tuple[str, str, Any]]:
    return [
        (path, method, operation)
        for path, item in PATHS.items()
        for method, operation in item.items()
    ]


def test_no_parameter_is_described_as_possibly_null() -> None:
    """A query parameter or a header is left out or sent as text: ``anyOf [string, null]``
    made generators send the text "null", and hid the key's pattern from them."""
    for path, method, operation in _operations():
        for parameter in operation.get("parameters", ()):
            branches = parameter["schema"].get("anyOf", ())
            assert {"type": "null"} not in branches, (method, path, parameter["name"])


async def test_a_nul_in_any_url_gets_the_400_every_operation_describes(service: Service) -> None:
    for path, method, operation in _operations():
        answer = operation["responses"].get("400")
        assert answer is not None, (method, path)
        assert "application/problem+json" in answer["content"], (method, path)
    urls = ("/payments/v2/stats?window=%00", "/livez?x=%00", "/payments/v2/events?cursor=%00",
            "/payments/v2/return?tranRef=%00")  # fmt: skip
    for url in urls:
        response = await service.api.get(url)
        assert response.status_code == 400, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/invalid-url")


async def test_the_described_idempotency_key_is_the_one_the_service_takes(
    service: Service,
) -> None:
    parameter = next(
        p
        for p in PATHS["/payments/v2/create"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    )
    schema = parameter["schema"]
    assert schema["type"] == "string"
    pattern = re.compile(schema["pattern"])
    keys = [
        "k" * 7,
        "k" * 8,
        "k" * 255,
        "k" * 256,
        "with space-key",
        "tab\tinside-key",
        "caf\u00e9-latin1-key",
        "~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
    ]
    for n, key in enumerate(keys):
        unique = key if len(key) < 8 else key[:-2] + f"{n:02d}"
        response = await service.api.post(
            "/payments/v2/create",
            json={"amount": "1.00", "currency": "SAR", "description": "key check"},
            headers={b"Idempotency-Key": unique.encode("latin-1")},  # as sent on the wire
        )
        described_valid = pattern.fullmatch(unique) is not None
        assert (response.status_code == 201) is described_valid, (unique, response.text)
        if not described_valid:
            assert response.status_code == 400
            assert response.json()["type"].endswith("/invalid-idempotency-key")


async def test_event_types_a_client_sends_are_described_as_the_known_ones(
    service: Service,
) -> None:
    known = sorted(EVENT_TYPES)
    feed = next(p for p in PATHS["/payments/v2/events"]["get"]["parameters"] if p["name"] == "type")
    assert feed["schema"]["items"]["enum"] == known
    letters = PATHS["/payments/v2/events/dead-letters"]["get"]["parameters"]
    assert next(p for p in letters if p["name"] == "type")["schema"]["enum"] == known
    replay = DOCUMENT["components"]["schemas"]["ReplayIn"]["properties"]["type"]
    assert {"type": "string", "enum": known} in replay["anyOf"]
    for name in known:
        response = await service.api.get("/payments/v2/events", params={"type": name})
        assert response.status_code == 200, (name, response.text)
    typo = await service.api.get("/payments/v2/events", params={"type": "payment.complete"})
    assert typo.status_code == 422
    assert "payment.completed" in typo.json()["detail"]


async def test_the_callback_body_is_described_with_the_fields_the_receiver_requires(
    service: Service,
) -> None:
    operation = PATHS["/payments/v2/webhook"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {p["name"] for p in operation["parameters"]} == {"Signature"}
    created = await service.api.post(
        "/payments/v2/create",
        json={"amount": "3.00", "currency": "SAR", "description": "described callback"},
        headers={"Idempotency-Key": "described-callback-1"},
    )
    assert created.status_code == 201, created.text
    body = transaction(created.json())
    assert set(schema["properties"]) <= set(body) | {"previous_tran_ref"}
    for field in schema["required"]:
        missing = {name: value for name, value in body.items() if name != field}
        response = await deliver(service.anonymous, missing)
        assert response.status_code == 400, (field, response.text)
    accepted = await deliver(service.anonymous, body)
    assert accepted.status_code == 200, accepted.text
    form = PATHS["/payments/v2/return"]["post"]["requestBody"]["content"]
    assert form["application/x-www-form-urlencoded"]["schema"]["required"] == ["signature"]


def test_the_reference_names_each_parameters_and_fields_limits() -> None:
    # A client reading docs/api.md learned that limit is an integer, not that 101 is a 422.
    document = {
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/x": {
                "get": {
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer",
                         "minimum": 1, "maximum": 100, "default": 50}},
                        {"name": "who", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[A-Z]{2}$"}},
                    ],
                    "responses": {},
                }
            }
        },
        "components": {"schemas": {"In": {"type": "object", "properties": {
            "note": {"anyOf": [{"type": "string", "maxLength": 128}, {"type": "null"}],
                     "description": "Free text"},
        }}}},
    }  # fmt: skip
    text = render_markdown(document)
    assert "| `limit` | query | integer | no | 1 to 100; default 50 |" in text
    assert "| `who` | path | string | yes | Pattern `^[A-Z]{2}$` |" in text
    assert "| `note` | string or null | no | Free text (0 to 128 characters) |" in text


async def test_every_answer_of_the_return_form_is_described(service: Service) -> None:
    """The form POST reads its body itself, so the front door's answers are not added to it:
    its 413 and 408 (a page, as all its answers) were not described, and its 415 was described
    with no content at all, though it is a page too."""
    responses = PATHS["/payments/v2/return"]["post"]["responses"]
    too_large = "signature=" + "a" * 70_000  # past WEBHOOK_MAX_BODY_BYTES (64 KiB)
    for status, content_type, body in (
        (413, "application/x-www-form-urlencoded", too_large),
        (415, "text/plain", "signature=a"),
    ):
        response = await service.anonymous.post(
            "/payments/v2/return", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert "text/html" in responses[str(status)].get("content", {}), status
    assert "text/html" in responses["408"]["content"]  # the same page, for a body too slow
