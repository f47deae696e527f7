"""Whether the server a request came in through has begun a graceful shutdown.

uvicorn's shutdown first tells each open connection (``BoundedHttpToolsProtocol.shutdown``),
then waits for the requests in flight, up to its grace, and cancels what is left. A request
that is only *waiting* (held by ``Prefer: wait`` until PayTabs is back) would hold the whole
shutdown for its grace and end cut off (503 ``interrupted``, a traceback in the log): it stops
waiting when the shutdown begins and is answered at once, as without the preference.

The event is the server's (kept on uvicorn's per-server state), and each request's scope
carries it as an ASGI extension; under a server without our protocol there is none, and a
held request waits as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

#: The scope extension that holds the server's shutdown event.
EXTENSION: Final = "paytabs_guard.shutdown"
_ATTRIBUTE: Final = "_paytabs_guard_shutdown"


def of_server(server_state: object) -> asyncio.Event:
    """The shutdown event of the server whose state (uvicorn's ``ServerState``) this is."""
    event = getattr(server_state, _ATTRIBUTE, None)
    if not isinstance(event, asyncio.Event):
        event = asyncio.Event()
        setattr(server_state, _ATTRIBUTE, event)
    return event


def of_request(scope: Mapping[str, Any]) -> asyncio.Event | None:
    """The shutdown event of the server the request came in through, if it tells one."""
    event = scope.get("extensions", {}).get(EXTENSION)
    return event if isinstance(event, asyncio.Event) else None
