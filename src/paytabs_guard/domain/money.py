"""Money as an exact decimal with the ISO 4217 exponent of its currency. Never a float."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation
from typing import Final

# ISO 4217 minor-unit exponents for the currencies PayTabs lists, plus common neighbours.
# KWD, BHD, OMR, JOD, IQD, LYD and TND have three decimals; JPY none.
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    "AED": 2, "BHD": 3, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "IDR": 2, "INR": 2,
    "IQD": 3, "JOD": 3, "JPY": 0, "KWD": 3, "LYD": 3, "MAD": 2, "OMR": 3, "PKR": 2,
    "QAR": 2, "SAR": 2, "TND": 3, "TRY": 2, "USD": 2, "AZN": 2,
}  # fmt: skip


# A gateway amount as PayTabs writes it: ASCII digits without a leading zero (a lone "0" before
# the point is fine), then an optional point and digits. Decimal() would also take a sign,
# spaces, "_", an exponent and other scripts' digits (Arabic-Indic ones); none of those is an
# amount on the wire. [0-9] is ASCII only (\d is not). Bounded: 15 integer digits keep every
# amount's minor units within a signed 64-bit column; 6 decimals leave room for trailing zeros.
_GATEWAY_AMOUNT: Final = re.compile(r"(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,6})?")
# An amount written as text for Money.of: ASCII digits, one optional point with digits after
# it, an optional minus (Money may be negative). Decimal() takes more, none of it how an amount
# is written, and each a way for a slip to become another amount: "_" between digits ("1_000",
# "1_00" alike), other scripts' digits ("١٢" is 12), surrounding spaces, an exponent ("1e2").
_TEXT_AMOUNT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
MAX_INTEGER_DIGITS: Final = 15
"""The most digits before the point an amount may have (as on the wire, above)."""

# Money's own arithmetic context: the caller's (``decimal.getcontext()``, thread-local and
# changeable by any library) must not round an amount. Precision enough for any amount within
# the bound, and a trap on anything inexact: a rounding here is a bug, never a result.
_EXACT: Final = Context(prec=40, traps=[Inexact, InvalidOperation])


class InvalidMoney(ValueError):
    """An amount or currency that cannot be money: unknown currency, too many decimals, NaN."""


def currency_exponent(currency: str) -> int:
    """The number of decimals of ``currency``; raises InvalidMoney for an unknown code."""
    if not isinstance(currency, str):  # None (an unset setting) is no currency either
        raise InvalidMoney(
            f"a currency is an ISO 4217 code such as 'SAR', not {type(currency).__name__}"
        )
    try:
        return CURRENCY_EXPONENTS[currency.upper()]
    except KeyError:
        raise InvalidMoney(f"unknown or unsupported currency {currency!r}") from None


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency, kept as integer minor units so equality and sums are exact."""

    minor_units: int
    currency: str

    def __post_init__(self) -> None:
        # Exactly int: a float (12.507), a Decimal ("12.5" read as minor units) or a bool
        # would go on the wire as something other than the amount meant.
        if type(self.minor_units) is not int:
            raise InvalidMoney(
                f"minor_units must be an int, got {type(self.minor_units).__name__}: "
                "use Money.of('12.50', currency) for a major-unit amount"
            )
        currency_exponent(self.currency)  # a code it knows, and a str at all
        object.__setattr__(self, "currency", self.currency.upper())

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str) -> Money:
        """Parse a major-unit amount (``"12.50"``), exactly: more decimals than the currency
        allows, or more than ``MAX_INTEGER_DIGITS`` digits before the point, fail; nothing is
        ever rounded, whatever the caller's decimal context. Text is ASCII digits with one
        optional point (and an optional minus): ``"1_000"``, ``"١٢"``, ``" 12.50"`` and
        ``"1e2"`` are refused, though ``Decimal()`` would read them."""
        if isinstance(amount, float | bool):  # a float never becomes money, nor True 1.00
            raise InvalidMoney("amounts must be Decimal, str or int, never float or bool")
        exponent = currency_exponent(currency)
        shown = repr(amount) if len(str(amount)) <= 32 else repr(str(amount)[:32] + "...")
        if isinstance(amount, str) and not _TEXT_AMOUNT.fullmatch(amount):
            raise InvalidMoney(
                f"{shown} is not a plain decimal amount such as '12.50' (ASCII digits, one "
                "optional point)"
            )
        try:
            value = amount if isinstance(amount, Decimal) else Decimal(amount)
        except (DecimalException, ValueError, TypeError):
            raise InvalidMoney(f"{shown} is not a decimal amount") from None
        if not value.is_finite():
            raise InvalidMoney(f"{shown} is not a finite amount")
        # Bounded before any arithmetic: "1e300000" is eight characters and a long division.
        if value and value.adjusted() >= MAX_INTEGER_DIGITS:
            raise InvalidMoney(
                f"{shown} has more than {MAX_INTEGER_DIGITS} digits before the point"
            )
        try:
            minor = value.scaleb(exponent, context=_EXACT).to_integral_exact(context=_EXACT)
        except DecimalException:
            raise InvalidMoney(
                f"{shown} has more than {exponent} decimals, the exponent of {currency.upper()}"
            ) from None
        return cls(int(minor), currency)

    @classmethod
    def parse_gateway(cls, amount: str, currency: str) -> Money:
        """Read an amount string exactly as a gateway sends it (``"12.50"``), never rounded.

        Decimals beyond the currency's are accepted only when they are zeros (``"12.500"`` SAR
        is 12.50); ``"12.505"`` is finer than a halala, so it is not an amount in SAR at all.
        Anything but the plain grammar above (``"+12.50"``, ``" 12.50"``, ``"1.25e1"``,
        ``"0012.50"``) is refused too: InvalidMoney either way.
        """
        if not isinstance(amount, str):  # a JSON number where PayTabs writes a string
            raise InvalidMoney(
                f"a gateway amount is a string such as '12.50', not {type(amount).__name__}"
            )
        if not _GATEWAY_AMOUNT.fullmatch(amount):
            shown = amount if len(amount) <= 32 else amount[:32] + "..."
            raise InvalidMoney(f"{shown!r} is not a plain decimal amount such as '12.50'")
        return cls.of(Decimal(amount), currency)

    @classmethod
    def parse_request(cls, amount: str, currency: str) -> Money:
        """An amount a client wrote (already checked as a plain decimal string), by the one
        rule every write of the API states: at most as many decimal places as the currency
        has, zeros included. ``"1.000"`` SAR is refused, where :meth:`parse_gateway` reads a
        gateway's ``"1.000"`` as 1.00: a client that writes three places for a two-place
        currency has its currency or amount wrong, and is told so before anything happens."""
        exponent = currency_exponent(currency)
        _, _, decimals = amount.partition(".")
        if len(decimals) > exponent:
            raise InvalidMoney(
                f"{currency.upper()} takes at most {exponent} decimal places; "
                f"this amount has {len(decimals)}"
            )
        return cls.of(amount, currency)

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    @property
    def amount(self) -> Decimal:
        """The major-unit amount with exactly ``exponent`` decimals."""
        return Decimal(self.minor_units).scaleb(-self.exponent, context=_EXACT)

    def format(self) -> str:
        """The amount as a plain string with the currency's decimals: ``12.50``, ``1.250``."""
        return f"{self.amount:.{self.exponent}f}"

    # Arithmetic and order are between two Money of one currency. Anything else (a number,
    # None) is NotImplemented, so that Python raises its TypeError ("unsupported operand") or
    # tries the other operand's method, rather than failing inside on `other.currency`.
    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidMoney(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.minor_units + other.minor_units, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.minor_units - other.minor_units, self.currency)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.minor_units < other.minor_units

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.minor_units <= other.minor_units

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"
