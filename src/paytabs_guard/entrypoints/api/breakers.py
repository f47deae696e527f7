"""Circuit breaker statistics (merchant scope) and manual control (admin scope).

With shared breaker state (REDIS_URL and CIRCUIT_BREAKER_SHARED), forcing or resetting a
breaker applies here at once and is stored in Redis and published, so every instance and worker
sharing that Redis applies it too, and it survives restarts. Without it, or when Redis cannot
take it, the change holds in the one worker process that answered; the answer's ``applies_to``
says which happened. ``reset`` returns the breaker to closed with an empty window.
"""

from __future__ import annotations

from typing import Final, Literal

from fastapi import APIRouter

from paytabs_guard.resilience.manual import ManualAction, apply_manual

from .dependencies import AdminDep, ClientDep, ContainerDep
from .errors import shown_id
from .problems import Problem
from .schemas import PROBLEM_RESPONSE, NoBody
from .stats_schemas import BreakerControlOut, BreakerStatsOut
from .strict_query import STRICT_QUERY

router = APIRouter(
    prefix="/payments/v2/circuit-breaker", tags=["operations"], dependencies=STRICT_QUERY
)
_PROBLEM = PROBLEM_RESPONSE

Action = Literal["open", "close", "reset"]

_MANUAL: Final[dict[str, ManualAction]] = {
    "open": "forced_open",
    "close": "forced_closed",
    "reset": "reset",
}
_SHARED_NOTE: Final = (
    "Stored in Redis and published: every instance and worker sharing this Redis applies it "
    "within about a second, and instances started later apply it too."
)
_LOCAL_NOTE: Final = (
    "Shared breaker state is off (it needs REDIS_URL and CIRCUIT_BREAKER_SHARED=true): this "
    "changed only the worker process that answered. Other workers (serve --workers N) and "
    "other instances did not change, and a restart forgets it; with more than one, turn "
    "shared breaker state on."
)
_UNSHARED_NOTE: Final = (
    "Redis could not take it ({error}): this changed only the worker process that answered. "
    "Other workers and instances did not change; repeat the request once Redis answers."
)


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
    response_model=BreakerControlOut,
    summary="Force a breaker open or closed, or reset it (admin)",
    description="`open` rejects every call of the breaker's operation family until `reset`; "
    "`close` admits every call and never trips until `reset`; `reset` returns it to closed "
    "with an empty window. With shared breaker state (REDIS_URL and CIRCUIT_BREAKER_SHARED) "
    "the command is stored in Redis and published, so every instance and worker sharing that "
    "Redis applies it within about a second and it survives restarts; without it, or when "
    "Redis cannot take it, only the worker process that answered changes. `applies_to` says "
    "which happened; the change here is immediate either way, and Redis is never waited on "
    "for longer than its operation timeout (0.5 s).",
    responses={401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def control_breaker(
    name: str, action: Action, container: ContainerDep, _admin: AdminDep, _body: NoBody = None
) -> BreakerControlOut:
    breakers = container.gateway.breakers
    if name not in breakers:
        known = ", ".join(breakers.names())
        raise Problem(
            "breaker_not_found",
            "No such circuit breaker",
            404,
            f"There is no breaker {shown_id(name, 'name')}; the breakers are: {known}.",
        )
    breaker = breakers[name]
    shared = container.shared_breakers
    if shared is None:
        apply_manual(breaker, _MANUAL[action])
        applies_to, note = "this_process", _LOCAL_NOTE
    else:
        outcome = await shared.command(name, _MANUAL[action])
        if outcome.shared:
            applies_to, note = "every_instance", _SHARED_NOTE
        else:
            applies_to, note = "this_process", _UNSHARED_NOTE.format(error=outcome.error)
    return BreakerControlOut(
        breakers={name: breaker.snapshot().as_dict()}, applies_to=applies_to, note=note
    )
