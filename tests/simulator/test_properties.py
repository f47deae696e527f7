"""Property tests: the encoder against a byte-by-byte PHP urlencode, amounts round-trip."""

from __future__ import annotations

import string
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from paytabs_simulator.cards import luhn_valid, mask
from paytabs_simulator.money import currency_decimals, format_amount, parse_amount
from paytabs_simulator.signing import php_urlencode

UNRESERVED = frozenset((string.ascii_letters + string.digits + "-_.").encode())


def php_urlencode_reference(value: str) -> str:
    """PHP's urlencode() as its C source reads, one UTF-8 byte at a time."""
    out = []
    for byte in value.encode("utf-8"):
        if byte == 0x20:
            out.append("+")
        elif byte in UNRESERVED:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


@given(st.text())
def test_urlencode_matches_php_for_any_text(value: str) -> None:
    assert php_urlencode(value) == php_urlencode_reference(value)


@given(
    st.sampled_from(["SAR", "KWD", "USD", "BHD"]),
    st.integers(min_value=1, max_value=999_999_999_999),
)
def test_amount_round_trips_through_its_string(currency: str, minor_units: int) -> None:
    amount = Decimal(minor_units).scaleb(-currency_decimals(currency))
    text = format_amount(amount, currency)
    assert len(text.split(".")[1]) == currency_decimals(currency)
    assert parse_amount(text, currency) == amount


@given(st.text(alphabet=string.digits, min_size=15, max_size=18))
def test_masked_number_keeps_only_first_six_and_last_four(prefix: str) -> None:
    check = next(d for d in string.digits if luhn_valid(prefix + d))
    number = prefix + check
    masked = mask(number).replace(" ", "")
    assert masked == number[:6] + "#" * (len(number) - 10) + number[-4:]
