"""The server key never shows in a failed call's traceback with its frames' local variables:
what error trackers (Sentry's ``include_local_variables``, on by default) and
``traceback.TracebackException(..., capture_locals=True)`` record with every failure. On both
HTTP paths, over real loopback sockets: a connection refused, and a server that never answers
(the read timeout, and the write's resolution by query after it)."""

from __future__ import annotations

import socket
import traceback
from collections.abc import Iterator

import pytest

from paytabs_guard import (
    HostedPageRequest,
    Money,
    PayTabs,
    PayTabsError,
    RetryConfig,
)
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import run_simulator
from testkit.threaded import entered_in_thread

pytestmark = pytest.mark.anyio

#: No retries: one failure, one traceback to read.
ONCE = RetryConfig(retries=0)


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback port that refuses connections: bound (so that nothing else takes it) but not
    listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


def _with_locals(error: BaseException) -> str:
    """The failure as a tracker records it: every chained exception, every frame's locals."""
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


def _page() -> HostedPageRequest:
    return HostedPageRequest(
        cart_id="order-1", amount=Money.of("150.00", "SAR"), description="Membership"
    )


async def test_a_refused_connection_s_traceback_holds_no_key(
    http_path: str, refusing_url: str
) -> None:
    async with PayTabs(
        profile_id=DEFAULT_PROFILE_ID,
        server_key=DEFAULT_SERVER_KEY,
        base_url=refusing_url,
        retry=ONCE,
    ) as paytabs:
        with pytest.raises(PayTabsError) as refused:
            await paytabs.create_payment_page(_page())
    recorded = _with_locals(refused.value)
    assert "ConnectError" in recorded  # the transport's frames are in it
    assert DEFAULT_SERVER_KEY not in recorded


async def test_an_unanswered_call_s_traceback_holds_no_key(http_path: str) -> None:
    hanging = SimulatorConfig(faults=Faults(hang_rate=1.0))
    with entered_in_thread(lambda: run_simulator(hanging)) as simulator:
        async with PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
            timeout=0.3,
            retry=ONCE,
        ) as paytabs:
            with pytest.raises(PayTabsError) as unanswered_query:
                await paytabs.query_transaction("TST0000000000001")
            with pytest.raises(PayTabsError) as unanswered_create:
                await paytabs.create_payment_page(_page())
    for error in (unanswered_query.value, unanswered_create.value):
        recorded = _with_locals(error)
        assert "ReadTimeout" in recorded
        assert DEFAULT_SERVER_KEY not in recorded
