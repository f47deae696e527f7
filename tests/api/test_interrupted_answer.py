"""A request cancelled before it was answered (a shutdown past its grace period) gets a
problem+json 503 that says to send it again with the same key, not uvicorn's plain-text 500.

An outside run restarting the service under load: every request still waiting for PayTabs at
the end of the grace period was answered ``500 Internal Server Error`` in plain text."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from paytabs_guard.entrypoints.api.middleware import RequestContextMiddleware

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
