"""Money is exact: ISO 4217 exponents, no floats, exact JSON numbers on the wire."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paytabs_guard.adapters.paytabs.transformers import decode_json, encode_body
from paytabs_guard.domain.money import InvalidMoney, Money


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [("12.5", "SAR", "12.50"), ("1.25", "KWD", "1.250"), ("7", "BHD", "7.000"),
     ("0.001", "OMR", "0.001"), ("3.100", "JOD", "3.100"), ("100", "JPY", "100")],
)  # fmt: skip
def test_format_uses_the_currency_exponent(amount: str, currency: str, text: str) -> None:
    assert Money.of(amount, currency).format() == text


def test_too_many_decimals_is_refused_with_the_rule() -> None:
    with pytest.raises(InvalidMoney, match="more than 2 decimals"):
        Money.of("1.005", "USD")
    with pytest.raises(InvalidMoney, match="unknown or unsupported currency"):
        Money.of("1", "XXX")
    with pytest.raises(InvalidMoney):
        Money.of(1.5, "USD")  # type: ignore[arg-type]  # a float must be refused at run time too
    with pytest.raises(InvalidMoney):
        Money.of("NaN", "USD")


def test_gateway_amount_strings_are_parsed_exactly() -> None:
    assert Money.parse_gateway("500.00", "usd") == Money(50000, "USD")
    assert Money.parse_gateway("1.250", "KWD") == Money(1250, "KWD")


def test_arithmetic_refuses_mixed_currencies() -> None:
    assert Money.of("1.10", "SAR") + Money.of("2.20", "SAR") == Money.of("3.30", "SAR")
    with pytest.raises(InvalidMoney):
        _ = Money.of("1", "SAR") + Money.of("1", "USD")


@given(minor=st.integers(min_value=1, max_value=10**12), currency=st.sampled_from(["SAR", "KWD"]))
def test_wire_round_trip_is_exact(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    raw = encode_body({"cart_amount": money.amount, "nested": {"a": [money.amount]}})
    decoded = decode_json(raw)
    assert Money.of(decoded["cart_amount"], currency) == money
    assert isinstance(decoded["nested"]["a"][0], Decimal)
