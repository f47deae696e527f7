"""Page cursors: what one listing hands out, only that listing takes back."""

from __future__ import annotations

import pytest

from paytabs_guard.entrypoints.api.cursors import (
    decode_cursor,
    decode_number_cursor,
    encode_cursor,
)
from paytabs_guard.entrypoints.api.problems import Problem


def test_a_cursor_gives_back_its_position() -> None:
    assert decode_cursor("after", encode_cursor("after", "pay_1:x")) == "pay_1:x"
    assert decode_number_cursor("seq", encode_cursor("seq", 42)) == 42
    assert encode_cursor("seq", None) is None
    assert decode_cursor("seq", None) is None


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor("dead", 7),  # another listing's
        encode_cursor("seq", "seven"),  # not a number
        encode_cursor("seq", 10**18),  # longer than a sequence number
        encode_cursor("seq", ""),  # no position
        "not base64!",
    ],
)
def test_anything_else_is_a_400(cursor: str | None) -> None:
    with pytest.raises(Problem) as raised:
        decode_number_cursor("seq", cursor)
    assert raised.value.status == 400


@pytest.mark.parametrize("position", ["\x00", "pay_\x00x", "pay_\u0663", "pay\nx", "pay x\t"])
def test_a_position_we_never_hand_out_is_a_400(position: str) -> None:
    # Ids and numbers are printable ASCII; a NUL would reach PostgreSQL as its own error.
    with pytest.raises(Problem) as raised:
        decode_cursor("after", encode_cursor("after", position))
    assert raised.value.status == 400
