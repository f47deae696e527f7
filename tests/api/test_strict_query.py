"""The declared query names are cached per route, and a cache entry left by a route that is
gone never answers for a new route that happens to get the same id."""

from __future__ import annotations

import weakref
from typing import Annotated

from fastapi import Query
from fastapi.routing import APIRoute

from paytabs_guard.entrypoints.api import strict_query


async def _endpoint(
    limit: Annotated[int, Query()] = 1,
    cursor: str | None = None,
    state: Annotated[list[str] | None, Query()] = None,
) -> None:
    return None


async def _other(zzz: str | None = None) -> None:
    return None


def test_a_stale_entry_under_a_reused_id_is_not_trusted() -> None:
    route = APIRoute("/x", _endpoint)
    gone = APIRoute("/y", _other)
    # What a dead route at this address would have left behind:
    strict_query._DECLARED[id(route)] = (weakref.ref(gone), frozenset({"zzz"}), frozenset())
    expected = (frozenset({"limit", "cursor", "state"}), frozenset({"limit", "cursor"}))
    assert strict_query._declared(route) == expected  # state is a list: it may repeat
    assert strict_query._declared(route) == expected  # now cached for this route
