"""ASGI middleware that makes the PayTabs API slow, failing, hanging or cut off on purpose.

"before" faults stop a request before the simulator records anything; "after" faults let the
operation happen and then lose the answer, the case that double-charges naive clients.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paytabs_simulator.engine import Engine
from paytabs_simulator.faults import FaultPlan, operation_of, plan_request
from paytabs_simulator.wire import json_bytes

REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class SimulatedConnectionReset(Exception):
    """Raised after the response has started so the server drops the connection mid-body."""


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it out again before going on
    with the real one (so a hang still sees the client disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), _replay([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying


class FaultMiddleware:
    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.engine.faults.fault_paths:
            await self.app(scope, receive, send)
            return
        engine = self.engine
        faults = engine.faults
        body: bytes | None = None
        if faults.partial_outages:
            # Which operation a /payment/request is lies in its body: read it, then replay it.
            body, receive = await _buffered(receive)
        operation = operation_of(scope["path"], body)
        plan = plan_request(faults, engine.rng, engine.elapsed_seconds(), operation)
        engine.stats[f"requests {scope['path']}"] += 1
        if plan.latency_seconds > 0:
            await engine.pause(plan.latency_seconds)
        if plan.action is None:
            await self.app(scope, receive, send)
            return
        engine.stats[f"faults {plan.action} {plan.phase} ({plan.cause})"] += 1
        answer = b""
        if plan.phase == "after":
            answer = await self._run_and_swallow(scope, receive)
        await self._inject(plan, receive, send, answer)

    async def _run_and_swallow(self, scope: Scope, receive: Receive) -> bytes:
        """Let the simulator do the work; keep the answer the client will never fully get."""
        chunks: list[bytes] = []

        async def swallow(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, swallow)
        return b"".join(chunks)

    async def _inject(self, plan: FaultPlan, receive: Receive, send: Send, body: bytes) -> None:
        if plan.action == "error":
            await self._error(plan.status, send)
        elif plan.action == "reset":
            await self._reset(send, body)
        else:
            await self._hang(receive, send)

    async def _error(self, status: int, send: Send) -> None:
        # Load balancers answer 5xx with HTML, not PayTabs JSON: clients must cope with both.
        reason = REASONS.get(status, "Error")
        content = f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(content)).encode()),
        ]
        if status in {429, 503}:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _reset(self, send: Send, body: bytes) -> None:
        # An exception before the response starts would make uvicorn answer 500, so start one.
        content = body or json_bytes({"tran_ref": "", "cart_id": "", "redirect_url": ""})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": content[: len(content) // 2], "more_body": True}
        )
        raise SimulatedConnectionReset

    async def _hang(self, receive: Receive, send: Send) -> None:
        """Answer nothing until the client gives up, the simulator stops, or the cap passes."""

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiters = [
            asyncio.ensure_future(until_disconnect()),
            asyncio.ensure_future(self.engine.closing.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=self.engine.faults.hang_max_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if waiters[0] not in done:
            # Still connected: shutting down or capped. Cut the line rather than answer.
            await self._reset(send, b"")
