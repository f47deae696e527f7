"""Binding a compiled statement's values (``compiled.CompiledSql.bind``): every value in the
statement's order, each processed by its type exactly once, whatever the number of values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Numeric, String, Table, insert, select
from sqlalchemy.engine import Dialect, make_url

from paytabs_guard.adapters.sql.compiled import CompiledSql, compiled_for

_TABLE = Table(
    "bind_probe",
    MetaData(),
    Column("id", String, primary_key=True),
    Column("amount", Numeric(12, 2, asdecimal=True)),
    Column("note", String),
)


def _dialect(url: str) -> Dialect:
    return make_url(url).get_dialect()()


POSTGRES, SQLITE = _dialect("postgresql+asyncpg://"), _dialect("sqlite+aiosqlite://")


def _by_hand(compiled: CompiledSql, values: dict[str, Any]) -> tuple[Any, ...]:
    merged = {**compiled.constants, **values}
    return tuple(
        merged[name] if process is None else process(merged[name])
        for name, process in zip(compiled.names, compiled.processors, strict=True)
    )


@pytest.mark.parametrize("dialect", [POSTGRES, SQLITE], ids=["postgresql", "sqlite"])
def test_an_insert_binds_every_column_in_order(dialect: Dialect) -> None:
    compiled = compiled_for(dialect, insert(_TABLE), ("id", "amount", "note"))
    values = {"id": "pay_1", "amount": Decimal("12.50"), "note": None}
    bound = compiled.bind(values)
    assert len(bound) == 3
    assert bound == _by_hand(compiled, values)
    assert compiled._replace(binder=None).bind(values) == bound


@pytest.mark.parametrize("dialect", [POSTGRES, SQLITE], ids=["postgresql", "sqlite"])
def test_one_value_and_a_constant_bind_as_a_tuple(dialect: Dialect) -> None:
    one = compiled_for(dialect, select(_TABLE.c.id).where(_TABLE.c.id == "fixed"))
    assert one.bind({}) == ("fixed",)
    by_value = compiled_for(dialect, insert(_TABLE), ("id",))
    assert by_value.bind({"id": "pay_2"}) == ("pay_2",)


def test_processed_values_are_processed_once_and_the_rest_left_as_they_are() -> None:
    calls: list[object] = []

    def tagged(value: object) -> str:
        calls.append(value)
        return f"<{value}>"

    names = tuple(f"v{index}" for index in range(70))
    processors = tuple(tagged if index % 7 == 3 else None for index in range(70))
    compiled = compiled_for(POSTGRES, insert(_TABLE), ("id",))
    compiled = compiled._replace(names=names, processors=processors, constants={}, binder=None)
    values = {name: index for index, name in enumerate(names)}
    bound = compiled.bind(values)
    processed = range(3, 70, 7)
    assert bound == tuple(f"<{i}>" if i in processed else i for i in range(70))
    assert calls == list(processed)  # each once, in order
