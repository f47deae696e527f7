"""The load generator of ``bench load``: closed-loop HTTP/1.1 over keep-alive loopback sockets.

Each of ``concurrency`` connections sends one request, reads the whole answer, then sends the
next, so the offered load follows the server (a closed loop: throughput and latency at that
concurrency). Requests are pre-built bytes and answers are read with a minimal parser, so the
generator spends a few tens of microseconds per request where an ``httpx`` client spends
hundreds: on a two-core machine the load generator must not eat the server's CPU.

Only requests that *start* after the warm-up count; the throughput is the counted answers over
the time from the end of the warm-up to the last counted answer.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

#: What a request source yields: the request bytes and a tag handed back with the answer.
Request = tuple[bytes, object]
#: Called with (tag, status, body) for every counted answer when the phase keeps bodies.
OnAnswer = Callable[[object, int, bytes], None]


def build_request(
    method: str,
    host: str,
    port: int,
    path: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One HTTP/1.1 keep-alive request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpError(Exception):
    """The server's answer could not be read as HTTP/1.1."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one answer: Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise HttpError(head[:40].decode("latin-1", "replace"))
    status = int(head[9:12])
    length = -1
    chunked = False
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lowered == b"connection":
            keep_alive = b"close" not in value.lower()
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), keep_alive
    if length < 0:
        return status, await reader.read(), False
    return status, await reader.readexactly(length), keep_alive


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LoadResult:
    """What one closed-loop run measured (latencies in milliseconds)."""

    name: str
    concurrency: int
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def latency(self, fraction: float) -> float:
        return percentile(sorted(self.latencies_ms), fraction)

    def unexpected(self, expected: int) -> int:
        """Answers with another status than ``expected``, plus connection errors."""
        others = sum(n for status, n in self.statuses.items() if status != expected)
        return others + self.connection_errors

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies_ms)
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(percentile(ordered, 0.50), 3),
            "p90_ms": round(percentile(ordered, 0.90), 3),
            "p99_ms": round(percentile(ordered, 0.99), 3),
            "max_ms": round(ordered[-1], 3) if ordered else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connection_errors": self.connection_errors,
        }


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def run_closed_loop(
    name: str,
    host: str,
    port: int,
    requests: Iterator[Request],
    *,
    concurrency: int,
    duration: float,
    warmup: float = 0.0,
    on_answer: OnAnswer | None = None,
    on_warmup_answer: OnAnswer | None = None,
) -> LoadResult:
    """Drive ``requests`` through ``concurrency`` connections for ``warmup + duration`` seconds
    (or until the source is exhausted). ``on_answer`` sees every counted answer's body,
    ``on_warmup_answer`` those of the warm-up."""
    result = LoadResult(name, concurrency)
    clock = time.perf_counter
    started = clock()
    measure_from = started + warmup
    stop_at = measure_from + duration
    last_counted = measure_from

    async def connection() -> None:
        nonlocal last_counted
        reader, writer = await _connect(host, port)
        try:
            while True:
                sent_at = clock()
                if sent_at >= stop_at:
                    return
                item = next(requests, None)
                if item is None:
                    return
                payload, tag = item
                try:
                    writer.write(payload)
                    status, body, keep_alive = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, HttpError):
                    if sent_at >= measure_from:
                        result.connection_errors += 1
                    writer.close()
                    reader, writer = await _connect(host, port)
                    continue
                answered_at = clock()
                if sent_at >= measure_from:
                    result.requests += 1
                    result.statuses[status] += 1
                    result.latencies_ms.append((answered_at - sent_at) * 1000)
                    last_counted = max(last_counted, answered_at)
                    if on_answer is not None:
                        on_answer(tag, status, body)
                elif on_warmup_answer is not None:
                    on_warmup_answer(tag, status, body)
                if not keep_alive:
                    writer.close()
                    reader, writer = await _connect(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = last_counted - measure_from
    return result


class Connection:
    """One keep-alive connection for sequential requests (the latency comparison)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await _connect(self.host, self.port)
        reader, writer = self._streams
        writer.write(payload)
        status, body, keep_alive = await read_response(reader)
        if not keep_alive:
            await self.aclose()
        return status, body

    async def aclose(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
