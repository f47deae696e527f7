"""The merchant API's front door over real HTTP: authentication before the body is read, and a
body limit that refuses a declared size unread and cuts a streamed body at the limit."""

from __future__ import annotations

import pytest

from .api_support import API_KEY, Service
from .front_door_support import send_chunked_unfinished, send_raw

pytestmark = pytest.mark.anyio

CREATE = "/payments/v2/create"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}
ONE_GIB = str(1 << 30)


def _limit(service: Service) -> int:
    return service.container.settings.api_max_body_bytes


async def test_a_declared_oversized_body_with_no_body_following_is_413_at_once(
    service: Service,
) -> None:
    headers = AUTH | JSON | {"Content-Length": ONE_GIB, "Idempotency-Key": "front-door-1"}
    answer = await send_raw(service.url, "POST", CREATE, headers)
    assert answer.status == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["max_bytes"] == _limit(service)
    assert str(_limit(service)) in answer.json()["detail"]
    assert answer.seconds < 0.1, answer.seconds
    assert await service.inbox_keys() == 0


async def test_without_credentials_a_declared_huge_body_is_401_at_once(service: Service) -> None:
    answer = await send_raw(service.url, "POST", CREATE, JSON | {"Content-Length": ONE_GIB})
    assert answer.status == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.seconds < 0.1, answer.seconds


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key-000000", "Basic dXNlcjpwYXNz", "Bearer"],
    ids=["missing", "unknown-key", "basic", "empty-bearer"],
)
async def test_authentication_comes_before_parsing(
    service: Service, authorization: str | None
) -> None:
    headers = JSON | ({"Authorization": authorization} if authorization else {})
    for body in (b"{not json", b'{"amount": 12.5}', b"[]"):
        response = await service.anonymous.post(CREATE, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
    # The same malformed body with a key is the parser's business again.
    authed = await service.anonymous.post(CREATE, content=b"{not json", headers=AUTH | JSON)
    assert authed.status_code == 422


async def test_a_streamed_oversized_body_is_cut_at_the_limit(service: Service) -> None:
    limit = _limit(service)
    # 16 x the limit is offered and the final chunk never sent: the answer can only come
    # from a server that stopped reading at the limit.
    answer = await send_chunked_unfinished(
        service.url, CREATE, AUTH | JSON | {"Idempotency-Key": "front-door-2"}, total=16 * limit
    )
    assert answer.status == 413
    assert answer.json()["max_bytes"] == limit


async def test_a_body_at_the_limit_still_reaches_the_api(service: Service) -> None:
    limit = _limit(service)
    padding = "x" * (limit - 200)
    body = (
        '{"amount": "12.50", "currency": "SAR", "description": "Order 1",'
        f' "metadata": {{"p": "{padding}"}}}}'
    ).encode()
    assert len(body) <= limit
    response = await service.api.post(
        CREATE, content=body, headers=JSON | {"Idempotency-Key": "front-door-3"}
    )
    # Whatever the API thinks of a long metadata value, it parsed the body (not 413/401).
    assert response.status_code not in (401, 413), response.text
    over = await service.api.post(
        CREATE, content=body + b" " * (limit - len(body) + 1), headers=JSON
    )
    assert over.status_code == 413
