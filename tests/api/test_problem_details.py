"""RFC 9457 problem responses and the webhook rejection catalogue: fields, headers, no leaks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import get_args

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.entrypoints.api import strict_json
from paytabs_guard.entrypoints.api.problems import (
    MEDIA_TYPE,
    Problem,
    forbidden_source,
    invalid_content_length,
    invalid_payload,
    invalid_signature,
    method_not_allowed,
    payload_too_large,
    problem_handler,
    problem_response,
    rate_limited,
    repeated_content_type,
    unsupported_media_type,
)

CATALOGUE: dict[str, tuple[Callable[[], Problem], int]] = {
    "payload-too-large": (lambda: payload_too_large(65536), 413),
    "unsupported-media-type": (unsupported_media_type, 415),
    "method-not-allowed": (method_not_allowed, 405),
    "invalid-content-length": (invalid_content_length, 400),
    "invalid-content-type": (repeated_content_type, 400),
    "forbidden-source": (forbidden_source, 403),
    "invalid-signature": (lambda: invalid_signature("no_matching_signature"), 401),
    "invalid-payload": (lambda: invalid_payload("duplicate_key"), 400),
    "rate-limited": (lambda: rate_limited(12.2), 429),
}


def body_of(response: Response) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(bytes(response.body))
    return parsed


@pytest.mark.parametrize("slug", sorted(CATALOGUE))
def test_every_catalogue_entry_is_a_complete_problem(slug: str) -> None:
    build, status = CATALOGUE[slug]
    response = problem_response(build(), request_id="req-123")
    body = body_of(response)
    assert response.status_code == status
    assert response.headers["content-type"] == MEDIA_TYPE
    assert response.headers["cache-control"] == "no-store"
    assert body["type"] == f"https://paytabs-guard.dev/problems/{slug}"
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert len(body["detail"]) > 10
    assert body["request_id"] == "req-123"
    assert list(body)[:4] == ["type", "title", "status", "detail"]


def test_rate_limited_carries_retry_after_in_whole_seconds() -> None:
    response = problem_response(rate_limited(12.2))
    assert response.headers["retry-after"] == "13"
    assert body_of(response)["retry_after"] == 13
    assert problem_response(rate_limited(0.0)).headers["retry-after"] == "1"


def test_unauthorised_names_a_scheme_and_the_others_name_what_is_allowed() -> None:
    assert "www-authenticate" in problem_response(invalid_signature("mismatch")).headers
    assert problem_response(method_not_allowed(["POST"])).headers["allow"] == "POST"
    accepted = problem_response(unsupported_media_type()).headers["accept-post"]
    assert accepted == "application/json"


def test_every_verifier_reason_has_a_specific_detail() -> None:
    generic = invalid_signature("something-else").detail
    for reason in get_args(standard.Reason):
        if reason != "no_secret_configured":  # our misconfiguration: not a 401
            assert invalid_signature(reason).detail != generic, reason
    for reason in ("missing", "malformed", "mismatch"):  # adapters.paytabs.signature
        assert invalid_signature(reason).detail != generic, reason
    for reason in get_args(strict_json.Reason):
        assert invalid_payload(reason).detail != invalid_payload("other").detail, reason


def test_unknown_reasons_are_not_echoed() -> None:
    hostile = "<script>alert(1)</script>"
    for problem in (invalid_signature(hostile), invalid_payload(hostile)):
        text = bytes(problem_response(problem).body).decode()
        assert "script" not in text
        assert problem.extensions["reason"] == "invalid"


def test_no_secret_signature_or_body_appears_in_any_rejection() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    body = b'{"test": 2432232314}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": signature}
    with pytest.raises(standard.WebhookVerificationError) as caught:
        standard.verify(headers, body, [secret], tolerance_seconds=10**10, now=1)
    rendered = [
        bytes(problem_response(build()).body).decode() for build, _ in CATALOGUE.values()
    ] + [bytes(problem_response(invalid_signature(caught.value.reason)).body).decode()]
    for text in rendered:
        for leak in (secret, "MfKQ9r8G", signature, "g0hM9SsE", "2432232314"):
            assert leak not in text


def test_extensions_may_not_redefine_standard_members() -> None:
    with pytest.raises(ValueError, match="status"):
        Problem("x", "X", 400, "Fix it.", extensions={"status": 200})


def test_a_problem_is_a_client_or_server_error() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Problem("x", "X", 200, "Fine.")


def test_instance_is_included_only_when_given() -> None:
    assert "instance" not in Problem("x", "X", 400, "Fix it.").to_dict()
    with_instance = Problem("x", "X", 400, "Fix it.", instance="/payments/v2/webhook#1")
    assert with_instance.to_dict()["instance"] == "/payments/v2/webhook#1"


def test_non_ascii_detail_is_utf8_json() -> None:
    response = problem_response(Problem("x", "X", 400, "Send the name as محمد."))
    assert "محمد" in bytes(response.body).decode("utf-8")


@pytest.mark.anyio
async def test_the_exception_handler_renders_raised_problems_with_the_request_id() -> None:
    async def endpoint(request: Request) -> Response:
        request.state.request_id = "req-9"
        raise forbidden_source()

    app = Starlette(
        routes=[Route("/hook", endpoint, methods=["POST"])],
        exception_handlers={Problem: problem_handler},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/hook")
    assert response.status_code == 403
    assert response.headers["content-type"] == MEDIA_TYPE
    assert response.json()["request_id"] == "req-9"
