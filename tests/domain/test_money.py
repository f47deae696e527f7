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


@pytest.mark.parametrize(
    ("raw", "currency", "minor"),
    [
        ("12.50", "SAR", 1250),
        ("12.5", "SAR", 1250),
        ("12", "SAR", 1200),
        ("12.500", "SAR", 1250),  # extra decimals that are zeros say the same amount
        ("12.500000", "SAR", 1250),
        ("0", "SAR", 0),
        ("0.05", "SAR", 5),
        ("1.250", "KWD", 1250),
        ("1500", "JPY", 1500),
        ("1500.0", "JPY", 1500),
        ("999999999999999.99", "SAR", 99999999999999999),
    ],
)
def test_plain_gateway_amounts_are_read_exactly(raw: str, currency: str, minor: int) -> None:
    assert Money.parse_gateway(raw, currency) == Money(minor, currency)


@pytest.mark.parametrize("raw", ["12.495", "12.505", "12.501", "12.500001", "0.001"])
def test_a_gateway_amount_finer_than_the_minor_unit_is_refused_not_rounded(raw: str) -> None:
    with pytest.raises(InvalidMoney, match="more than 2 decimals"):
        Money.parse_gateway(raw, "SAR")


@pytest.mark.parametrize(
    "raw",
    [
        "1_2.50", "\u0661\u0662.\u0665\u0660", "\uff11\uff12.\uff15\uff10", " 12.50",
        "12.50 ", "12.50\u00a0", "\t12.50", "+12.50",
        "-12.50", "0012.50", "00", "01", "1.25e1", "1E+3", "12.", ".50", "12,50", "12.50.1",
        "NaN", "Infinity", "", " ", "0x10", "1234567890123456", "1.0000000",
    ],
)  # fmt: skip
def test_a_gateway_amount_outside_the_plain_grammar_is_refused(raw: str) -> None:
    with pytest.raises(InvalidMoney, match="not a plain decimal amount"):
        Money.parse_gateway(raw, "SAR")


@pytest.mark.parametrize("raw", [12, 12.5, None, b"12.50", Decimal("12.50")])
def test_a_gateway_amount_that_is_no_string_is_invalid_money_not_a_type_error(raw: object) -> None:
    # A JSON number where PayTabs writes a string: a TypeError out of the regex was no error
    # a caller of the library (or the callback's reader) expects from an amount.
    with pytest.raises(InvalidMoney, match="is a string such as"):
        Money.parse_gateway(raw, "SAR")  # type: ignore[arg-type]


def test_a_refused_gateway_amount_is_quoted_short() -> None:
    with pytest.raises(InvalidMoney) as caught:
        Money.parse_gateway("9" * 500, "SAR")
    assert len(str(caught.value)) < 120


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


@pytest.mark.parametrize("minor", [1250.7, Decimal("12.5"), "1250", True])
def test_minor_units_must_be_an_int(minor: object) -> None:
    # Money(1250.7, "SAR") would go on the wire as 12.507...; a Decimal 12.5 as 0.125.
    with pytest.raises(InvalidMoney, match="minor_units must be an int"):
        Money(minor, "SAR")  # type: ignore[arg-type]


def test_true_is_not_one_riyal() -> None:
    with pytest.raises(InvalidMoney, match="never float or bool"):
        Money.of(True, "SAR")


def test_the_caller_s_decimal_context_never_rounds_an_amount() -> None:
    # Any library may lower the thread's decimal precision; money does its sums in its own.
    import decimal

    with decimal.localcontext() as context:
        context.prec = 6
        assert Money.of("12345.67", "SAR").minor_units == 1234567
        assert Money(1234567, "SAR").amount == Decimal("12345.67")
        assert Money(1234567, "SAR").format() == "12345.67"


@pytest.mark.parametrize(
    "raw",
    [
        Decimal("1e300000"),
        Decimal("1e1000000"),
        "12345678901234567890123456.789",
        "1000000000000000",
    ],
)
def test_an_amount_past_fifteen_integer_digits_is_refused_at_once(raw: Decimal | str) -> None:
    # 1e300000 is eight characters; scaling it took seconds, and 1e1000000 raised
    # decimal.Overflow, which is not InvalidMoney. (As text, an exponent is refused outright.)
    with pytest.raises(InvalidMoney, match="more than 15 digits before the point"):
        Money.of(raw, "KWD")


def test_decimals_past_the_currency_s_are_refused_however_far_out() -> None:
    with pytest.raises(InvalidMoney, match="more than 2 decimals"):
        Money.of("1." + "0" * 5000 + "1", "SAR")
    with pytest.raises(InvalidMoney, match="more than 2 decimals"):
        Money.of(Decimal("1e-999999"), "SAR")
    assert Money.of("12.500", "SAR").minor_units == 1250  # trailing zeros are not decimals
    assert Money.of("999999999999999.999", "KWD").minor_units == 999999999999999999
