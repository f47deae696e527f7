"""The amount an idempotency fingerprint hashes: one string per value."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from paytabs_guard.entrypoints.api.field_rules import AMOUNT_SHAPE
from paytabs_guard.entrypoints.api.idempotency import canonical_amount, fingerprint

_amounts = st.from_regex(AMOUNT_SHAPE, fullmatch=True)


@given(_amounts, _amounts)
def test_two_amounts_share_a_form_exactly_when_they_are_equal(a: str, b: str) -> None:
    assert (canonical_amount(a) == canonical_amount(b)) == (Decimal(a) == Decimal(b))


def test_the_form_keeps_what_clients_usually_send() -> None:
    # Keys stored before the rule hashed the amount as sent: the usual form must not change.
    assert canonical_amount("12.50") == "12.50"
    assert canonical_amount("0.01") == "0.01"
    assert canonical_amount("5") == canonical_amount("5.000") == "5.00"
    assert canonical_amount("1.250") == "1.25"
    assert canonical_amount("0.125") == "0.125"


def test_only_the_amount_is_read_by_value() -> None:
    body = {"amount": "5.0", "currency": "SAR", "description": "5.0"}
    same = fingerprint("POST", "/payments/v2/create", body | {"amount": "5.00"})
    assert fingerprint("POST", "/payments/v2/create", body) == same
    assert fingerprint("POST", "/payments/v2/create", body | {"description": "5.00"}) != same
    # a capture without an amount is hashed as it is
    assert fingerprint("POST", "/x", {"amount": None}) != fingerprint("POST", "/x", {})
