"""The merchant API's front door over real HTTP: authentication before the body is read, and a
body limit that refuses a declared size unread and cuts a streamed body at the limit."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from urllib.parse import urlsplit

import httpx
import pytest

from paytabs_guard.entrypoints.api.cursors import encode_cursor
from paytabs_simulator.server import RunningSimulator

from .api_support import API_KEY, FAST_OPTIONS, Service, new_key, running_service
from .front_door_support import (
    read_answer,
    request_head,
    send_chunked_unfinished,
    send_raw,
    until_seen,
)

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


_LENIENT_JSON = {
    # Python's decoder keeps the last: the service would charge 2.00 where a proxy, a log or
    # the merchant's own code saw 1.00.
    "duplicate_key": b'{"amount": "1.00", "amount": "2.00", "currency": "SAR", "description": "x"}',
    "non_finite_number": b'{"amount": NaN, "currency": "SAR", "description": "x"}',
    "too_deep": b'{"amount": "1.00", "currency": "SAR", "description": "x", "metadata": '
    + b"[" * 5000
    + b"]" * 5000
    + b"}",
    "invalid_utf8": b'{"amount": "1.00", "currency": "SAR", "description": "\xff\xfe"}',
    "lone_surrogate": b'{"amount": "1.00", "currency": "SAR", "description": "\\ud800"}',
    "bom": b'\xef\xbb\xbf{"amount": "1.00", "currency": "SAR", "description": "x"}',
    # PostgreSQL's text cannot hold U+0000: it was a 500 there.
    "nul_character": b'{"amount": "1.00", "currency": "SAR", "description": "x", '
    b'"metadata": {"order": "10\\u00001"}}',
}


@pytest.mark.parametrize("reason", sorted(_LENIENT_JSON))
async def test_json_read_leniently_elsewhere_is_refused_and_costs_nothing(
    service: Service, reason: str
) -> None:
    key = f"front-door-strict-{reason}"
    for content_type in ("application/json", "application/json; charset=utf-8"):
        response = await service.api.post(
            CREATE,
            content=_LENIENT_JSON[reason],
            headers={"Content-Type": content_type, "Idempotency-Key": key},
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/invalid-payload")
        assert problem["reason"] == reason
        assert problem["detail"]
    listed = await service.api.get("/payments/v2")
    assert listed.json()["data"] == []
    # The key was never claimed: the corrected request runs as the first with that key.
    fixed = await service.api.post(
        CREATE,
        json={"amount": "1.00", "currency": "SAR", "description": "x"},
        headers={"Idempotency-Key": key},
    )
    assert fixed.status_code == 201, fixed.text


async def test_utf16_json_is_refused_though_pythons_decoder_would_read_it(
    service: Service,
) -> None:
    body = '{"amount": "1.00", "currency": "SAR", "description": "x"}'.encode("utf-16")
    response = await service.api.post(
        CREATE, content=body, headers=JSON | {"Idempotency-Key": "front-door-utf16"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["reason"] in {"invalid_utf8", "bom"}


async def test_strict_json_covers_every_json_media_type_and_every_write(service: Service) -> None:
    payment = await service.create("5.00")
    duplicate = b'{"amount": "1.00", "amount": "5.00"}'
    for path, content_type in (
        (f"/payments/v2/{payment['id']}/refund", "application/json"),
        (f"/payments/v2/{payment['id']}/refund", "application/vnd.api+json"),
        (CREATE, "Application/JSON"),
    ):
        response = await service.api.post(
            path,
            content=duplicate,
            headers={"Content-Type": content_type, "Idempotency-Key": new_key()},
        )
        assert response.status_code == 400, (path, content_type, response.text)
        assert response.json()["reason"] == "duplicate_key"
    # Not JSON at all: FastAPI's 422 says where the document breaks, as before.
    broken = await service.api.post(CREATE, content=b'{"amount": ', headers=JSON)
    assert broken.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"description": "Order\u00001"},
        {"description": "x", "metadata": {"k\u0000": "v"}},
        {"description": "x", "customer": {"name": "Layla\u0000"}},
    ],
    ids=["description", "metadata-key", "customer-name"],
)
async def test_a_nul_in_any_string_is_a_400_on_both_databases(
    any_service: Service, body: dict[str, object]
) -> None:
    response = await any_service.api.post(
        CREATE,
        json={"amount": "1.00", "currency": "SAR", **body},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "nul_character"


@pytest.mark.parametrize(
    "url",
    [
        "/payments/v2/pay_%00",
        "/payments/v2/events?type=%00",
        "/payments/v2?cart_id=a%00b",
        "/payments/v2/pay_1/events?x=%00",
    ],
)
async def test_a_nul_in_the_url_is_a_400_before_any_lookup(any_service: Service, url: str) -> None:
    for client in (any_service.api, any_service.anonymous):
        response = await client.get(url)
        assert response.status_code == 400, (url, response.text)
        problem = response.json()
        assert problem["type"].endswith("/invalid-url")
        assert "%00" in problem["detail"]


async def test_an_unknown_payment_id_is_echoed_only_when_short_and_printable(
    service: Service,
) -> None:
    short = await service.api.get("/payments/v2/pay_nope")
    assert short.status_code == 404
    assert "'pay_nope'" in short.json()["detail"]
    long_id = "a" * 5000
    long = await service.api.get(f"/payments/v2/{long_id}")
    assert long.status_code == 404
    assert long_id[:100] not in long.text
    assert len(long.content) < 1000


async def test_two_authorization_headers_are_refused_not_picked_from(service: Service) -> None:
    valid, wrong = f"Bearer {API_KEY}", "Bearer someone-elses-key-0000"
    body = b'{"amount": "1.00", "currency": "SAR", "description": "x"}'
    for first, second in ((valid, wrong), (wrong, valid), (valid, valid)):
        headers = [("Authorization", first), ("Authorization", second)]
        created = await service.anonymous.post(
            CREATE, content=body, headers=[*headers, ("Content-Type", "application/json")]
        )
        assert created.status_code == 401, created.text
        assert "one Authorization header" in created.json()["detail"]
        listed = await service.anonymous.get("/payments/v2", headers=headers)
        assert listed.status_code == 401, listed.text
    assert (await service.api.get("/payments/v2")).json()["data"] == []


async def test_two_idempotency_keys_are_refused_before_anything_runs(service: Service) -> None:
    headers = [
        ("Idempotency-Key", "first-key-0001"),
        ("Idempotency-Key", "second-key-0002"),
        ("Content-Type", "application/json"),
    ]
    body = b'{"amount": "1.00", "currency": "SAR", "description": "x"}'
    response = await service.api.post(CREATE, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/invalid-idempotency-key")
    assert "one Idempotency-Key" in response.json()["detail"]
    assert (await service.api.get("/payments/v2")).json()["data"] == []
    # Either key alone still works as the first use of that key.
    alone = await service.api.post(CREATE, content=body, headers=[headers[1], headers[2]])
    assert alone.status_code == 201, alone.text


async def test_an_unknown_query_parameter_is_named_not_ignored(service: Service) -> None:
    await service.create("5.00")
    typo = await service.api.get("/payments/v2", params={"created_after": "2026-01-01T00:00:00Z"})
    assert typo.status_code == 422, typo.text
    problem = typo.json()
    assert problem["errors"][0] == {
        "in": "query",
        "field": "created_after",
        "message": "Unknown parameter; this endpoint takes: created_from, created_to, cursor, "
        "limit, state",
    }
    declared = await service.api.get(
        "/payments/v2", params={"created_from": "2026-01-01T00:00:00Z", "limit": "5"}
    )
    assert declared.status_code == 200, declared.text
    events = await service.api.get("/payments/v2/events", params={"typ": "payment.created"})
    assert events.status_code == 422
    assert events.json()["errors"][0]["field"] == "typ"
    # A hostile name is reported without being repeated back.
    long_name = "x" * 500
    hostile = await service.api.get("/payments/v2", params={long_name: "1"})
    assert hostile.status_code == 422
    assert long_name not in hostile.text
    # A parameter that takes one value, sent twice, was last-wins: refused like a duplicate key.
    twice = await service.api.get("/payments/v2", params=[("limit", "1"), ("limit", "3")])
    assert twice.status_code == 422, twice.text
    assert twice.json()["errors"][0]["field"] == "limit"
    assert "send it once" in twice.json()["errors"][0]["message"]
    states = {"state": ["completed", "failed"]}  # a list parameter repeats freely
    assert (await service.api.get("/payments/v2", params=states)).status_code == 200
    # The browser return reads PayTabs' fields from the query itself: not refused here.
    back = await service.anonymous.get("/payments/v2/return", params={"tranRef": "TST1"})
    assert back.status_code != 422


async def test_head_is_answered_wherever_get_is(service: Service) -> None:
    payment = await service.create("5.00")
    async with httpx.AsyncClient(base_url=service.url) as client:
        for path, headers in (
            ("/livez", {}),
            (f"/payments/v2/{payment['id']}", AUTH),
            ("/payments/v2", AUTH),
        ):
            got = await client.get(path, headers=headers)
            head = await client.head(path, headers=headers)
            assert head.status_code == got.status_code == 200, (path, head.text)
            assert head.content == b""
            assert head.headers["content-length"] == got.headers["content-length"]
            assert head.headers["content-type"] == got.headers["content-type"]
        unauthenticated = await client.head(f"/payments/v2/{payment['id']}")
        assert unauthenticated.status_code == 401
        post_only = await client.head(CREATE, headers=AUTH)
        assert post_only.status_code == 405
        assert post_only.headers["allow"] == "POST"


async def test_a_client_that_leaves_mid_body_is_counted_499_not_as_a_server_error(
    service: Service,
) -> None:
    # Nobody is left to answer, so nothing is sent; counted as a 500 it paged whoever watches
    # the 5xx rate for every dropped upload.
    parts = urlsplit(service.url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    headers = AUTH | JSON | {"Content-Length": "100", "Idempotency-Key": new_key()}
    writer.write(request_head("POST", CREATE, parts.netloc, headers) + b'{"amount"')
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    def counted(status_class: str) -> float:
        return service.metric(
            "paytabs_guard_http_requests_total",
            route="unmatched",
            method="POST",
            status_class=status_class,
        )

    await until_seen(lambda: counted("4xx"))
    assert counted("5xx") == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
    ids=["text", "form", "multipart", "none"],
)
async def test_a_body_not_declared_json_is_a_415_before_it_is_read(
    service: Service, headers: dict[str, str]
) -> None:
    # FastAPI read these as no object at all: a 422 saying the body was not an object.
    body = b'{"amount": "12.50", "currency": "SAR", "description": "x"}'
    response = await service.api.post(CREATE, content=body, headers=headers)  # bytes: no type
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "application/json" in response.json()["detail"]
    assert (await service.api.get("/payments/v2")).json()["data"] == []  # nothing created


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Encoding": "gzip"},
        {"Content-Encoding": "br"},
        {"Content-Encoding": "identity, gzip"},
        {"Content-Type": "application/json; charset=latin-1"},
    ],
    ids=["gzip", "br", "identity-then-gzip", "latin-1"],
)
async def test_a_compressed_body_is_a_415_not_read_as_plain(
    service: Service, headers: dict[str, str]
) -> None:
    # Taken as sent, a gzipped body failed as bad UTF-8 and a body marked br ran as plain;
    # a latin-1 body was decoded as UTF-8 all the same.
    body = b'{"amount": "12.50", "currency": "SAR", "description": "x"}'
    response = await service.api.post(CREATE, content=body, headers=JSON | headers)
    assert response.status_code == 415, response.text
    if "Content-Encoding" in headers:
        assert "uncompressed" in response.json()["detail"]
    plain = await service.api.post(
        CREATE, content=body, headers=JSON | {"Content-Encoding": "identity"}
    )
    assert plain.status_code == 201, plain.text


@pytest.mark.parametrize(
    ("method", "path", "suggested"),
    [
        ("POST", "/payments/v2/create/", "/payments/v2/create"),
        ("GET", "/payments/v2/", "/payments/v2"),
        ("GET", "/payments/v2/pay_x/events/", "/payments/v2/pay_x/events"),
    ],
)
async def test_an_api_path_with_a_trailing_slash_is_a_404_that_names_the_right_one(
    service: Service, method: str, path: str, suggested: str
) -> None:
    # Starlette answered a bare 307 whose Location came from the Host header.
    response = await service.api.request(
        method, path, headers={"Host": "evil.example"}, json={} if method == "POST" else None
    )
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert f"to {suggested} without the trailing slash" in response.json()["detail"]
    assert "location" not in response.headers


async def test_a_page_with_a_trailing_slash_is_sent_to_it_relative_never_to_the_host_header(
    service: Service,
) -> None:
    response = await service.anonymous.get("/console/?lang=ar", headers={"Host": "evil.example"})
    assert response.status_code == 308
    assert response.headers["location"] == "/console?lang=ar"
    docs = await service.anonymous.get("/docs/")
    assert (docs.status_code, docs.headers["location"]) == (308, "/docs")


async def test_the_root_sends_a_browser_to_the_api_reference(service: Service) -> None:
    response = await send_raw(service.url, "GET", "/", {"Host": "evil.example"})
    assert (response.status, response.headers["location"]) == (307, "/docs")
    followed = await service.anonymous.get("/", follow_redirects=True)
    assert followed.status_code == 200
    assert "Swagger UI" in followed.text
    assert (await service.anonymous.head("/")).status_code == 307


@pytest.mark.parametrize(
    "path", ["//evil.example/", "/%2fevil.example/", "///evil.example/", "/nowhere/", "/metrics/"]
)
async def test_no_other_path_with_a_trailing_slash_is_redirected_anywhere(
    service: Service, path: str
) -> None:
    # "//evil.example/" once became Location: //evil.example, another site to a browser.
    response = await send_raw(service.url, "GET", path, {})
    # "/%2f..." is a path in disguise, refused before any route (400); the rest find none
    assert response.status == (400 if "%2f" in path else 404), response.headers
    assert "location" not in response.headers
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("target", ["/docs-assets", "/docs-assets?x=1"])
async def test_the_docs_assets_folder_is_not_redirected_to_the_host_header(
    service: Service, target: str
) -> None:
    # Starlette's router added the slash a mount needs with a 307 to an absolute URL built
    # from the Host header: "Location: http://evil.example/docs-assets/".
    response = await send_raw(service.url, "GET", target, {"Host": "evil.example"})
    assert response.status == 404, response.headers
    assert "location" not in response.headers
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_body_that_stops_coming_is_a_408_and_the_connection_closes(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # uvicorn has no timeout for a body: a client that declared 100 bytes and sent 9 held its
    # connection and a task for as long as it liked.
    options = dataclasses.replace(FAST_OPTIONS, body_read_seconds=0.2)
    async with running_service(sim, sqlite_url, options=options) as svc:
        headers = AUTH | JSON | {"Content-Length": "100", "Idempotency-Key": new_key()}
        answer = await send_raw(svc.url, "POST", CREATE, headers, body=b'{"amount"')
        assert answer.status == 408
        assert answer.headers["content-type"] == "application/problem+json"
        assert "within 0.2 seconds" in answer.json()["detail"]
        assert answer.headers["connection"] == "close"
        assert (await svc.api.get("/payments/v2")).json()["data"] == []
        # The callback receiver reads its own body, with the same deadline.
        callback = await send_raw(
            svc.url, "POST", "/payments/v2/webhook", JSON | {"Content-Length": "100"}, b"{"
        )
        assert callback.status == 408
        assert svc.metric(
            "paytabs_guard_webhook_requests_total", endpoint="ipn", outcome="rejected_slow"
        )


async def test_a_made_up_payments_cursor_is_a_400_not_an_empty_last_page(
    service: Service,
) -> None:
    # The cursor is base64 of "after:<payment id>"; one naming no payment read as "no more".
    first = await service.create("5.00")
    await service.create("6.00")
    page = await service.api.get("/payments/v2", params={"limit": 1})
    assert page.json()["next_cursor"] is not None
    last = await service.api.get("/payments/v2", params={"cursor": page.json()["next_cursor"]})
    assert [p["id"] for p in last.json()["data"]] == [first["id"]]
    real_end = encode_cursor("after", first["id"])  # after the oldest: a genuine empty page
    assert (await service.api.get("/payments/v2", params={"cursor": real_end})).status_code == 200
    made_up = encode_cursor("after", "nonsense")
    refused = await service.api.get("/payments/v2", params={"cursor": made_up})
    assert refused.status_code == 400, refused.text
    assert "next_cursor" in refused.json()["detail"]


async def test_a_cursor_with_a_nul_inside_is_a_400_on_either_database(
    any_service: Service,
) -> None:
    # The URL's own %00 is refused at the door; one inside the cursor's base64 reached
    # PostgreSQL, which cannot hold a NUL in text: a 500 with a traceback in the log.
    for position in ("\x00", "pay_\x00x"):
        cursor = encode_cursor("after", position)
        refused = await any_service.api.get("/payments/v2", params={"cursor": cursor})
        assert refused.status_code == 400, refused.text
        assert refused.json()["type"].endswith("/invalid-cursor")


@pytest.mark.parametrize("path", [CREATE, "/payments/v2/webhook"])
async def test_a_transfer_coding_other_than_chunked_is_a_415(service: Service, path: str) -> None:
    # "gzip, chunked": the server de-chunks and hands over what it takes for gzip; read as
    # plain JSON, the request ran.
    body = b'{"amount": "12.50", "currency": "SAR", "description": "x"}'
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    headers = AUTH | JSON | {"Transfer-Encoding": "gzip, chunked", "Idempotency-Key": new_key()}
    answer = await send_raw(service.url, "POST", path, headers, chunked)
    assert answer.status == 415, answer.body
    assert "uncompressed" in answer.json()["detail"]


async def test_a_callback_sender_that_leaves_mid_body_is_a_499_not_an_attack(
    service: Service, captured: io.StringIO
) -> None:
    parts = urlsplit(service.url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = request_head(
        "POST", "/payments/v2/webhook", parts.netloc, JSON | {"Content-Length": "100"}
    )
    writer.write(head + b'{"tran_ref"')
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    def left() -> float:
        return service.metric(
            "paytabs_guard_webhook_requests_total", endpoint="ipn", outcome="client_disconnected"
        )

    await until_seen(left)
    labels = {"route": "/payments/v2/webhook", "method": "POST"}
    assert service.metric("paytabs_guard_http_requests_total", **labels, status_class="4xx") == 1
    assert "security_event" not in captured.getvalue()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/%6detrics"),
        ("GET", "/%6D%65trics"),
        ("GET", "/payments%2Fv2%2Fhealth"),
        ("GET", "/%68ealth/paytabs"),
        ("POST", "/payments%2Fv2%2Fwebhook"),
        ("POST", "/payments/v2/%77ebhook"),
        ("GET", "/payments/v2/%2e%2e/metrics"),
    ],
)
async def test_a_path_in_disguise_is_a_400_not_the_endpoint_an_edge_rule_guards(
    service: Service, method: str, path: str
) -> None:
    # An edge rule written for "/metrics" or the webhook path matches the raw path; the
    # router matched the decoded one, so the disguise walked past the rule and in.
    body = b"{}" if method == "POST" else b""
    headers = JSON | {"Content-Length": str(len(body))}
    answer = await send_raw(service.url, method, path, headers, body)
    assert answer.status == 400, answer.body
    assert answer.json()["type"].endswith("/invalid-url")
    assert "percent-encoded" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "http://evil.example/metrics"),
        ("GET", "https://evil.example/metrics?name=x"),
        ("GET", "HTTP://x/console/login"),
        ("GET", "http://x/health/paytabs"),
        ("GET", "http://127.0.0.1/payments/v2"),
        ("POST", "http://x/payments/v2/webhook"),
        ("POST", "http://x/payments/v2/create"),
    ],
)
async def test_a_target_in_absolute_form_is_a_400_not_the_endpoint_an_edge_rule_guards(
    service: Service, method: str, target: str
) -> None:
    # An edge rule on the request target ("^/metrics") does not match "http://x/metrics",
    # and httptools handed the app "/metrics" all the same: served, with any Host.
    body = b"{}" if method == "POST" else b""
    headers = AUTH | JSON | {"Content-Length": str(len(body))}
    answer = await send_raw(service.url, method, target, headers, body)
    assert answer.status == 400, answer.body
    assert answer.json()["type"].endswith("/invalid-url")
    assert "absolute URL" in answer.json()["detail"]
    assert answer.headers["x-request-id"]  # answered by the app, as any other refusal
    plain = target.split("/", 3)[3].partition("?")[0]
    if method == "GET":  # the same request in origin form is no disguise and is served
        assert (await send_raw(service.url, method, f"/{plain}", AUTH, b"")).status == 200


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/metrics#x"),
        ("GET", "/metrics#?name=x"),
        ("GET", "/health/paytabs#"),
        ("GET", "/payments/v2#.png"),
        ("POST", "/payments/v2/webhook#x"),
    ],
)
async def test_a_target_with_a_fragment_is_a_400_not_the_endpoint_an_edge_rule_guards(
    service: Service, method: str, target: str
) -> None:
    # Some proxies read "/metrics#x" as a path of its own (HAProxy did, CVE-2023-45539), so a
    # rule for "/metrics" let it by; httptools dropped the fragment and "/metrics" was served.
    body = b"{}" if method == "POST" else b""
    headers = AUTH | JSON | {"Content-Length": str(len(body))}
    answer = await send_raw(service.url, method, target, headers, body)
    assert answer.status == 400, answer.body
    assert answer.json()["type"].endswith("/invalid-url")
    assert "fragment" in answer.json()["detail"]
    assert answer.headers["x-request-id"]


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /payments/v2/health HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /payments/v2/health HTTP/1.1\r\nHost: a\r\nHost: evil.example\r\n\r\n", 400),
        (b"GET /payments/v2/health HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400),
        (b"GET /payments/v2/health HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 may leave it out
        (b"GET /payments/v2/health HTTP/1.1\r\nhost: shop.example\r\n\r\n", 200),
    ],
)
async def test_a_missing_or_repeated_host_header_is_a_400(
    service: Service, head: bytes, status: int
) -> None:
    # RFC 9112 (3.2); httptools passed both. A proxy routing or logging by one Host while
    # another reaches the service is how cache poisoning and misrouting start.
    parts = urlsplit(service.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head)
        answer = await asyncio.wait_for(read_answer(reader, time.perf_counter()), 10)
    finally:
        writer.close()
    assert answer.status == status, answer.body
    if status == 400:
        assert answer.json()["type"].endswith("/invalid-host")
        assert "exactly one Host header" in answer.json()["detail"]


async def test_percent_encoding_that_is_needed_still_reaches_the_router(service: Service) -> None:
    # A space or a quote in an id is no disguise: the route answers for itself (404 here).
    answer = await send_raw(service.url, "GET", "/payments/v2/pay%20x%22", AUTH, b"")
    assert answer.status == 404


async def test_every_answer_tells_browsers_not_to_sniff_its_type_once(service: Service) -> None:
    answers = [
        await service.api.get("/payments/v2"),  # JSON
        await service.api.get("/payments/v2/pay_nothing"),  # problem+json
        await service.anonymous.get("/console"),  # an HTML page that sets its own headers
        await service.anonymous.get("/metrics"),
    ]
    for answer in answers:
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"], answer.url


@pytest.mark.parametrize("length", ["0", "00", " 000 "])
async def test_a_zero_length_written_with_leading_zeros_is_no_body(
    service: Service, length: str
) -> None:
    # A void takes no body: "00" is a length of zero, not a body without a media type (415).
    answer = await send_raw(
        str(service.api.base_url), "POST", "/payments/v2/pay_0000000000000000000000ff/void",
        {"Authorization": f"Bearer {API_KEY}", "Content-Length": length},
    )  # fmt: skip
    assert answer.status == 404, answer.body
    assert answer.json()["type"].endswith("/payment-not-found")
