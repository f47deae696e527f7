"""Which digit strings a card network could have issued: its prefix (IIN range) and length.

The log redactor hides every Luhn-valid run of 13-19 digits: hiding an order number by
mistake costs nothing there. Refusing a merchant's text does cost: one 13-19 digit number
in ten passes the Luhn check, and identifiers Gulf merchants store have those lengths (an
Emirates ID, 784-YYYY-NNNNNNN-C, carries a Luhn check digit itself; a Saudi VAT number has 15
digits). So the API refuses only a number a network could have issued (``field_rules.py``):
its length fits a network whose prefix it starts with. The table follows the networks' public
IIN ranges (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay,
Maestro, Mir, RuPay, Troy, mada's own ranges); a range it misses lets a number through to be
stored, and the log redactor still hides it.
"""

from __future__ import annotations

from typing import Final

#: (first and last prefix of a range, as integers of the same number of digits, lengths)
_RANGES: Final[tuple[tuple[int, int, frozenset[int]], ...]] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa (mada's co-branded cards too)
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard's 2-series
    (2200, 2204, frozenset(range(16, 20))),  # Mir
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (300, 305, frozenset({14, *range(16, 20)})),  # Diners Club
    (36, 36, frozenset({14, *range(16, 20)})),
    (38, 39, frozenset({14, *range(16, 20)})),
    (3528, 3589, frozenset(range(16, 20))),  # JCB
    (6011, 6011, frozenset(range(16, 20))),  # Discover
    (644, 649, frozenset(range(16, 20))),
    (65, 65, frozenset(range(16, 20))),  # Discover, RuPay
    (62, 62, frozenset(range(16, 20))),  # UnionPay
    (50, 50, frozenset(range(13, 20))),  # Maestro (Meeza), RuPay
    (56, 69, frozenset(range(13, 20))),  # Maestro and other 5x/6x issuers
    (81, 82, frozenset({16})),  # RuPay
    (9682, 9682, frozenset({16})),  # mada's own range
    (9792, 9792, frozenset({16})),  # Troy
)


def could_be_issued(digits: str) -> bool:
    """Whether ASCII ``digits`` have the prefix and length of a card some network issues."""
    length = len(digits)
    for first, last, lengths in _RANGES:
        if length in lengths and first <= int(digits[: len(str(first))]) <= last:
            return True
    return False
