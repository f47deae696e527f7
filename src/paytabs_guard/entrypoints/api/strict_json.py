"""Parse a body as strict JSON: a verified callback's (docs/webhook-security.md, checklist item
22) and, in the front door, every JSON body sent to the merchant API.

Python's ``json`` is lenient where a payments receiver must not be: it keeps the *last* of two
duplicate keys (``{"s":"A","s":"D"}`` is ``D``), accepts ``NaN`` and ``Infinity``, turns ``1e999``
into ``inf``, recurses until ``RecursionError`` on deep nesting and lets ``"\\ud800"`` (a lone
surrogate that no UTF-8 encoder can write back) through. Each of these is an
:class:`InvalidJson` here, with a fixed ``reason`` that is safe to show the sender.

Numbers with a fraction or exponent become :class:`~decimal.Decimal`: money is never a float.

Unicode itself is data, not an attack: right-to-left overrides, Arabic and emoji are returned
as they are, and so is ``\\u0000`` unless ``allow_nul`` is off (the merchant API turns it off:
PostgreSQL's text cannot store it). Escaping them is the job of the layer that *renders* them
(the log formatter, the HTML template, the CSV export), which knows its own syntax.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any, Final, Literal

Reason = Literal[
    "invalid_utf8",
    "bom",
    "invalid_json",
    "duplicate_key",
    "non_finite_number",
    "number_too_long",
    "too_deep",
    "string_too_long",
    "too_many_keys",
    "lone_surrogate",
    "nul_character",
    "not_an_object",
]

_BOM: Final = b"\xef\xbb\xbf"
# Whole strings (so brackets inside them do not count) and brackets. The two alternatives inside
# a string are disjoint, so the match is linear: no catastrophic backtracking.
_DEPTH_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class InvalidJson(ValueError):
    """The body is not acceptable JSON; ``reason`` names the rule it broke."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


def declares_json(content_type: str | None) -> bool:
    """Whether a Content-Type is one FastAPI decodes as JSON: ``application/json`` or
    ``application/*+json``, any parameters (a missing header is not)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json") and media.count("/") == 1
    )


def utf8_charset(content_type: str | None) -> bool:
    """Whether a Content-Type's ``charset`` (if it names one) is UTF-8, the only one a JSON
    body is read in: ``charset=latin-1`` would be decoded as UTF-8 all the same."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _check_depth(text: str, max_depth: int) -> None:
    # Before json.loads: its C scanner recurses, and deep input raises RecursionError, not
    # ValueError. Unbalanced or otherwise invalid input is left to json.loads to reject.
    if text.count("{") + text.count("[") <= max_depth:
        return  # no deeper than its openers, even counting those inside strings: the usual body
    depth = 0
    for match in _DEPTH_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise InvalidJson("too_deep", f"nesting deeper than {max_depth}")
        elif token in ("]", "}"):
            depth -= 1


def _check_string(value: str, max_string: int, allow_nul: bool) -> None:
    if len(value) > max_string:
        raise InvalidJson("string_too_long", f"a string is longer than {max_string} characters")
    if _SURROGATE.search(value):
        raise InvalidJson("lone_surrogate", "a \\u escape encodes half a surrogate pair")
    if not allow_nul and "\x00" in value:
        raise InvalidJson("nul_character", "a string holds U+0000")


def parse_strict_json(
    raw: bytes,
    *,
    max_depth: int = 32,
    max_string: int = 4096,
    max_keys: int = 256,
    max_number: int = 64,
    require_object: bool = False,
    allow_nul: bool = True,
) -> Any:
    """Decode ``raw`` (UTF-8, no BOM) into Python values, or raise :class:`InvalidJson`.

    ``max_depth`` bounds nesting of arrays and objects; ``max_string`` the characters of any
    key or string; ``max_keys`` the members of one object; ``max_number`` the characters of one
    number literal. With ``require_object`` the top level must be an object. Without
    ``allow_nul`` a U+0000 in any key or string is refused: PostgreSQL's text cannot hold it, so
    a value bound for a column must not carry one.
    """
    if raw.startswith(_BOM):
        raise InvalidJson("bom", "remove the UTF-8 byte order mark")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("invalid_utf8", "the body is not valid UTF-8") from None
    _check_depth(text, max_depth)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(items) > max_keys:
            raise InvalidJson("too_many_keys", f"an object has more than {max_keys} members")
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                # The key is sender data: say that a key repeats, not which (nothing echoed).
                raise InvalidJson("duplicate_key", "an object repeats a key")
            result[key] = value
        return result

    def number(literal: str) -> None:
        if len(literal) > max_number:
            raise InvalidJson("number_too_long", f"a number is longer than {max_number} characters")

    def integer(literal: str) -> int:
        number(literal)
        return int(literal)

    def decimal(literal: str) -> Decimal:
        number(literal)
        try:
            value = Decimal(literal)
            # 1e999: what every float-based consumer would read as inf is refused here too.
            finite = math.isfinite(float(value))
        except ArithmeticError:  # an exponent past what Decimal can even hold
            finite = False
        if not finite:
            raise InvalidJson("non_finite_number", "a number is out of the IEEE 754 double range")
        return value

    def constant(name: str) -> None:
        raise InvalidJson("non_finite_number", f"{name} is not JSON")

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_float=decimal,
            parse_int=integer,
            parse_constant=constant,
        )
    except InvalidJson:
        raise
    except (ValueError, ArithmeticError, RecursionError):
        raise InvalidJson("invalid_json", "the body is not a JSON document") from None
    if _may_break_string_rules(text, max_string, allow_nul):
        _check_strings(value, max_string, allow_nul)
    if require_object and not isinstance(value, dict):
        raise InvalidJson("not_an_object", "the top level must be a JSON object")
    return value


def _may_break_string_rules(text: str, max_string: int, allow_nul: bool) -> bool:
    """Whether any decoded string could be too long, a lone surrogate or hold a NUL. The
    usual body can't, and is not walked: no string is longer than the whole text, and the
    decoder refuses raw control characters and the UTF-8 decode raw surrogates, so those two
    can only come from a ``\\uD800``-``\\uDFFF`` or ``\\u0000`` escape."""
    if len(text) > max_string:
        return True
    if _SURROGATE_ESCAPE.search(text):
        return True
    return not allow_nul and "\\u0000" in text


# An escaped backslash before "u" matches too, which only costs the walk.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _check_strings(value: Any, max_string: int, allow_nul: bool) -> None:
    # Iterative, so a wide document cannot exhaust the stack; keys are strings too.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item, max_string, allow_nul)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
