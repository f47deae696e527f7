"""A request cancelled before it was answered (a shutdown past its grace period) gets a
problem+json 503 that says to send it again with the same key, not uvicorn's plain-text 500.

An outside run restarting the service under load: every request still waiting for PayTabs at
the end of the grace period was answered ``500 Internal Server Error`` in plain text."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from paytabs_guard.entrypoints.api.middleware import RequestContextMiddleware
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.observability import configure_logging

pytestmark = pytest.mark.anyio


async def test_a_cancelled_request_is_answered_503_interrupted_and_the_cancel_goes_on() -> None:
    entered = asyncio.Event()

    async def waiting_for_paytabs(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await asyncio.Event().wait()

    app = RequestContextMiddleware(waiting_for_paytabs, lambda: None)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: Scope = {
        "type": "http", "method": "POST", "path": "/payments/v2/pay_1/refund", "headers": [],
        "query_string": b"", "client": ("127.0.0.1", 5000),
    }  # fmt: skip
    task = asyncio.ensure_future(app(scope, receive, send))
    await entered.wait()
    task.cancel()  # what uvicorn does to requests still running when its grace period ends
    with pytest.raises(asyncio.CancelledError):
        await task
    start, body = sent[0], sent[1]
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"1"
    problem = json.loads(body["body"])
    assert problem["type"].endswith("/interrupted")
    assert "same Idempotency-Key" in problem["detail"]
    assert problem["request_id"]


async def test_a_request_a_shutdown_cuts_off_is_one_warning_line_not_a_traceback() -> None:
    # uvicorn logged each request it cancelled at the end of the grace period as "Exception in
    # ASGI application" with a 40-frame CancelledError traceback: every restart under load
    # looked like a crash in the logs, though each request got its documented 503.
    entered = asyncio.Event()

    async def waiting_for_paytabs(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await asyncio.Event().wait()

    root = logging.getLogger()
    kept_level = root.level
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream)
    try:
        app = RequestContextMiddleware(waiting_for_paytabs, lambda: None)
        async with httpx.AsyncClient() as client:
            async with serve_app(app, graceful_shutdown_seconds=0) as url:
                request = asyncio.ensure_future(client.post(f"{url}/payments/v2/pay_1/refund"))
                await entered.wait()
            answer = await request  # the server has shut down, with no grace at all
    finally:
        root.removeHandler(handler)
        root.setLevel(kept_level)
    assert answer.status_code == 503
    assert answer.json()["type"].endswith("/interrupted")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "Traceback" not in stream.getvalue()
    cut = [
        line for line in lines if line["logger"] == "uvicorn.error" and "cancel" in line["event"]
    ]
    assert [(line["level"], line["event"]) for line in cut[-1:]] == [
        ("warning", "request cancelled: it outlived the shutdown's grace period")
    ]
    assert all("exception" not in line for line in lines)
