"""Raw HTTP/1.1 over a socket: what httpx will not send (a declared body that never comes, a
chunked body left unfinished) and a clock around the answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


async def read_answer(reader: asyncio.StreamReader, started: float) -> RawAnswer:
    head = await reader.readuntil(b"\r\n\r\n")
    seconds = time.perf_counter() - started
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawAnswer(int(status_line.split()[1]), headers, body, seconds)


def request_head(method: str, path: str, host: str, headers: dict[str, str]) -> bytes:
    """The head with ``Host: host``, unless ``headers`` names a Host of its own (one only)."""
    own_host = any(name.lower() == "host" for name in headers)
    lines = [f"{method} {path} HTTP/1.1", *([] if own_host else [f"Host: {host}"])]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_raw(
    base_url: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> RawAnswer:
    """Send the head (and ``body``, possibly less than declared), then wait for the answer."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        started = time.perf_counter()
        writer.write(request_head(method, path, parts.netloc, headers) + body)
        await writer.drain()
        return await asyncio.wait_for(read_answer(reader, started), 10)
    finally:
        writer.close()


async def send_chunked_unfinished(
    base_url: str, path: str, headers: dict[str, str], total: int, chunk: int = 8192
) -> RawAnswer:
    """Stream ``total`` bytes chunked and never send the final chunk: only a server that stops
    at its limit can answer."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        started = time.perf_counter()
        head = request_head("POST", path, parts.netloc, headers | {"Transfer-Encoding": "chunked"})
        writer.write(head)
        answer = asyncio.ensure_future(read_answer(reader, started))
        sent = 0
        while sent < total and not answer.done():
            writer.write(f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n")
            sent += chunk
            try:
                await writer.drain()
            except ConnectionError:
                break
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


async def until_seen(condition: Callable[[], object], within: float = 5.0) -> None:
    """Wait (bounded) until the server has seen what a client did over its socket, such as
    closing it mid-body: no event announces that to the test, so the condition is polled."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the server sees the close over a socket
            await asyncio.sleep(0.005)
