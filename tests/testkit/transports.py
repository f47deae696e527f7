"""The two HTTP paths a ``PayTabs`` client can take, for tests that must hold on both: the lean
transport (``http11``, where httptools is installed: the service extra, the dev venv) and
httpx's own (a plain ``pip install paytabs-guard``, or a proxy from the environment). And a
count of a process's open connections to one port, from ``/proc``."""

from __future__ import annotations

from pathlib import Path

import pytest

from paytabs_guard.adapters.paytabs import http11

PATHS = ["http11", "httpx"]


@pytest.fixture(params=PATHS)
def http_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test that takes it runs once per path; a client built in it takes that path.

    ``http11.HAVE_HTTPTOOLS`` is what a plain install without httptools has false: the client
    then keeps httpx's own transport, as it does there."""
    path: str = request.param
    if path == "http11" and not http11.HAVE_HTTPTOOLS:
        pytest.skip("httptools is not installed")
    if path == "httpx":
        monkeypatch.setattr(http11, "HAVE_HTTPTOOLS", False)
    return path


def open_connections_to(port: int) -> int:
    """How many of this process's file descriptors are TCP connections to ``port`` (the
    client's ends: the server's ends have it as their local port). A connection closed has no
    descriptor; one leaked keeps its descriptor until the garbage collector closes it."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        pytest.skip("needs Linux's /proc")
    inodes = set()
    for table in tables:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port:  # rem_address is host:port, hex
                inodes.add(f"socket:[{fields[9]}]")
    count = 0
    for descriptor in Path("/proc/self/fd").iterdir():
        try:
            target = str(descriptor.readlink())
        except OSError:  # the listing's own descriptor, gone already
            continue
        count += target in inodes
    return count
