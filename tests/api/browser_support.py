"""A real headless Chromium (the distribution's package), driven over the DevTools protocol.

No driver download and no Python dependency: Chromium is started with
``--remote-debugging-port=0``, its port is read from ``DevToolsActivePort`` in a fresh profile,
and the protocol runs over a minimal WebSocket client on a plain socket (text frames only, which
is all DevTools sends). Every URL the page requests is recorded, and name resolution outside
127.0.0.1 is switched off, so a page that needs the internet both fails to render and shows the
request it tried.

Blocking by design: call it from a worker thread when the server under test runs on the test's
event loop (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
BINARIES = ("chromium", "chromium-browser", "google-chrome")
START_SECONDS = 30.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    # Nothing but loopback resolves: a CDN asset fails instead of loading.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str:
    """The Chromium executable; skips the test when there is none, fails under
    REQUIRE_SERVICES=1 (as CI runs, where .ci/run installs it)."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    message = "Chromium is not installed (apt-get install -y chromium chromium-driver)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
    pytest.skip(message)


class WebSocket:
    """Just enough of RFC 6455 for DevTools: masked text frames out, text frames in."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the handshake")
            head += chunk
        head, _, self.buffer = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:80]!r}")

    def send(self, text: str) -> None:
        payload = text.encode()
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        mask = secrets.token_bytes(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._read(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._read(8))
            payload = self._read(size)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Visit:
    """What one page load did: every URL requested, and values read from the page."""

    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """URLs the page asked for that the browser itself refused (Content-Security-Policy):
    they never left the machine, so they are not in ``requests``."""
    values: dict[str, Any] = field(default_factory=dict)

    def foreign_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but loopback, data: and blob:)."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob", "about")
            and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
        ]


class Browser:
    """One headless Chromium with a fresh profile; ``visit()`` loads a page in a new tab."""

    def __init__(self, binary: str, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="paytabs-guard-chromium-")
        self.process = subprocess.Popen(  # noqa: S603 - the distribution's Chromium, fixed flags
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.ws = WebSocket(self._endpoint(), timeout)
        self._next_id = 0

    def _endpoint(self) -> str:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with {self.process.returncode}")
            lines = marker.read_text().split() if marker.exists() else []
            if len(lines) == 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)  # waiting for a real process to start, not for time to pass
        raise RuntimeError("Chromium did not open its DevTools port")

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile go to ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.receive())
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if events is not None and "method" in answer:
                events.append(answer)

    def visit(
        self,
        url: str,
        ready: str,
        reads: dict[str, str],
        *,
        headers: dict[str, str] | None = None,
    ) -> Visit:
        """Load ``url`` (sending ``headers`` too, e.g. Accept-Language), wait until the
        JavaScript expression ``ready`` is true (the page has rendered), then evaluate each of
        ``reads``."""
        visit = Visit()
        events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Network.enable", "Page.enable", "Runtime.enable"):
            self.call(domain, session=session, events=events)
        if headers:
            self.call("Network.setExtraHTTPHeaders", {"headers": headers}, session=session)
        self.call("Page.navigate", {"url": url}, session=session, events=events)
        deadline = time.monotonic() + self.timeout
        rendered = False
        while not rendered:
            rendered = bool(self._evaluate(ready, session, events))
            if not rendered:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # a real browser rendering; polling without spinning a core
        for name, expression in reads.items():
            visit.values[name] = self._evaluate(expression, session, events)
        visit.values["rendered"] = rendered
        # Requests still in flight after rendering count too: ask once more, then collect.
        self._evaluate("1", session, events)
        refused = {
            event["params"]["requestId"]
            for event in events
            if event.get("method") == "Network.loadingFailed"
            and event["params"].get("blockedReason") == "csp"
        }
        for event in events:
            if event.get("method") == "Network.requestWillBeSent":
                sent = event["params"]
                kept = visit.blocked if sent["requestId"] in refused else visit.requests
                kept.append(sent["request"]["url"])
        self.call("Target.closeTarget", {"targetId": target})
        return visit

    def _evaluate(self, expression: str, session: str, events: list[dict[str, Any]]) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            session=session,
            events=events,
        )
        return result.get("result", {}).get("value")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    """A headless Chromium for the test (skipped, or failed under REQUIRE_SERVICES=1, if none)."""
    running = Browser(chromium_binary())
    try:
        yield running
    finally:
        running.close()
