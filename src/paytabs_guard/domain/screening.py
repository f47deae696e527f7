"""Whether a gateway result can be this payment's at all.

A result that cannot is quarantined: not applied, the state unchanged, and the reason returned
here goes to the caller, who keeps the result for a human and alerts; when it says money moved
on the payment's own cart, the payment keeps a note of it too (``needs_review``). Profile,
cart id, amount and currency must equal our record. Checked, in order:

- profile, cart id and currency equal the payment's;
- a ``register`` is never a payment;
- the payment's own transaction (sale, auth or payment request) fits its intent, is the
  ``tran_ref`` we know (or the first we learn while UNKNOWN), and is for the payment's amount;
- when it is authorised (``A``), what PayTabs says it *charged* (``tran_total`` in
  ``tran_currency``) is the payment's amount too: a zero or different total, or another
  currency, is quarantined. Only with ``currency_conversion`` (the merchant lets PayTabs convert
  currencies on the profile) may the charge be in another currency; it is then recorded;
- an APM's completing sale (``previous_tran_ref`` = our payment request) is the only one;
- a capture, void or release follows our auth; a refund follows our sale, APM sale or capture;
  follow-ups are for more than zero and at most the payment's amount, and one already recorded
  keeps its kind and amount; one capture per payment;
  a refund never takes more than captured - refunded - other pending refunds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .gateway_results import FOLLOW_UP_TYPES, GatewayResult, GatewayStatus, Signal, TranType
from .records import pending_total
from .states import MONEY_MOVED_STATES

if TYPE_CHECKING:
    from .payment import Payment


def quarantine_reason(
    payment: Payment, result: GatewayResult, *, currency_conversion: bool = False
) -> str | None:
    """Why ``result`` cannot be ``payment``'s, or None when it may be."""
    if result.profile_id != payment.profile_id:
        return f"profile_id {result.profile_id} is not this payment's {payment.profile_id}"
    if result.cart_id != payment.cart_id:
        return f"cart_id {result.cart_id!r} is not this payment's {payment.cart_id!r}"
    if result.amount.currency != payment.amount.currency:
        return f"currency {result.amount.currency} is not this payment's {payment.amount.currency}"
    if result.tran_type is TranType.REGISTER:
        return f"{describe(result)}: a card registration belongs to no payment"
    if result.tran_type in FOLLOW_UP_TYPES:
        return _follow_up(payment, result)
    if result.tran_type is TranType.SALE and result.previous_tran_ref is not None:
        problem = _settlement(payment, result)
    else:
        problem = _originating(payment, result)
    return problem or _charged(payment, result, currency_conversion=currency_conversion)


#: What a result says happened to the customer's money: moved or held.
_MONEY_SIGNALS = frozenset({Signal.CHARGED, Signal.AUTHORIZED, Signal.CAPTURED, Signal.REFUNDED})


def needs_review(payment: Payment, result: GatewayResult) -> bool:
    """A quarantined ``result`` that the payment must show (a conflict note, a
    ``payment.conflict`` event): PayTabs, under our profile and for one of this payment's cart
    ids, says money moved or was held (a charge in another amount or currency, a second sale on
    the cart, a refund beyond what is left). Left unnoted, the payment would wait for its
    customer, or look settled, while the customer's money sat at PayTabs. Only signed results
    reach the checks, so nobody but PayTabs can add a note."""
    return (
        result.profile_id == payment.profile_id
        and (result.cart_id == payment.cart_id or result.cart_id in payment.abandoned_cart_ids)
        and result.signal in _MONEY_SIGNALS
    )


def describe(result: GatewayResult) -> str:
    """A result in a few words for reasons and logs: ``refund TST123 (A)``."""
    status = result.status.value if result.status else "no status"
    return f"{result.tran_type} {result.tran_ref} ({status})"


def _originating(payment: Payment, result: GatewayResult) -> str | None:
    fits = (
        {TranType.SALE, TranType.PAYMENT_REQUEST}
        if payment.tran_type is TranType.SALE
        else {TranType.AUTH}
    )
    if result.tran_type not in fits:
        return f"{describe(result)} does not fit this {payment.tran_type} payment"
    record = payment.transaction(result.tran_ref)
    ours = record is not None and record.tran_type not in FOLLOW_UP_TYPES
    if payment.tran_ref is not None and not ours:
        return (
            f"{describe(result)} is not this payment's transaction {payment.tran_ref}; "
            "a second attempt on one cart needs review"
        )
    return _same_amount(payment, result)


def _settlement(payment: Payment, result: GatewayResult) -> str | None:
    # Pending APM flow: PayTabs reports the payment as a new sale whose previous_tran_ref is the
    # "Payment Request" (docs/paytabs.md §10).
    if payment.tran_type is not TranType.SALE:
        return f"{describe(result)} does not fit this {payment.tran_type} payment"
    if payment.tran_ref is not None and result.previous_tran_ref != payment.tran_ref:
        return f"{describe(result)} completes {result.previous_tran_ref}, not {payment.tran_ref}"
    for record in payment.transactions:
        if (
            record.tran_ref != result.tran_ref
            and record.previous_tran_ref is not None
            and record.signal is Signal.CHARGED
        ):
            return f"{describe(result)} would charge again after sale {record.tran_ref}"
    return _same_amount(payment, result)


def _follow_up(payment: Payment, result: GatewayResult) -> str | None:
    if result.tran_type is not TranType.REFUND and payment.tran_type is not TranType.AUTH:
        return f"{describe(result)} needs an auth; this is a {payment.tran_type} payment"
    if result.amount.minor_units <= 0 or payment.amount < result.amount:
        return f"{describe(result)} for {result.amount} does not fit a payment of {payment.amount}"
    known = payment.transaction(result.tran_ref)
    if known is not None and (known.tran_type, known.amount) != (result.tran_type, result.amount):
        # A transaction does not change its kind or amount: this is not the one recorded (and
        # answering it "duplicate" by its dedupe key would hide the mismatch).
        return (
            f"{describe(result)} for {result.amount}: {known.tran_ref} is recorded as a "
            f"{known.tran_type} for {known.amount}"
        )
    # A refund may follow a capture or an APM sale not seen yet. Until money moved not every
    # parent it could have is known, so it is left to the table (ILLEGAL: deliver it later).
    parents_known = payment.tran_ref is not None and (
        result.tran_type is not TranType.REFUND or payment.state in MONEY_MOVED_STATES
    )
    if parents_known:
        parents = _parents(payment, result.tran_type)
        if result.previous_tran_ref not in parents:
            return (
                f"{describe(result)} follows {result.previous_tran_ref}, "
                f"which is not one of this payment's ({', '.join(sorted(parents))})"
            )
    if result.tran_type is TranType.CAPTURE:
        for record in payment.transactions:
            if (
                record.tran_type is TranType.CAPTURE
                and record.tran_ref != result.tran_ref
                and record.signal is not Signal.FOLLOW_UP_FAILED
            ):
                return f"{describe(result)} after capture {record.tran_ref}: one per payment"
    if result.tran_type is TranType.REFUND:
        return _refund(payment, result)
    return None


def _refund(payment: Payment, result: GatewayResult) -> str | None:
    takes_money = result.signal in (Signal.REFUNDED, Signal.FOLLOW_UP_PENDING)
    if not takes_money or payment.state not in MONEY_MOVED_STATES:
        return None  # a failed refund takes nothing; before the sale the table decides
    known = payment.transaction(result.tran_ref)
    if known is not None and known.signal is Signal.REFUNDED and known.amount == result.amount:
        # This refund is counted already (PayTabs' callback after its direct answer): a repeat
        # takes nothing more, and holding it against what is left flagged every large refund.
        return None
    others = pending_total(
        payment.transactions, TranType.REFUND, payment.amount.currency, excluding=result.tran_ref
    )
    available = payment.captured - payment.refunded - others
    if available < result.amount:
        return f"{describe(result)} for {result.amount} exceeds the {available} refundable"
    return None


def _same_amount(payment: Payment, result: GatewayResult) -> str | None:
    if result.amount != payment.amount:
        return f"{describe(result)} is for {result.amount}, the payment for {payment.amount}"
    return None


def _charged(payment: Payment, result: GatewayResult, *, currency_conversion: bool) -> str | None:
    # None: the source does not report a charge (only results built in code); the PayTabs
    # transformer always fills it, with zero when tran_total is empty or "0".
    charged = result.charged
    if result.status is not GatewayStatus.AUTHORIZED or charged is None:
        return None
    if charged.minor_units <= 0:
        return f"{describe(result)} is authorised but PayTabs reports nothing charged"
    if charged.currency != payment.amount.currency:
        if currency_conversion:
            return None
        return (
            f"{describe(result)} charged {charged}, the payment is for {payment.amount} "
            "(set PAYTABS_CURRENCY_CONVERSION=true if the profile converts currencies)"
        )
    if charged != payment.amount:
        return f"{describe(result)} charged {charged}, the payment is for {payment.amount}"
    return None


def _parents(payment: Payment, tran_type: TranType) -> set[str]:
    """The transactions a follow-up of ``tran_type`` may refer to."""
    parents = {payment.tran_ref} if payment.tran_ref is not None else set()
    if tran_type is TranType.REFUND:  # refunds follow the sale, the APM sale or the capture
        parents |= {
            record.tran_ref
            for record in payment.transactions
            if record.tran_type in (TranType.SALE, TranType.CAPTURE)
        }
    return parents
