"""Results from the gateway: the one way a result reaches a payment, and asking PayTabs for one.

Callbacks, return-triggered queries, reconciliation and page expiry all end in ``apply_result``
(``Payment.apply_gateway_result`` behind the payment's version check or under its row lock,
deduped, committed with its events).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from paytabs_guard.domain import (
    GatewayResult,
    GatewayStatus,
    Outcome,
    OutcomeKind,
    Payment,
    PaymentState,
    ResultSource,
)
from paytabs_guard.service.payment_steps import (
    PaymentDeps,
    UnknownGatewayTransaction,
    change_payment,
    get_payment,
)
from paytabs_guard.service.ports import DeliverySeen, StaleVersion, UnitOfWork


async def apply_result(
    deps: PaymentDeps,
    result: GatewayResult,
    *,
    dedupe_key: str | None = None,
    exact_key: str | None = None,
    on_outcome: Callable[[Outcome], object] | None = None,
) -> tuple[Payment, Outcome]:
    """The one way a gateway result (callback, return-triggered query, reconciliation) is
    applied: find the payment, dedupe, hold the result against the table, commit with events.

    The business checks run before dedupe, as the receiver's order says
    (docs/webhook-security.md, checks 6 and 7). The inbox remembers ``dedupe_key`` only for a
    delivery that was not quarantined: a mismatched result must not make the genuine one with
    the same key a "duplicate", and the genuine one having taken the key must not make a later
    mismatched one a "duplicate" either. For a quarantined delivery it remembers ``exact_key``
    (a hash of its bytes) instead, so an exact repeat is a duplicate (no second alert) while a
    different mismatch is quarantined again.

    Raises UnknownGatewayTransaction when no payment owns the result, so a callback receiver
    can answer 5xx and PayTabs retries later instead of the result being dropped.

    ``on_outcome`` is told the outcome once it holds: after the commit that stores it (the
    unit of work's after-commit hook), or at once for a duplicate or a result that cannot
    apply yet, which store nothing. A failed commit tells it nothing.

    It is tried first without the payment's row lock (:func:`_apply_unlocked`), which on
    PostgreSQL takes two round trips instead of six. Whatever that attempt cannot finish on
    its own, it leaves unwritten to the locked attempt (:func:`_apply_locked`), whose answers
    are the reference: another transaction saved the payment since it was read, the delivery
    was seen before, or the result is quarantined or cannot apply yet.
    """
    try:
        done = await _apply_unlocked(deps, result, dedupe_key, on_outcome)
    except (StaleVersion, DeliverySeen):
        done = None  # nothing was written
    if done is not None:
        return done
    return await _apply_locked(deps, result, dedupe_key, exact_key, on_outcome)


async def _apply_unlocked(
    deps: PaymentDeps,
    result: GatewayResult,
    dedupe_key: str | None,
    on_outcome: Callable[[Outcome], object] | None,
) -> tuple[Payment, Outcome] | None:
    """Read the payment without its lock, apply the result in memory, and commit it behind the
    payment's version check, with the delivery's dedupe row sent in the same statement (every
    write requires that row to be new). So the payment is written only if nobody saved it
    since it was read (else StaleVersion) and only for a new delivery (else DeliverySeen),
    and nothing at all is written in either case. A quarantined or illegal result returns
    None, unwritten: their inbox rules (``exact_key``, no key kept) live in the locked path.
    """
    async with deps.uow() as uow:
        payment = await _find(uow, result, for_update=False)
        answers_hold = payment.answers_hold(result)
        outcome = payment.apply_gateway_result(
            result, at=deps.clock(), currency_conversion=deps.currency_conversion
        )
        if outcome.kind in (OutcomeKind.QUARANTINED, OutcomeKind.ILLEGAL):
            return None
        _settle_hold(payment, answers_hold)
        if dedupe_key is not None:
            await uow.inbox.record_with_commit(
                dedupe_key, source=result.source.value, now=deps.clock()
            )
        await _keep_card(uow, payment, result, outcome)
        if on_outcome is not None:
            uow.after_commit(lambda: on_outcome(outcome))
        await uow.commit()
        return payment, outcome


_EXACT_REPEAT = "exact repeat of a quarantined delivery"


async def _apply_locked(
    deps: PaymentDeps,
    result: GatewayResult,
    dedupe_key: str | None,
    exact_key: str | None,
    on_outcome: Callable[[Outcome], object] | None,
) -> tuple[Payment, Outcome]:
    """Lock the payment, run the business checks, dedupe, apply, commit: each step decided
    under the row lock, in the receiver's fixed order (business checks, then dedupe).

    The business checks (``Payment.quarantine_reason``) only read the payment, so a duplicate
    is answered with the payment unchanged. A mismatched delivery is deduped by ``exact_key``
    only: the genuine result's ``dedupe_key`` being taken must not hide it as a "duplicate".
    """
    async with deps.uow() as uow:
        payment = await _find(uow, result, for_update=True)
        mismatch = payment.quarantine_reason(result, currency_conversion=deps.currency_conversion)
        key = dedupe_key if mismatch is None else exact_key
        if key is not None and not await uow.inbox.record(
            key, source=result.source.value, now=deps.clock()
        ):
            seen = Outcome(
                OutcomeKind.DUPLICATE,
                payment.state,
                payment.state,
                "delivery seen before" if mismatch is None else _EXACT_REPEAT,
                (),
            )
            _tell(on_outcome, seen)
            return payment, seen
        answers_hold = payment.answers_hold(result)
        outcome = payment.apply_gateway_result(
            result, at=deps.clock(), currency_conversion=deps.currency_conversion
        )
        _settle_hold(payment, answers_hold)
        if outcome.kind is OutcomeKind.ILLEGAL:
            # e.g. a refund before its capture: keep nothing, let the sender deliver it again
            _tell(on_outcome, outcome)
            return payment, outcome
        await _keep_card(uow, payment, result, outcome)
        if on_outcome is not None:
            uow.after_commit(lambda: on_outcome(outcome))
        await uow.commit()
        return payment, outcome


async def _find(uow: UnitOfWork, result: GatewayResult, *, for_update: bool) -> Payment:
    """The payment the result belongs to: by its transaction, the one it follows up, or its
    cart id. Raises UnknownGatewayTransaction when none owns it."""
    payment = None
    for ref in (result.tran_ref, result.previous_tran_ref):
        if ref and payment is None:
            payment = await uow.payments.get_by_tran_ref(ref, for_update=for_update)
    if payment is None:
        payment = await uow.payments.get_by_cart_id(result.cart_id, for_update=for_update)
    if payment is None:
        raise UnknownGatewayTransaction(
            f"no payment for cart {result.cart_id!r} / tran_ref {result.tran_ref!r}"
        )
    return payment


def _settle_hold(payment: Payment, answers_hold: bool) -> None:
    """The follow-up in flight has its answer: release its hold. ``answers_hold`` is asked
    before the result is applied (``Payment.answers_hold``: a transaction it did not know), so a
    late repeat of an earlier follow-up's answer never frees a later one's hold."""
    if answers_hold:
        payment.release_follow_up()


def _tell(on_outcome: Callable[[Outcome], object] | None, outcome: Outcome) -> None:
    if on_outcome is not None:
        on_outcome(outcome)


async def _keep_card(
    uow: UnitOfWork, payment: Payment, result: GatewayResult, outcome: Outcome
) -> None:
    """The token of a card the payment asked to save arrives with its authorised result."""
    if (
        payment.saved_card_id is not None
        and result.token
        and outcome.kind is OutcomeKind.APPLIED
        and result.status is GatewayStatus.AUTHORIZED
        and result.previous_tran_ref is None  # the payment's own sale or auth
    ):
        await uow.cards.issued(
            payment.saved_card_id, payment.id, result.token, result.tran_ref, result.card
        )


#: Told of each outcome a sync committed itself (after the commit), for the metrics.
OnOutcome = Callable[[Outcome], object]


async def sync_payment(
    deps: PaymentDeps,
    payment_id: str,
    *,
    on_outcome: OnOutcome | None = None,
    source: ResultSource = ResultSource.RECONCILIATION,
) -> Payment:
    """Ask PayTabs what it holds for an undecided payment's cart and apply it; for a decided
    one, what became of its unsettled follow-ups (:func:`settle_follow_ups`).

    Also settles what only the absence of a result can tell: a create that never reached
    PayTabs fails (no record), a page nobody paid before its TTL expires. Raises
    GatewayNotReached / GatewayOutcomeUnknown when PayTabs cannot be asked.

    ``on_outcome`` hears what this call did, and only that: a callback that settled the
    payment while PayTabs was being asked is the callback's transition, and the result this
    call then holds against it is a duplicate (comparing the payment before and after would
    count the callback's change as this query's too). ``source``: who asks, for the
    history of what only the absence of a result decides (a merchant's query, reconciliation).
    """
    payment = await get_payment(deps, payment_id)
    if payment.state.is_final:
        if payment.awaits_follow_up:
            return await settle_follow_ups(deps, payment, on_outcome=on_outcome)
        return payment
    now = deps.clock()
    waiting_until = no_record_before(deps, payment)
    if payment.state is PaymentState.INITIATING and waiting_until and now < waiting_until:
        # Its create (or recurring charge) may still be under way in another request, and its
        # answer is that request's to apply: stepping in here (unknown, then failed for a page
        # whose address "was lost") turned a page PayTabs had just opened into a 409.
        return payment
    # What was asked about: every step below acts only if the payment is still there, under
    # its lock (a create that moved on to a new attempt, or got its page, meanwhile is left
    # alone: the results are about a cart it no longer uses).
    cart_id, read_version = payment.cart_id, payment.version
    results = await deps.gateway.transactions(cart_id)
    if payment.state is PaymentState.INITIATING:
        # the create call never finished (a crash, a lost answer): say so before any result
        def ambiguous(p: Payment, at: datetime) -> Outcome | None:
            return p.initiation_ambiguous(at=at) if p.version == read_version else None

        payment = await _change(deps, payment_id, ambiguous, on_outcome)
        if payment.state is not PaymentState.UNKNOWN or payment.cart_id != cart_id:
            return payment

    def no_record(p: Payment, at: datetime) -> Outcome | None:
        still = p.state is PaymentState.UNKNOWN and p.cart_id == cart_id
        return p.unknown_resolved_no_record(at=at, source=source) if still else None

    if _only_a_lost_page(payment, results):
        # PayTabs holds the page, but its address was lost with the create's answer and a
        # query does not give it: nobody can pay it. Waiting in awaiting_customer with no
        # page would lose the sale quietly; failed tells the merchant to create a new payment
        # (the rule the create itself follows after its last attempt, docs/states.md rule 9).
        return await _change(deps, payment_id, no_record, on_outcome)
    for result in results:
        payment, _ = await apply_result(deps, result, on_outcome=on_outcome)
    payment = await _release_if_lapsed(deps, payment)
    if any(result.status is not None for result in results):
        return payment
    if payment.state is PaymentState.UNKNOWN and not results:
        if waiting_until is not None and now < waiting_until:
            # Nothing at PayTabs *yet*: the request may still be on its way (a recurring
            # charge that lands after its payment was failed charges a customer the merchant
            # then charges again). It fails only once no request of it can still arrive.
            return payment
        return await _change(deps, payment_id, no_record, on_outcome)
    lapsed = payment.expires_at is not None and now >= payment.expires_at
    if lapsed and payment.state in _EXPIRABLE:
        return await _change(deps, payment_id, _expire_if_still_waiting, on_outcome)
    return payment


def no_record_before(deps: PaymentDeps, payment: Payment) -> datetime | None:
    """Until when :func:`sync_payment` waits for a payment's own request, or None for a payment
    it does not wait for.

    * ``unknown`` recurring charge (no page, so no page deadline): PayTabs may receive its
      last request until the send window after it became unknown, and a charge that lands
      takes money with no customer present; PayTabs holding nothing before then proves
      nothing. A hosted page's create is not waited for: a page that lands late is one
      nobody has the address of, so it can never be paid, and failing at once lets the
      merchant open a new one while the customer is still there.
    * ``initiating``: its request may still be running. Its last send may go out until the
      send window after its last commit, and the query that resolves an unclear answer to
      it can take as long again, so twice the send window."""
    if payment.state is PaymentState.UNKNOWN:
        charge = payment.expires_at is None  # a recurring charge; a page has its deadline
        return payment.updated_at + deps.send_window if charge else None
    if payment.state is PaymentState.INITIATING:
        return payment.updated_at + 2 * deps.send_window
    return None


def _only_a_lost_page(payment: Payment, results: Sequence[GatewayResult]) -> bool:
    """An unknown payment without a page address, for whose cart PayTabs holds only unpaid
    pages (a paid page, or a charge, has a status)."""
    return (
        payment.state is PaymentState.UNKNOWN
        and payment.redirect_url is None
        and bool(results)
        and all(result.status is None for result in results)
    )


async def _change(
    deps: PaymentDeps,
    payment_id: str,
    step: Callable[[Payment, datetime], Outcome | None],
    on_outcome: OnOutcome | None,
) -> Payment:
    """:func:`change_payment` with ``step``, telling ``on_outcome`` what it did once committed."""
    done: list[Outcome] = []

    def change(payment: Payment, at: datetime) -> None:
        outcome = step(payment, at)
        if outcome is not None:
            done.append(outcome)

    payment = await change_payment(deps, payment_id, change)
    if on_outcome is not None:
        for outcome in done:
            on_outcome(outcome)
    return payment


async def settle_follow_ups(
    deps: PaymentDeps, payment: Payment, *, on_outcome: OnOutcome | None = None
) -> Payment:
    """Ask PayTabs what became of ``payment``'s unsettled follow-ups (a hold whose answer was
    lost, a refund or capture reported pending) and apply it like a direct answer.

    Only queries: a follow-up is never sent again from here. PayTabs lists every transaction of
    the cart, follow-ups included; the ones that are news about an unsettled follow-up
    (``Payment.settles_follow_up``: the hold's answer, found by parent and kind among the
    transactions the payment does not know, or the later status of a known pending one) go
    through :func:`apply_result`, so the refund is counted once, its event emitted once and the
    hold released, whoever applies it first (a late direct answer, another reconciler). A
    follow-up PayTabs still reports pending stays pending (its amount stays reserved). A hold
    PayTabs holds no answer for is dropped once its request can no longer reach PayTabs.
    """
    results = await deps.gateway.transactions(payment.cart_id)
    # Chosen before any is applied: the first answer releases the hold, and another unknown
    # follow-up of the same parent listed with it (two answers, one a refund made elsewhere)
    # must still count, not be dropped as old news.
    news = [result for result in results if payment.settles_follow_up(result)]
    for result in news:
        payment, _ = await apply_result(deps, result, on_outcome=on_outcome)
    return await _release_if_lapsed(deps, payment)


async def _release_if_lapsed(deps: PaymentDeps, payment: Payment) -> Payment:
    """PayTabs, just asked, showed no answer to the payment's hold: drop it once its request
    can no longer reach PayTabs (the longest write, the send window, has passed since it was
    taken). Until then the request may still land; after it, PayTabs' silence is the answer.
    (It waited ``HOLD_STALE_AFTER``, 15 minutes, in which /process said "confirmed, nothing
    refunded" while every new refund was refused as waiting for PayTabs.)"""
    lapse = deps.send_window  # however long: before its end the request may still land
    if payment.hold is None or deps.clock() - payment.hold.started_at < lapse:
        return payment
    return await change_payment(
        deps, payment.id, lambda p, at: p.release_lapsed_hold(at=at, after=lapse)
    )


_EXPIRABLE = frozenset({PaymentState.AWAITING_CUSTOMER, PaymentState.PENDING, PaymentState.ON_HOLD})


def _expire_if_still_waiting(payment: Payment, at: datetime) -> Outcome | None:
    # Under the row lock: a callback, or another instance at the same deadline, may have
    # settled it since it was read; the loser of that race changes and emits nothing.
    if payment.state in _EXPIRABLE:
        return payment.expire_page(at=at)
    return None
