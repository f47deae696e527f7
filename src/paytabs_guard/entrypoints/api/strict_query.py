"""Unknown query parameters are refused on the JSON API, as unknown body fields are.

A filter with a typo (``GET /payments/v2?created_after=…`` for ``created_from``) used to be
ignored: the merchant got every payment and no hint why. Bodies already refuse fields they do
not declare (``extra="forbid"``); this dependency does the same for the query string. It
goes on the JSON API's routers only: the browser return reads PayTabs' fields from the query
itself, and pages take parameters of their own (``lang``).
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

_SHOWN_NAME_LENGTH: Final = 40  # a longer name is reported without being repeated
# By id(route), with a weak reference that proves the id still names the same route: routes are
# unhashable (Starlette compares them by path), and a process that builds many apps (the tests)
# reuses the ids of routes that are gone.
_DECLARED: dict[int, tuple[weakref.ref[APIRoute], frozenset[str]]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {str(param.alias) for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared(route: APIRoute) -> frozenset[str]:
    entry = _DECLARED.get(id(route))
    if entry is not None and entry[0]() is route:
        return entry[1]
    names = frozenset(_query_names(route.dependant))
    _DECLARED[id(route)] = (weakref.ref(route), names)
    return names


async def refuse_unknown_query(request: Request) -> None:
    """422 naming each query parameter the route does not take."""
    if not request.scope.get("query_string"):
        return  # most requests (every create) carry none: nothing to parse
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared(route)
    unknown = [name for name in request.query_params if name not in declared]
    if not unknown:
        return
    takes = ", ".join(sorted(declared)) or "none"
    errors: list[dict[str, Any]] = []
    for name in dict.fromkeys(unknown):
        shown = name if len(name) <= _SHOWN_NAME_LENGTH and name.isprintable() else "?"
        errors.append(
            {
                "type": "extra_forbidden",
                "loc": ("query", shown),
                "msg": f"Unknown parameter; this endpoint takes: {takes}",
                "input": None,
            }
        )
    raise RequestValidationError(errors)


#: ``dependencies=`` for the JSON API's routers.
STRICT_QUERY: Final = [Depends(refuse_unknown_query)]
