"""The transport's own timeouts end before the breaker cuts an attempt.

A cut by the breaker's call timeout cannot tell whether the request left, so it is an unknown
outcome: the create goes to ``unknown`` and is reconciled by query. A connection that could not
be made (or a free pooled connection that never came) is provably "never sent": the transport
must say so itself, which it can only do if its connect and pool timeouts end first. With the
service's settings they used to tie or lose: the connect timeout was ``min(PAYTABS_TIMEOUT,
10 s)``, so with ``CIRCUIT_BREAKER_TIMEOUT`` under 10 s (the chaos profiles run 0.8-3 s) the
breaker cut every blackholed connect first, and at the defaults the pool wait tied at 30 s.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from paytabs_guard.adapters.paytabs.client import http_timeout_within
from paytabs_guard.adapters.paytabs.errors import PayTabsError
from paytabs_guard.adapters.paytabs.transformers import HostedPageRequest
from paytabs_guard.bootstrap import build_gateway
from paytabs_guard.domain import Money
from paytabs_guard.settings import load_settings
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY

pytestmark = pytest.mark.anyio


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A base URL whose connects hang: a listener that never accepts, its queue already full
    (the kernel drops further SYNs, as a firewall that drops packets does)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    host, port = listener.getsockname()
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((host, port))
        fillers.append(filler)
    try:
        yield f"http://{host}:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_connect_that_hangs_fails_as_never_sent_not_as_an_unknown_outcome(
    blackhole: str,
) -> None:
    settings = load_settings(
        {
            "PAYTABS_PROFILE_ID": str(DEFAULT_PROFILE_ID),
            "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
            "PAYTABS_BASE_URL": blackhole,
            # PAYTABS_TIMEOUT stays at its 30 s default. The connect gives up at 90 % of the
            # call's 2 s, 200 ms before the breaker's cut: at 400 ms the 40 ms between them
            # was less than a loaded machine's pause, and the breaker's cut came first.
            "CIRCUIT_BREAKER_TIMEOUT": "2000",
            "PAYTABS_RETRY_ATTEMPTS": "0",
        }
    )
    parts = build_gateway(settings)
    try:
        request = HostedPageRequest(
            cart_id="blackholed-1", amount=Money.of("10.00", "SAR"), description="never sent"
        )
        with pytest.raises(PayTabsError) as failed:
            await parts.paytabs.create_payment_page(request)
    finally:
        await parts.aclose()
    assert failed.value.retry_safe, failed.value
    assert not failed.value.needs_resolution, failed.value


@pytest.mark.parametrize(
    ("attempt", "http", "expected"),
    [
        (30.0, 30.0, 27.0),  # the defaults: the transport ends first, not at a tie
        (0.8, 0.8, 0.72),  # a chaos profile's
        (30.0, 5.0, 5.0),  # a shorter HTTP timeout the operator asked for is kept
        (2.0, None, 1.8),  # the library: only the attempt is given
    ],
)
def test_the_http_timeouts_end_inside_the_attempt(
    attempt: float, http: float | None, expected: float
) -> None:
    assert http_timeout_within(attempt, http) == pytest.approx(expected)
