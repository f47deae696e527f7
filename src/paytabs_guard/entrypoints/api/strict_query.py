"""Unknown query parameters are refused on the JSON API, as unknown body fields are, and so is
a parameter that takes one value sent twice.

A filter with a typo (``GET /payments/v2?created_after=…`` for ``created_from``) used to be
ignored: the merchant got every payment and no hint why. Bodies already refuse fields they do
not declare (``extra="forbid"``); this dependency does the same for the query string. It
goes on the JSON API's routers only: the browser return reads PayTabs' fields from the query
itself, and pages take parameters of their own (``lang``).

``?limit=1&limit=3`` was read as 3 (the last wins), where a proxy, a log or the client's own
code may read 1: the query string's duplicate key, refused like one in a JSON body.
"""

from __future__ import annotations

import types
import weakref
from collections import Counter
from typing import Annotated, Any, Final, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

_SHOWN_NAME_LENGTH: Final = 40  # a longer name is reported without being repeated
# By id(route), with a weak reference that proves the id still names the same route: routes are
# unhashable (Starlette compares them by path), and a process that builds many apps (the tests)
# reuses the ids of routes that are gone.
_DECLARED: dict[int, tuple[weakref.ref[APIRoute], frozenset[str], frozenset[str]]] = {}
_MANY: Final = (list, tuple, set, frozenset)


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's type holds several values (``list[str] | None``): it may repeat."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return origin in _MANY


def _query_names(dependant: Dependant) -> tuple[set[str], set[str]]:
    """(every query parameter's name, the names that take one value)."""
    names = {str(param.alias) for param in dependant.query_params}
    singles = {
        str(param.alias)
        for param in dependant.query_params
        if not _takes_many(param.field_info.annotation)
    }
    for sub in dependant.dependencies:
        more, more_singles = _query_names(sub)
        names |= more
        singles |= more_singles
    return names, singles


def _declared(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    entry = _DECLARED.get(id(route))
    if entry is not None and entry[0]() is route:
        return entry[1], entry[2]
    names, singles = _query_names(route.dependant)
    _DECLARED[id(route)] = (weakref.ref(route), frozenset(names), frozenset(singles))
    return frozenset(names), frozenset(singles)


async def refuse_unknown_query(request: Request) -> None:
    """422 naming each query parameter the route does not take."""
    if not request.scope.get("query_string"):
        return  # most requests (every create) carry none: nothing to parse
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared, singles = _declared(route)
    unknown = [name for name in request.query_params if name not in declared]
    sent = Counter(name for name, _ in request.query_params.multi_items())
    repeated = [name for name in singles if sent[name] > 1]
    if not unknown and not repeated:
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
    for name in sorted(repeated):
        errors.append(
            {
                "type": "repeated",
                "loc": ("query", name),
                "msg": f"Sent {sent[name]} times; send it once (it takes one value)",
                "input": None,
            }
        )
    raise RequestValidationError(errors)


#: ``dependencies=`` for the JSON API's routers.
STRICT_QUERY: Final = [Depends(refuse_unknown_query)]
