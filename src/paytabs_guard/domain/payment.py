"""The Payment aggregate: one payment attempt, and the one place its state changes.

Every source of truth goes through ``Payment.apply_gateway_result`` (callback, browser return,
query, reconciliation, follow-up response); our own steps are the command methods
(``mark_initiating``, ``page_created``, …). Both end in ``_move``, the single guarded function
that checks ``TRANSITIONS``, writes history and queues events. Applying the same thing twice
changes nothing, older news never moves a payment back, and a completed payment never fails.

How a gateway result is judged is in results.py; money bookkeeping and the guards before a
follow-up is sent in ledger.py; the follow-up hold in follow_ups.py; input checks in checks.py.

Our own steps return APPLIED or DUPLICATE (a harmless repeat) and raise ``InvalidTransition``
otherwise. The caller holds the payment's row lock while applying, then saves the payment and
its drained events in one transaction. ``version`` belongs to storage: the domain never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import emission, follow_ups, ledger
from .checks import check_cart_id, check_new_payment, optional_aware, require_aware
from .declines import PaymentError
from .emission import Emit, Envelope
from .errors import InvalidPaymentRequest, InvalidTransition, PageNotExpired
from .events import (
    ExpiryCause,
    FailureReason,
    PaymentCreated,
    PaymentEvent,
    PaymentExpired,
    PaymentInitiated,
)
from .gateway_results import GatewayResult, ResultSource, TranType
from .money import Money
from .outcome import Effect, Outcome
from .records import ConflictNote, FollowUpHold, GatewayTransaction, Transition
from .results import apply_result, quarantine_of
from .states import TRANSITIONS, OutcomeKind, PaymentState, Trigger, decide

__all__ = ["Outcome", "Payment"]  # Outcome lives in outcome.py; imported from here too


@dataclass(eq=False, kw_only=True)
class Payment:
    """One payment attempt for one cart. New ones come from ``create``; storage rebuilds old ones
    with the constructor. ``tran_ref`` is the originating sale, auth or page; follow-ups and an
    APM's completing sale are in ``transactions`` (with the latest status of each).
    """

    id: str
    cart_id: str
    profile_id: int
    amount: Money
    tran_type: TranType
    description: str
    state: PaymentState
    created_at: datetime
    updated_at: datetime
    captured: Money
    refunded: Money
    tran_ref: str | None = None
    expires_at: datetime | None = None
    transactions: list[GatewayTransaction] = field(default_factory=list)
    history: list[Transition] = field(default_factory=list)
    conflicts: list[ConflictNote] = field(default_factory=list)
    abandoned_cart_ids: list[str] = field(default_factory=list)
    hold: FollowUpHold | None = None  # a follow-up sent and not answered yet
    redirect_url: str | None = None  # the hosted page the customer pays on
    return_url: str | None = None  # the merchant's page the customer goes back to afterwards
    metadata: dict[str, str] = field(default_factory=dict)  # the merchant's, echoed back
    # The saved card this payment saves (asked with save_card) or charges (a recurring charge)
    saved_card_id: str | None = None
    version: int = 0
    pending_events: list[PaymentEvent] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        *,
        id: str,
        cart_id: str,
        profile_id: int,
        amount: Money,
        tran_type: TranType,
        description: str,
        at: datetime,
        return_url: str | None = None,
        metadata: dict[str, str] | None = None,
        saved_card_id: str | None = None,
    ) -> Payment:
        """A new payment in CREATED, with its ``payment.created`` event queued."""
        require_aware(at)
        zero = Money(0, amount.currency)
        payment = cls(
            id=id,
            cart_id=cart_id,
            profile_id=profile_id,
            amount=amount,
            tran_type=tran_type,
            description=description,
            state=PaymentState.CREATED,
            created_at=at,
            updated_at=at,
            captured=zero,
            refunded=zero,
            return_url=return_url,
            metadata=dict(metadata or {}),
            saved_card_id=saved_card_id,
        )
        check_new_payment(payment)
        payment.history.append(
            Transition(
                from_state=None,
                to_state=PaymentState.CREATED,
                trigger=Trigger.CREATE,
                source=ResultSource.API,
                gateway_ref=None,
                at=at,
                reason="payment created",
            )
        )
        created = PaymentCreated(
            **payment._envelope(at), amount=amount, tran_type=tran_type, description=description
        )
        payment.pending_events.append(created)
        return payment

    # ---- reading ------------------------------------------------------------------------

    @property
    def has_conflict(self) -> bool:
        """The gateway contradicted this payment at least once: a human must review it."""
        return bool(self.conflicts)

    @property
    def visited_states(self) -> frozenset[PaymentState]:
        """Every state this payment has been in."""
        return frozenset(entry.to_state for entry in self.history)

    @property
    def pending_refunds(self) -> Money:
        """Refunds the gateway reported pending (``P``): not refunded yet, not refundable again."""
        return ledger.pending(self, TranType.REFUND)

    @property
    def pending_captures(self) -> Money:
        """Captures the gateway reported pending."""
        return ledger.pending(self, TranType.CAPTURE)

    @property
    def last_payment_error(self) -> PaymentError | None:
        """Why the payment failed, from the latest failed attempt of its own transaction
        (declined, error, expired at the acquirer, cancelled); None unless it failed."""
        return ledger.last_payment_error(self)

    @property
    def charged(self) -> Money | None:
        """What PayTabs reported charging the customer (``tran_total`` in ``tran_currency``) in
        the authorised result of this payment's own transaction; None until one said so. It
        differs from ``amount`` only in currency, and only with currency conversion allowed."""
        return ledger.charged(self)

    @property
    def refundable(self) -> Money:
        """What a refund may still take: captured - refunded - pending refunds."""
        return ledger.refundable(self)

    @property
    def refund_reference(self) -> str | None:
        """The transaction PayTabs refunds against: the sale, the APM's sale, or the capture."""
        return ledger.refund_reference(self)

    def transaction(self, tran_ref: str) -> GatewayTransaction | None:
        """What this payment knows about gateway transaction ``tran_ref``."""
        return next((t for t in self.transactions if t.tran_ref == tran_ref), None)

    def collect_events(self) -> list[PaymentEvent]:
        """Hand the queued events to storage (for the outbox) and forget them."""
        events = list(self.pending_events)
        self.pending_events.clear()
        return events

    # ---- guards for our own requests: raise before any gateway call ---------------------

    def ensure_can_refund(self, amount: Money) -> None:
        """Raise unless a refund of ``amount`` may be sent now."""
        ledger.ensure_can_refund(self, amount)

    def ensure_can_capture(self, amount: Money) -> None:
        """Raise unless a capture of ``amount`` may be sent now (one capture per payment)."""
        ledger.ensure_can_capture(self, amount)

    def ensure_can_void(self) -> None:
        """Raise unless the authorisation may be released now."""
        ledger.ensure_can_void(self)

    def hold_follow_up(
        self,
        kind: TranType,
        amount: Money,
        parent_tran_ref: str,
        *,
        at: datetime,
        stale_after: timedelta = follow_ups.HOLD_STALE_AFTER,
    ) -> FollowUpHold:
        """Reserve the payment for one follow-up before it is sent (call after ``ensure_can_*``).

        A hold older than ``stale_after`` belonged to a request whose answer never came; by then
        reconciliation has asked PayTabs and applied what it holds (``awaits_follow_up``), so
        it no longer protects anything.
        """
        return follow_ups.take_hold(
            self, kind, amount, parent_tran_ref, at=at, stale_after=stale_after
        )

    def release_follow_up(self) -> None:
        """The follow-up was answered (or provably never sent): the payment is free again."""
        self.hold = None

    @property
    def awaits_follow_up(self) -> bool:
        """A follow-up is unsettled: its hold stays (sent, answer lost or not applied yet) or
        PayTabs reported it pending. Reconciliation asks PayTabs about such payments."""
        return follow_ups.awaits_follow_up(self)

    def answers_hold(self, result: GatewayResult) -> bool:
        """Is ``result`` the first answer to the follow-up this payment holds for? (Applying
        it then releases the hold; a repeat of an earlier answer never does.)"""
        return follow_ups.answers_hold(self, result)

    def settles_follow_up(self, result: GatewayResult) -> bool:
        """Is ``result`` news about an unsettled follow-up (its hold's answer, or a later
        status of one recorded pending)?"""
        return follow_ups.settles_follow_up(self, result)

    def release_lapsed_hold(self, *, at: datetime, after: timedelta) -> bool:
        """PayTabs, asked, holds no answer to a hold older than ``after`` (past which its
        request can no longer reach PayTabs): it never took effect, so drop it. True if so."""
        return follow_ups.release_lapsed_hold(self, at=at, stale_after=after)

    # ---- our own steps ------------------------------------------------------------------

    def mark_initiating(
        self, *, at: datetime, expires_at: datetime | None = None, reason: str = ""
    ) -> Outcome:
        """We are about to send the create-page request (or a recurring charge: ``reason``).
        Only APPLIED allows sending it: DUPLICATE means a request was already sent and its
        outcome must be resolved first. ``expires_at`` is the page TTL we ask for, kept in
        case the response never arrives."""
        return self._step(
            Trigger.REQUEST_PAGE,
            at=at,
            source=ResultSource.API,
            reason=reason or "create-page request about to be sent",
            effect=Effect(expires_at=optional_aware(expires_at)),
        )

    def page_created(
        self,
        tran_ref: str,
        expires_at: datetime | None,
        *,
        at: datetime,
        redirect_url: str | None = None,
        reason: str = "hosted page created",
    ) -> Outcome:
        """PayTabs returned the hosted page and its ``tran_ref``: send the customer there.

        A recurring charge has no page: PayTabs answers it directly, and this step adopts the
        charge's ``tran_ref`` (``reason`` says so) before its result is applied."""
        if not tran_ref.strip():
            raise InvalidPaymentRequest("tran_ref", "PayTabs returned an empty tran_ref")
        if self.tran_ref is not None and tran_ref != self.tran_ref:
            detail = f"it already has page {self.tran_ref}; a second page {tran_ref} needs review"
            raise InvalidTransition(self.id, self.state, Trigger.PAGE_CREATED, detail)
        record = GatewayTransaction(
            tran_ref=tran_ref,
            previous_tran_ref=None,
            tran_type=self.tran_type,
            status=None,
            amount=self.amount,
            at=at,
        )

        def initiated(base: Envelope) -> list[PaymentEvent]:
            return [PaymentInitiated(**base, tran_ref=tran_ref, expires_at=self.expires_at)]

        effect = Effect(
            adopt_tran_ref=tran_ref,
            expires_at=optional_aware(expires_at),
            record=record,
            redirect_url=redirect_url,
        )
        return self._step(
            Trigger.PAGE_CREATED,
            at=at,
            source=ResultSource.API,
            reason=reason,
            gateway_ref=tran_ref,
            effect=effect,
            emit=initiated,
        )

    def initiation_failed(self, reason: str, *, at: datetime, response_code: str = "") -> Outcome:
        """PayTabs refused the create-page request with a 4xx validation error: it has nothing."""
        return self._step(
            Trigger.GATEWAY_REJECTED,
            at=at,
            source=ResultSource.API,
            reason=reason,
            emit=emission.failed(FailureReason.GATEWAY_REJECTED, None, response_code, reason),
        )

    def initiation_ambiguous(
        self, *, at: datetime, reason: str = "no answer to the create-page request"
    ) -> Outcome:
        """Timeout, reset or 5xx after the request left: PayTabs may or may not have a page."""
        return self._step(Trigger.AMBIGUOUS_FAILURE, at=at, source=ResultSource.API, reason=reason)

    def new_attempt(self, cart_id: str, *, at: datetime) -> Outcome:
        """Go out again under ``cart_id``: the gateway holds only an unpaid page for the current
        cart whose URL was lost with an ambiguous answer, so nobody can ever pay it. The old
        cart id is kept in ``abandoned_cart_ids``; a result for it is quarantined."""
        check_cart_id(cart_id)
        if cart_id == self.cart_id or cart_id in self.abandoned_cart_ids:
            raise InvalidPaymentRequest("cart_id", f"{cart_id!r} was already used by this payment")
        abandoned = self.cart_id
        outcome = self._step(
            Trigger.NEW_ATTEMPT,
            at=at,
            source=ResultSource.API,
            reason=f"unpaid page of cart {abandoned} is unreachable; new attempt as {cart_id}",
            gateway_ref=self.tran_ref,
        )
        if outcome.changed:
            self.abandoned_cart_ids.append(abandoned)
            self.cart_id = cart_id
            self.tran_ref = None
            self.redirect_url = None
            self.transactions = [t for t in self.transactions if t.previous_tran_ref is not None]
        return outcome

    def unknown_resolved_no_record(
        self, *, at: datetime, source: ResultSource = ResultSource.RECONCILIATION
    ) -> Outcome:
        """Queries are exhausted and PayTabs provably has no transaction for this cart."""
        reason = "the gateway has no record of this payment"
        return self._step(
            Trigger.NO_GATEWAY_RECORD,
            at=at,
            source=source,
            reason=reason,
            emit=emission.failed(FailureReason.NO_GATEWAY_RECORD, None, "", reason),
        )

    def expire_page(
        self, *, at: datetime, source: ResultSource = ResultSource.RECONCILIATION
    ) -> Outcome:
        """The page TTL has passed and a query showed PayTabs has no transaction for it."""
        require_aware(at)
        legal = decide(self.state, Trigger.PAGE_TTL_PASSED) is OutcomeKind.APPLIED
        if legal and (self.expires_at is None or at < self.expires_at):
            expires = self.expires_at.isoformat() if self.expires_at else None
            raise PageNotExpired(self.id, self.state, expires)

        def expired(base: Envelope) -> list[PaymentEvent]:
            cause = ExpiryCause.PAGE_TTL_PASSED
            return [PaymentExpired(**base, cause=cause, tran_ref=self.tran_ref)]

        return self._step(
            Trigger.PAGE_TTL_PASSED,
            at=at,
            source=source,
            reason="page TTL passed and the gateway has no transaction",
            emit=expired,
        )

    # ---- gateway results: the one way in for callbacks, queries and reconciliation -------

    def apply_gateway_result(
        self, result: GatewayResult, *, at: datetime, currency_conversion: bool = False
    ) -> Outcome:
        """Hold ``result`` against this payment and apply it if, and only if, the table allows.

        ``currency_conversion``: PayTabs may charge in another currency (the profile converts);
        the charge is then recorded with the transaction instead of quarantined. The rules, in
        order, are in results.py."""
        return apply_result(self, result, at=at, currency_conversion=currency_conversion)

    def quarantine_reason(
        self, result: GatewayResult, *, currency_conversion: bool = False
    ) -> str | None:
        """Why :meth:`apply_gateway_result` would quarantine ``result``, or None; changes
        nothing. Lets storage run the business checks before dedupe (webhook-security.md: a
        mismatched delivery is quarantined even when the genuine one took its dedupe key)."""
        return quarantine_of(self, result, currency_conversion=currency_conversion)

    # ---- the guarded move ---------------------------------------------------------------

    def _step(
        self,
        trigger: Trigger,
        *,
        at: datetime,
        source: ResultSource,
        reason: str,
        gateway_ref: str | None = None,
        effect: Effect | None = None,
        emit: Emit = emission.no_events,
    ) -> Outcome:
        """One of our own steps: applied, a harmless repeat (DUPLICATE), or an error."""
        require_aware(at)
        kind = decide(self.state, trigger, visited=self.visited_states)
        if kind is OutcomeKind.DUPLICATE:
            return self._unchanged(kind, f"already {self.state}: '{trigger}' changes nothing")
        if kind is not OutcomeKind.APPLIED:
            raise InvalidTransition(self.id, self.state, trigger)
        return self._move(
            trigger,
            source=source,
            at=at,
            reason=reason,
            gateway_ref=gateway_ref,
            effect=effect or Effect(),
            emit=emit,
        )

    def _move(
        self,
        trigger: Trigger,
        *,
        source: ResultSource,
        at: datetime,
        reason: str,
        gateway_ref: str | None,
        effect: Effect,
        emit: Emit,
    ) -> Outcome:
        """The only place the state changes: table check, effect, history entry, events."""
        target = TRANSITIONS.get((self.state, trigger))
        if target is None:
            raise InvalidTransition(self.id, self.state, trigger)
        previous = self.state
        if effect.adopt_tran_ref is not None and self.tran_ref is None:
            self.tran_ref = effect.adopt_tran_ref
        if effect.redirect_url is not None:
            self.redirect_url = effect.redirect_url
        if effect.expires_at is not None:
            self.expires_at = effect.expires_at
        if effect.record is not None:
            self._upsert(effect.record)
        if effect.captured is not None:
            self.captured = effect.captured
        if effect.refunded is not None:
            self.refunded = effect.refunded
        self.state = target
        self._touch(at)
        self.history.append(
            Transition(
                from_state=previous,
                to_state=target,
                trigger=trigger,
                source=source,
                gateway_ref=gateway_ref,
                at=at,
                reason=reason,
            )
        )
        events = emit(self._envelope(at))
        self.pending_events.extend(events)
        return Outcome(OutcomeKind.APPLIED, previous, target, reason, tuple(events))

    # ---- what is recorded beside the state ---------------------------------------------------

    # ---- small helpers ------------------------------------------------------------------

    def _envelope(self, at: datetime) -> Envelope:
        return {
            "payment_id": self.id,
            "cart_id": self.cart_id,
            "state": self.state,
            "occurred_at": at,
        }

    def _unchanged(self, kind: OutcomeKind, reason: str) -> Outcome:
        return Outcome(kind, self.state, self.state, reason)

    def _touch(self, at: datetime) -> None:
        self.updated_at = max(self.updated_at, at)  # a late clock never moves updated_at back

    def _upsert(self, record: GatewayTransaction) -> None:
        for index, known in enumerate(self.transactions):
            if known.tran_ref == record.tran_ref:
                self.transactions[index] = record
                return
        self.transactions.append(record)
