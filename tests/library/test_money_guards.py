"""``Money`` with what is not money: a number or None in arithmetic and comparisons, a currency
that is not a code, and amount text that ``Decimal()`` reads but no one writes as an amount."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest

from paytabs_guard import InvalidMoney, Money

TEN = Money.of("10.00", "SAR")


def wrong(value: object) -> Any:
    """``value`` as the caller passed it, past the type hints."""
    return value


@pytest.mark.parametrize(
    "apply",
    [operator.add, operator.sub, operator.lt, operator.le, operator.gt, operator.ge],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
@pytest.mark.parametrize("other", [1, 0, 10.0, None, "10.00"], ids=repr)
def test_money_with_a_non_money_is_python_s_type_error(
    apply: Callable[[Any, Any], object], other: object
) -> None:
    # Was AttributeError ("'int' object has no attribute 'currency'") from inside Money.
    with pytest.raises(TypeError):
        apply(TEN, other)
    with pytest.raises(TypeError):
        apply(other, TEN)


def test_a_non_money_operand_gets_its_own_turn() -> None:
    """NotImplemented, not an error: Python then asks the other operand."""

    class Tally:
        # What mypy calls an unsafe overlap with Money.__add__ is the point: Money gives way.
        def __radd__(self, money: Money) -> str:  # type: ignore[misc]
            return f"tallied {money}"

        def __gt__(self, money: Money) -> bool:  # asked for Money < Tally
            return True

    assert wrong(TEN) + Tally() == "tallied 10.00 SAR"
    assert wrong(TEN) < Tally()


def test_sum_of_money_starts_from_a_money_zero() -> None:
    assert sum([TEN, TEN], Money(0, "SAR")) == Money.of("20.00", "SAR")
    with pytest.raises(TypeError):
        sum(wrong([TEN, TEN]))  # starts from the int 0: Python's TypeError, not AttributeError
    with pytest.raises(TypeError):
        sum([TEN, wrong(1)], Money(0, "SAR"))


def test_equality_with_a_non_money_is_false_not_an_error() -> None:
    money = Money(1000, "SAR")
    assert money != wrong(1000)
    assert money != wrong("10.00 SAR")
    assert money == TEN


@pytest.mark.parametrize("currency", [None, 682, b"SAR"], ids=repr)
def test_a_currency_that_is_not_a_code_is_invalid_money(currency: object) -> None:
    with pytest.raises(InvalidMoney, match="ISO 4217 code such as 'SAR'"):
        Money(1, wrong(currency))
    with pytest.raises(InvalidMoney, match="ISO 4217 code such as 'SAR'"):
        Money.of("1.00", wrong(currency))


@pytest.mark.parametrize(
    "text",
    [
        "1_000",
        "1_0.00",
        "\u0661\u0662",  # Arabic-Indic 12
        "\u0661\u0662.\u0665\u0660",
        "\uff11\uff12",  # fullwidth 12
        "\u0967\u0968",  # Devanagari 12
        " 12.50",
        "12.50 ",
        "12.50\n",
        "1e2",
        "1E+2",
        "+12.50",
        "12.",
        ".50",
        "",
    ],
)
def test_amount_text_is_ascii_digits_with_one_optional_point(text: str) -> None:
    # Decimal() reads every one of these ("1_000" as 1000, "١٢" as 12).
    with pytest.raises(InvalidMoney, match="not a plain decimal amount"):
        Money.of(text, "SAR")


@pytest.mark.parametrize(
    ("text", "minor"),
    [("12.50", 1250), ("12", 1200), ("0", 0), ("-5.00", -500), ("12.500", 1250)],
)
def test_plain_amount_text_still_reads(text: str, minor: int) -> None:
    assert Money.of(text, "SAR") == Money(minor, "SAR")
