"""Strict JSON: every edge case of checklist item 22, and money as Decimal."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paytabs_guard.entrypoints.api.strict_json import InvalidJson, parse_strict_json


def reason_of(raw: bytes, **limits: int | bool) -> str:
    with pytest.raises(InvalidJson) as caught:
        parse_strict_json(raw, **limits)  # type: ignore[arg-type]
    return caught.value.reason


IPN = (
    b'{"tran_ref":"TST0000000000001","cart_id":"cart_1","cart_amount":"100.00",'
    b'"tran_total":100.50,"payment_result":{"response_status":"A"}}'
)


def test_a_callback_body_parses_with_amounts_as_decimal() -> None:
    value = parse_strict_json(IPN, require_object=True)
    assert value["payment_result"] == {"response_status": "A"}
    assert value["tran_total"] == Decimal("100.50")
    assert isinstance(value["tran_total"], Decimal)


def test_integers_stay_integers() -> None:
    assert parse_strict_json(b"[1, -2, 0]") == [1, -2, 0]


# --- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"a":"\xff"}', b'{"a":"\xc3"}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xc0\xaf"}'],
    ids=["invalid-byte", "truncated", "encoded-surrogate", "overlong"],
)
def test_invalid_utf8(raw: bytes) -> None:
    assert reason_of(raw) == "invalid_utf8"


def test_a_byte_order_mark_is_refused() -> None:
    assert reason_of(b"\xef\xbb\xbf" + IPN) == "bom"


def test_utf16_is_not_json_here() -> None:
    # json.loads(bytes) would sniff UTF-16; we decode UTF-8 only.
    assert reason_of('{"a":1}'.encode("utf-16-le")) == "invalid_json"


@pytest.mark.parametrize(
    "raw", [b'"\\ud800"', b'{"\\udc00":1}', b'["a\\ud83d"]'], ids=["value", "key", "half-pair"]
)
def test_lone_surrogates_are_refused(raw: bytes) -> None:
    assert reason_of(raw) == "lone_surrogate"


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    assert parse_strict_json(b'"\\ud83d\\ude00"') == "\N{GRINNING FACE}"


# --- duplicate keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"response_status":"A","response_status":"D"}',
        b'{"payment_result":{"response_status":"A","response_status":"D"}}',
        b'[{"x":1},{"y":[{"z":1,"z":1}]}]',
    ],
    ids=["top", "nested", "in-array"],
)
def test_duplicate_keys_at_any_level_are_refused(raw: bytes) -> None:
    assert reason_of(raw) == "duplicate_key"


def test_the_duplicate_key_is_not_echoed() -> None:
    with pytest.raises(InvalidJson) as caught:
        parse_strict_json(b'{"secret_field":1,"secret_field":2}')
    assert "secret_field" not in str(caught.value)


# --- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e999}',
        b'{"a":-1e999}',
        b'{"a":1e99999999999999999999}',
    ],
)
def test_non_finite_numbers_are_refused(raw: bytes) -> None:
    assert reason_of(raw) == "non_finite_number"


def test_the_largest_double_still_parses() -> None:
    assert parse_strict_json(b"1.7976931348623157e308") == Decimal("1.7976931348623157e308")


def test_overlong_number_literals_are_refused() -> None:
    assert reason_of(b"[" + b"9" * 65 + b"]") == "number_too_long"
    assert reason_of(b"[0." + b"1" * 70 + b"]") == "number_too_long"
    assert reason_of(b"9" * 5000) == "number_too_long"  # int() would refuse past 4300 digits


# --- nesting and sizes ----------------------------------------------------------------------


def test_nesting_at_the_limit_parses() -> None:
    raw = b"[" * 32 + b"]" * 32
    assert parse_strict_json(raw, max_depth=32) is not None


def test_nesting_past_the_limit_is_refused() -> None:
    assert reason_of(b"[" * 33 + b"]" * 33, max_depth=32) == "too_deep"
    assert reason_of(b'{"a":' * 33 + b"1" + b"}" * 33, max_depth=32) == "too_deep"


def test_many_brackets_side_by_side_are_not_nesting() -> None:
    raw = b"[" + b",".join([b'{"a":[1]}'] * 40) + b"]"  # 81 openers, three deep
    assert len(parse_strict_json(raw, max_depth=3)) == 40
    assert reason_of(raw, max_depth=2) == "too_deep"


def test_deep_enough_to_crash_the_stdlib_is_refused_cleanly() -> None:
    assert reason_of(b"[" * 200_000) == "too_deep"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = json.dumps({"note": "[[[[{{{{" * 20 + '\\"]]'}).encode()
    assert parse_strict_json(raw, max_depth=2)["note"].startswith("[[[[")


@pytest.mark.parametrize(
    "raw",
    [b'{"a":"' + b"x" * 101 + b'"}', b'{"' + b"k" * 101 + b'":1}', b'["' + b"x" * 101 + b'"]'],
    ids=["value", "key", "array-item"],
)
def test_strings_past_the_limit_are_refused(raw: bytes) -> None:
    assert reason_of(raw, max_string=100) == "string_too_long"


def test_a_long_string_deep_inside_is_found() -> None:
    raw = b'{"a":{"b":[{"c":["' + b"x" * 101 + b'"]}]}}'
    assert reason_of(raw, max_string=100) == "string_too_long"


def test_objects_with_too_many_members_are_refused() -> None:
    raw = json.dumps({f"k{i}": i for i in range(11)}).encode()
    assert reason_of(raw, max_keys=10) == "too_many_keys"


# --- shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"{", b'{"a":1,}', b"{'a':1}", b'{"a":1} x', b'{"a":"\x01"}', b"01"]
)
def test_malformed_documents(raw: bytes) -> None:
    assert reason_of(raw) == "invalid_json"


@pytest.mark.parametrize("raw", [b"[]", b'"s"', b"1", b"null", b"true"])
def test_require_object(raw: bytes) -> None:
    assert parse_strict_json(raw) is not None or raw == b"null"
    assert reason_of(raw, require_object=True) == "not_an_object"


# --- unicode is data ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["محمد العربي", "\N{GRINNING FACE} Zoë", "nul\u0000byte", "\u202eevil.exe\u202c", "a\u200bb"],
    ids=["arabic", "emoji", "nul", "rtl-override", "zero-width"],
)
def test_unicode_in_values_is_returned_unchanged(text: str) -> None:
    raw = json.dumps({"customer_name": text}).encode()
    assert parse_strict_json(raw)["customer_name"] == text
    raw_utf8 = json.dumps({"customer_name": text}, ensure_ascii=False).encode()
    assert parse_strict_json(raw_utf8)["customer_name"] == text


# --- never another exception ----------------------------------------------------------------


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_invalid_json(raw: bytes) -> None:
    with contextlib.suppress(InvalidJson):
        parse_strict_json(raw)


JSON_ISH = st.text(st.sampled_from('{}[]":,0123456789.eE+-\\ua NIfinty'), max_size=60)


@given(JSON_ISH)
def test_json_shaped_text_parses_or_raises_invalid_json(text: str) -> None:
    with contextlib.suppress(InvalidJson):
        parse_strict_json(text.encode())


# --- the walk over the strings is skipped only where it could find nothing ------------------

_STRING_PARTS = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(["\\u0000", "\\ud800", "\\uDFFF", "\\ud83d\\ude00", "\\\\u0000", "\x00"]),
    ),
    max_size=6,
)


@given(
    st.lists(_STRING_PARTS, min_size=1, max_size=4),
    st.integers(min_value=1, max_value=120),
    st.booleans(),
)
def test_skipping_the_string_walk_never_lets_a_string_rule_through(
    strings: list[list[str]], max_string: int, allow_nul: bool
) -> None:
    # Each string is spliced in raw (escapes as escapes); what the walk alone would refuse
    # must still be refused with the quick check in front of it.
    body = "[" + ",".join('"' + "".join(parts).replace('"', "") + '"' for parts in strings) + "]"
    try:
        decoded = json.loads(body)
    except ValueError:
        return  # not JSON at all: refused before any string rule
    walk_refuses = any(
        len(value) > max_string
        or any("\ud800" <= char <= "\udfff" for char in value)
        or (not allow_nul and "\x00" in value)
        for value in decoded
    )
    if walk_refuses:
        with pytest.raises(InvalidJson) as caught:
            parse_strict_json(body.encode("utf-8", "surrogatepass"), max_string=max_string,
                              allow_nul=allow_nul)  # fmt: skip
        assert caught.value.reason in (
            "string_too_long", "lone_surrogate", "nul_character", "invalid_utf8",
        )  # fmt: skip
