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


class Tab:
    """One tab for a multi-step visit, driven like a person would: type, press Enter, click.

    Reads go through the DOM domain (not page JavaScript), so they work the same with
    JavaScript switched off (``javascript=False``). ``width``/``height`` set the viewport
    (a phone is about 390 wide)."""

    def __init__(
        self, chromium: Browser, *, javascript: bool = True, width: int = 1280, height: int = 900
    ) -> None:
        self.chromium = chromium
        self.events: list[dict[str, Any]] = []
        self.target = chromium.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = chromium.call(
            "Target.attachToTarget", {"targetId": self.target, "flatten": True}
        )
        self.session: str = attached["sessionId"]
        for domain in ("Network.enable", "Page.enable", "DOM.enable"):
            self._call(domain)
        self.resize(width, height)
        if not javascript:
            self._call("Emulation.setScriptExecutionDisabled", {"value": True})

    def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.chromium.call(method, params, session=self.session, events=self.events)

    def resize(self, width: int, height: int = 900) -> None:
        """The viewport from now on (a phone below 600 wide); reload the page to lay it out."""
        self._call("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600})  # fmt: skip

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools' own evaluation, which
        works with the page's scripts switched off too)."""
        answer = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer.get("result", {}).get("value")

    def _ready_state(self) -> str:
        # DevTools' own evaluation, which runs with the page's JavaScript switched off too
        answer = self._call(
            "Runtime.evaluate", {"expression": "document.readyState", "returnByValue": True}
        )
        return str(answer.get("result", {}).get("value", ""))

    def html(self) -> str:
        root = self._call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        outer: str = self._call("DOM.getOuterHTML", {"nodeId": root})["outerHTML"]
        return outer

    def wait_for(self, text: str) -> str:
        """The page's HTML once it contains ``text`` and is parsed to its end (fails after the
        browser's timeout). A page still loading serialises as far as it got, its open tags
        closed: ``text`` near the top could be found before the rest of the page arrived (a
        results page's search field before its results, on a busy machine)."""
        deadline = time.monotonic() + self.chromium.timeout
        while True:
            try:
                page = self.html()
                if text in page and self._ready_state() == "loading":
                    page = ""  # found, but the document is not all there yet
            except RuntimeError:  # the document was replaced between two calls: navigating
                page = ""
            if text in page:
                return page
            assert time.monotonic() < deadline, f"{text!r} never appeared in {page[:2000]}"
            time.sleep(0.05)  # a real browser loading a page; polling without spinning a core

    def go(self, url: str, ready: str) -> str:
        self._call("Page.navigate", {"url": url})
        return self.wait_for(ready)

    def _node(self, selector: str) -> int:
        root = self._call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node: int = self._call("DOM.querySelector", {"nodeId": root, "selector": selector})[
            "nodeId"
        ]
        assert node, f"nothing matches {selector!r}"
        return node

    def type_into(self, selector: str, text: str, *, submit: bool = True) -> None:
        """Focus the field, type ``text`` and (by default) press Enter to submit its form."""
        self._call("DOM.focus", {"nodeId": self._node(selector)})
        self._call("Input.insertText", {"text": text})
        if submit:
            for kind in ("keyDown", "keyUp"):
                self._call("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code":
                           "Enter", "windowsVirtualKeyCode": 13, "text": "\r"})  # fmt: skip

    def click(self, selector: str) -> None:
        self._call("DOM.scrollIntoViewIfNeeded", {"nodeId": self._node(selector)})
        # The first line box: a link wrapped over two lines has a gap in its bounding box.
        quad = self._call("DOM.getContentQuads", {"nodeId": self._node(selector)})["quads"][0]
        x, y = (quad[0] + quad[4]) / 2, (quad[1] + quad[5]) / 2
        for kind in ("mousePressed", "mouseReleased"):
            event = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            self._call("Input.dispatchMouseEvent", event)

    def screenshot(self, path: Path) -> None:
        shot = self._call("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))

    def requested(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        self.chromium.call("Target.closeTarget", {"targetId": self.target})
