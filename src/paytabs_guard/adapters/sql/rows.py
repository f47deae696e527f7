"""Rows into dataclasses by column name, so a read lists its columns once (in its ``select``).

A dataclass whose fields are named like the columns (label a column in the ``select`` where the
names differ) is built from the row without copying it field by field; a field the row lacks
is a ``KeyError`` at once, not a silent default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)


class _Row(Protocol):
    """A SQLAlchemy ``Row`` (whatever its column types)."""

    @property
    def _mapping(self) -> Mapping[Any, Any]: ...


def from_row(cls: type[D], row: _Row) -> D:
    """``cls`` from the columns of ``row`` named like its fields; other columns are ignored."""
    return from_mapping(cls, row._mapping)


def from_mapping(cls: type[D], columns: Mapping[Any, Any]) -> D:
    """``cls`` from the values of ``columns`` named like its fields (a row by column key)."""
    return cls(**{field.name: columns[field.name] for field in dataclasses.fields(cls)})


Row = Mapping[str, Any]
"""A row's values by column name, as a write sends them."""
