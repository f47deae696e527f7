"""Amounts as PayTabs writes them: decimal strings with the currency's number of decimals."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# Simulator choice: the three-decimal ISO 4217 currencies PayTabs serves get 3 decimals, every
# other currency 2 (PayTabs samples only ever show 2; see docs/simulator.md).
THREE_DECIMAL_CURRENCIES = frozenset({"KWD", "BHD", "OMR", "JOD", "IQD"})
MAX_AMOUNT = Decimal("9999999999.99")


def currency_decimals(currency: str) -> int:
    return 3 if currency.upper() in THREE_DECIMAL_CURRENCIES else 2


def format_amount(amount: Decimal, currency: str) -> str:
    """``Decimal("12.3")`` in SAR -> ``"12.30"``; in KWD -> ``"12.300"``."""
    return f"{amount.quantize(Decimal(1).scaleb(-currency_decimals(currency))):f}"


def parse_amount(raw: object, currency: str) -> Decimal | None:
    """The amount of a JSON number (parsed as Decimal) or numeric string, or None if invalid.

    Valid means finite, > 0, at most MAX_AMOUNT and no more decimals than the currency has
    (trailing zeros are fine: ``12.300`` SAR is 12.30).
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | Decimal):
        amount = Decimal(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not text or not all(ch.isdigit() or ch == "." for ch in text) or text.count(".") > 1:
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        return None
    step = Decimal(1).scaleb(-currency_decimals(currency))
    if amount != amount.quantize(step):
        return None
    return amount
