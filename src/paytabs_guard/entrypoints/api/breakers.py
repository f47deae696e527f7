"""Circuit breaker statistics (merchant scope) and manual control (admin scope).

Forcing a breaker acts on this instance only: with several instances, send the request to each
(or let shared state carry *automatic* openings). ``reset`` returns it to closed with an empty
window.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from .dependencies import AdminDep, ClientDep, ContainerDep
from .problems import Problem
from .schemas import PROBLEM_RESPONSE, BreakerStatsOut, NoBody
from .strict_query import STRICT_QUERY

router = APIRouter(
    prefix="/payments/v2/circuit-breaker", tags=["operations"], dependencies=STRICT_QUERY
)
_PROBLEM = PROBLEM_RESPONSE

Action = Literal["open", "close", "reset"]


@router.get(
    "/stats",
    response_model=BreakerStatsOut,
    summary="Every breaker's state, rolling window and lifetime totals",
    responses={401: _PROBLEM},
)
async def breaker_stats(container: ContainerDep, _client: ClientDep) -> BreakerStatsOut:
    snapshots = container.gateway.breakers.snapshot()
    return BreakerStatsOut(breakers={name: s.as_dict() for name, s in snapshots.items()})


@router.post(
    "/{name}/{action}",
    response_model=BreakerStatsOut,
    summary="Force a breaker open or closed, or reset it (admin)",
    responses={401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def control_breaker(
    name: str, action: Action, container: ContainerDep, _admin: AdminDep, _body: NoBody = None
) -> BreakerStatsOut:
    breakers = container.gateway.breakers
    if name not in breakers:
        known = ", ".join(breakers.names())
        raise Problem(
            "breaker_not_found",
            "No such circuit breaker",
            404,
            f"There is no breaker {name!r}; the breakers are: {known}.",
        )
    breaker = breakers[name]
    if action == "open":
        breaker.force_open()
    elif action == "close":
        breaker.force_closed()
    else:
        breaker.reset()
    return BreakerStatsOut(breakers={name: breaker.snapshot().as_dict()})
