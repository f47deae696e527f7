"""The Payment aggregate: one payment attempt, and the one place its state changes.

Every source of truth goes through ``Payment.apply_gateway_result`` (callback, browser return,
query, reconciliation, follow-up response); our own steps are the command methods
(``mark_initiating``, ``page_created``, …). Both end in ``_move``, the single guarded function
that checks ``TRANSITIONS``, writes history and queues events. Applying the same thing twice
changes nothing, older news never moves a payment back, and a completed payment never fails.

A gateway result is checked in this order; the first rule that fires decides the ``Outcome``:

1. a browser return                                        → IGNORED (query the gateway now)
2. cannot be this payment's (screening.py)                 → QUARANTINED
3. this transaction with this status already recorded      → DUPLICATE
4. a capture, void or refund that is pending or has failed → recorded beside the state
   (APPLIED without a transition), or DUPLICATE / STALE / CONFLICT against its earlier record
5. the transition table, through ``decide``                → APPLIED, DUPLICATE, STALE,
                                                             CONFLICT or ILLEGAL

Our own steps return APPLIED or DUPLICATE (a harmless repeat) and raise ``InvalidTransition``
otherwise. The caller holds the payment's row lock while applying, then saves the payment and
its drained events in one transaction. ``version`` belongs to storage: the domain never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, assert_never

from . import emission
from .declines import FAILED_STATUSES, PaymentError, payment_error
from .emission import Emit, Envelope
from .errors import (
    CaptureExceedsAuthorized,
    CaptureNotAllowed,
    CurrencyMismatch,
    FollowUpInProgress,
    InvalidPaymentRequest,
    InvalidTransition,
    PageNotExpired,
    PaymentNotVoidable,
    RefundExceedsCaptured,
    RefundNotAllowed,
)
from .events import (
    ExpiryCause,
    FailureReason,
    PaymentConflict,
    PaymentCreated,
    PaymentEvent,
    PaymentExpired,
    PaymentInitiated,
)
from .gateway_results import (
    FOLLOW_UP_TYPES,
    GatewayResult,
    GatewayStatus,
    ResultSource,
    Signal,
    TranType,
)
from .money import Money
from .records import ConflictNote, FollowUpHold, GatewayTransaction, Transition, pending_total
from .screening import describe, quarantine_reason
from .states import (
    DECIDED_STATES,
    MONEY_MOVED_STATES,
    REFUNDABLE_STATES,
    TRANSITIONS,
    OutcomeKind,
    PaymentState,
    Trigger,
    decide,
)

MAX_CART_ID_LENGTH: Final = 64  # PayTabs rejects longer cart ids (error 101)
MAX_DESCRIPTION_LENGTH: Final = 128  # PayTabs rejects longer descriptions (error 102)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one step or gateway result did to the payment, and why."""

    kind: OutcomeKind
    previous_state: PaymentState
    state: PaymentState
    reason: str
    events: tuple[PaymentEvent, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the payment must be saved (a transition, a recorded follow-up, a conflict)."""
        return self.kind in (OutcomeKind.APPLIED, OutcomeKind.CONFLICT)


@dataclass(frozen=True, slots=True)
class _Effect:
    """What a legal transition writes besides the state."""

    adopt_tran_ref: str | None = None
    redirect_url: str | None = None
    expires_at: datetime | None = None
    record: GatewayTransaction | None = None
    captured: Money | None = None
    refunded: Money | None = None


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
        _require_aware(at)
        _check_new_payment(id, cart_id, profile_id, amount, tran_type, description)
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
        return pending_total(self.transactions, TranType.REFUND, self.amount.currency)

    @property
    def pending_captures(self) -> Money:
        """Captures the gateway reported pending."""
        return pending_total(self.transactions, TranType.CAPTURE, self.amount.currency)

    @property
    def last_payment_error(self) -> PaymentError | None:
        """Why the payment failed, from the latest failed attempt of its own transaction
        (declined, error, expired at the acquirer, cancelled); None unless it failed."""
        if self.state not in (PaymentState.FAILED, PaymentState.EXPIRED):
            return None
        for record in reversed(self.transactions):
            if record.tran_type in FOLLOW_UP_TYPES or record.status not in FAILED_STATUSES:
                continue
            return payment_error(record.status, record.response_code, record.response_message)
        return None

    @property
    def charged(self) -> Money | None:
        """What PayTabs reported charging the customer (``tran_total`` in ``tran_currency``) in
        the authorised result of this payment's own transaction; None until one said so. It
        differs from ``amount`` only in currency, and only with currency conversion allowed."""
        for record in reversed(self.transactions):
            if (
                record.tran_type not in FOLLOW_UP_TYPES
                and record.status is GatewayStatus.AUTHORIZED
                and record.charged is not None
                and record.charged.minor_units > 0
            ):
                return record.charged
        return None

    @property
    def refundable(self) -> Money:
        """What a refund may still take: captured - refunded - pending refunds."""
        return self.captured - self.refunded - self.pending_refunds

    @property
    def refund_reference(self) -> str | None:
        """The transaction PayTabs refunds against: the sale, the APM's sale, or the capture."""
        if self.state not in MONEY_MOVED_STATES:
            return None
        settled = Signal.CAPTURED if self.tran_type is TranType.AUTH else Signal.CHARGED
        for record in self.transactions:
            if record.previous_tran_ref is not None and record.signal is settled:
                return record.tran_ref
        return self.tran_ref

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
        if self.state not in REFUNDABLE_STATES:
            raise RefundNotAllowed(self.id, self.state)
        self._check_operation_amount(amount)
        if self.refundable < amount:
            raise RefundExceedsCaptured(self.id, amount, self.refundable)

    def hold_follow_up(
        self,
        kind: TranType,
        amount: Money,
        parent_tran_ref: str,
        *,
        at: datetime,
        stale_after: timedelta = timedelta(minutes=15),
    ) -> FollowUpHold:
        """Reserve the payment for one follow-up before it is sent (call after ``ensure_can_*``).

        A hold older than ``stale_after`` belonged to a request whose answer never came; by then
        reconciliation has applied what PayTabs holds, so it no longer protects anything.
        """
        _require_aware(at)
        if self.hold is not None and at - self.hold.started_at < stale_after:
            raise FollowUpInProgress(
                self.id, self.state, self.hold.kind.value, self.hold.started_at.isoformat()
            )
        sequence = 1 + sum(1 for t in self.transactions if t.tran_type is kind)
        self.hold = FollowUpHold(
            kind=kind, amount=amount, parent_tran_ref=parent_tran_ref, sequence=sequence,
            started_at=at,
        )  # fmt: skip
        return self.hold

    def release_follow_up(self) -> None:
        """The follow-up was answered (or provably never sent): the payment is free again."""
        self.hold = None

    def ensure_can_capture(self, amount: Money) -> None:
        """Raise unless a capture of ``amount`` may be sent now (one capture per payment)."""
        if self.state is not PaymentState.AUTHORIZED:
            raise CaptureNotAllowed(self.id, self.state)
        self._check_operation_amount(amount)
        available = self.amount - self.captured - self.pending_captures
        if available < amount:
            raise CaptureExceedsAuthorized(self.id, amount, available)

    def ensure_can_void(self) -> None:
        """Raise unless the authorisation may be released now."""
        if self.state is not PaymentState.AUTHORIZED:
            raise PaymentNotVoidable(
                self.id, self.state, "only an authorized payment can be voided"
            )
        if self.captured.minor_units or self.pending_captures.minor_units:
            raise PaymentNotVoidable(
                self.id, self.state, "part of it is captured or being captured; refund instead"
            )

    # ---- our own steps ------------------------------------------------------------------

    def mark_initiating(self, *, at: datetime, expires_at: datetime | None = None) -> Outcome:
        """We are about to send the create-page request. Only APPLIED allows sending it:
        DUPLICATE means a request was already sent and its outcome must be resolved first.
        ``expires_at`` is the page TTL we ask for, kept in case the response never arrives.
        """
        return self._step(
            Trigger.REQUEST_PAGE,
            at=at,
            source=ResultSource.API,
            reason="create-page request about to be sent",
            effect=_Effect(expires_at=_optional_aware(expires_at)),
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

        effect = _Effect(
            adopt_tran_ref=tran_ref,
            expires_at=_optional_aware(expires_at),
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
        if not cart_id.strip() or len(cart_id) > MAX_CART_ID_LENGTH:
            raise InvalidPaymentRequest(
                "cart_id", f"must be 1 to {MAX_CART_ID_LENGTH} characters, got {len(cart_id)}"
            )
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
        _require_aware(at)
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
        the charge is then recorded with the transaction instead of quarantined."""
        _require_aware(at)
        if result.source is ResultSource.BROWSER_RETURN:
            return self._unchanged(
                OutcomeKind.IGNORED,
                "a browser return never decides a payment; query the gateway to confirm it",
            )
        problem = quarantine_reason(self, result, currency_conversion=currency_conversion)
        if problem is not None:
            return self._unchanged(OutcomeKind.QUARANTINED, problem)
        if self._already_seen(result):
            return self._unchanged(
                OutcomeKind.DUPLICATE, f"{describe(result)} was already recorded"
            )
        trigger = self._trigger_for(result)
        if trigger is None:
            return self._record_follow_up(result, at=at)
        kind = decide(self.state, trigger, visited=self.visited_states)
        reason = _explain(kind, self.state, trigger, result)
        if kind is OutcomeKind.CONFLICT:
            return self._record_conflict(result, at=at, reason=reason)
        if kind is not OutcomeKind.APPLIED:
            return self._unchanged(kind, reason)
        emit = emission.for_result(
            self,
            trigger,
            result,
            previous=self.state,
            first_completion=PaymentState.COMPLETED not in self.visited_states,
        )
        return self._move(
            trigger,
            source=result.source,
            at=at,
            reason=reason,
            gateway_ref=result.tran_ref,
            effect=self._effect_of(trigger, result, at=at),
            emit=emit,
        )

    # ---- the guarded move ---------------------------------------------------------------

    def _step(
        self,
        trigger: Trigger,
        *,
        at: datetime,
        source: ResultSource,
        reason: str,
        gateway_ref: str | None = None,
        effect: _Effect | None = None,
        emit: Emit = emission.no_events,
    ) -> Outcome:
        """One of our own steps: applied, a harmless repeat (DUPLICATE), or an error."""
        _require_aware(at)
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
            effect=effect or _Effect(),
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
        effect: _Effect,
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

    # ---- gateway results: what they say, and what is recorded beside the state ------------

    def _already_seen(self, result: GatewayResult) -> bool:
        known = self.transaction(result.tran_ref)
        if known is not None and known.status == result.status:
            return True
        return any(
            note.tran_ref == result.tran_ref and note.reported_status == result.status
            for note in self.conflicts
        )

    def _trigger_for(self, result: GatewayResult) -> Trigger | None:
        """The table trigger ``result`` fires; None for follow-ups that never move the state."""
        signal = result.signal
        match signal:
            case Signal.PAGE_OPEN:
                return Trigger.PAGE_FOUND
            case Signal.PENDING:
                return Trigger.PENDING
            case Signal.HELD:
                return Trigger.HELD
            case Signal.CHARGED:
                return Trigger.CHARGED
            case Signal.AUTHORIZED:
                return Trigger.AUTHORIZED
            case Signal.CAPTURED:
                return Trigger.CAPTURED
            case Signal.DECLINED:
                return Trigger.DECLINED
            case Signal.CANCELLED:
                return Trigger.CANCELLED
            case Signal.EXPIRED:
                return Trigger.EXPIRED
            case Signal.VOIDED:
                return Trigger.VOIDED
            case Signal.REFUNDED:
                # Before the sale is known, measure against the payment's amount: the table
                # then refuses the refund anyway.
                base = self.captured if self.state in MONEY_MOVED_STATES else self.amount
                full = base <= self.refunded + result.amount
                return Trigger.FULL_REFUND if full else Trigger.PARTIAL_REFUND
            case Signal.FOLLOW_UP_PENDING | Signal.FOLLOW_UP_FAILED | Signal.NOT_A_PAYMENT:
                return None  # recorded beside the state (register never gets this far)
            case _:
                assert_never(signal)

    def _effect_of(self, trigger: Trigger, result: GatewayResult, *, at: datetime) -> _Effect:
        # A payment that never learnt its tran_ref (UNKNOWN) learns it from the first result
        # that fits: the parent of a capture or APM sale, or the transaction itself.
        adopt = (result.previous_tran_ref or result.tran_ref) if self.tran_ref is None else None
        moved = trigger in (Trigger.CHARGED, Trigger.CAPTURED)
        refund = trigger in (Trigger.PARTIAL_REFUND, Trigger.FULL_REFUND)
        return _Effect(
            adopt_tran_ref=adopt,
            record=GatewayTransaction.from_result(result, at=at),
            captured=result.amount if moved else None,
            refunded=self.refunded + result.amount if refund else None,
        )

    def _record_follow_up(self, result: GatewayResult, *, at: datetime) -> Outcome:
        """A capture, void or refund that is pending or failed: kept beside the state."""
        settled = MONEY_MOVED_STATES if result.tran_type is TranType.REFUND else DECIDED_STATES
        if self.tran_ref is None or self.state not in settled:
            return self._unchanged(
                OutcomeKind.ILLEGAL,
                f"{describe(result)} came before the payment was decided; deliver it later",
            )
        pending = result.signal is Signal.FOLLOW_UP_PENDING
        known = self.transaction(result.tran_ref)
        if known is not None:
            was = known.signal
            if pending:
                kind = OutcomeKind.DUPLICATE if was is result.signal else OutcomeKind.STALE
                return self._unchanged(kind, f"{describe(result)}: already {known.status}")
            if was is Signal.FOLLOW_UP_FAILED:
                return self._unchanged(OutcomeKind.DUPLICATE, f"{describe(result)}: already failed")
            if was is not Signal.FOLLOW_UP_PENDING:
                reason = f"{describe(result)} after it succeeded ({known.status}); review it"
                return self._record_conflict(result, at=at, reason=reason)
        self._upsert(GatewayTransaction.from_result(result, at=at))
        self._touch(at)
        news = "pending" if pending else "did not happen"
        reason = f"{describe(result)} recorded: {news}; the payment stays {self.state}"
        return Outcome(OutcomeKind.APPLIED, self.state, self.state, reason)

    def _record_conflict(self, result: GatewayResult, *, at: datetime, reason: str) -> Outcome:
        note = ConflictNote(
            tran_ref=result.tran_ref,
            tran_type=result.tran_type,
            reported_status=result.status,
            state=self.state,
            source=result.source,
            at=at,
            reason=reason,
        )
        self.conflicts.append(note)
        self._touch(at)
        event = PaymentConflict(
            **self._envelope(at),
            tran_ref=result.tran_ref,
            tran_type=result.tran_type,
            reported_status=result.status,
            source=result.source,
            reason=reason,
        )
        self.pending_events.append(event)
        return Outcome(OutcomeKind.CONFLICT, self.state, self.state, reason, (event,))

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

    def _check_operation_amount(self, amount: Money) -> None:
        if amount.currency != self.amount.currency:
            raise CurrencyMismatch(self.amount.currency, amount.currency)
        if amount.minor_units <= 0:
            raise InvalidPaymentRequest("amount", f"must be more than zero, got {amount}")


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no timezone; pass an aware datetime (UTC)")


def _optional_aware(at: datetime | None) -> datetime | None:
    if at is not None:
        _require_aware(at)
    return at


def _check_new_payment(
    id: str,
    cart_id: str,
    profile_id: int,
    amount: Money,
    tran_type: TranType,
    description: str,
) -> None:
    if not id.strip():
        raise InvalidPaymentRequest("id", "must not be empty")
    if not cart_id.strip() or len(cart_id) > MAX_CART_ID_LENGTH:
        raise InvalidPaymentRequest(
            "cart_id", f"must be 1 to {MAX_CART_ID_LENGTH} characters, got {len(cart_id)}"
        )
    if not description.strip() or len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidPaymentRequest(
            "description",
            f"must be 1 to {MAX_DESCRIPTION_LENGTH} characters, got {len(description)}",
        )
    if profile_id <= 0:
        raise InvalidPaymentRequest("profile_id", f"must be a PayTabs profile id, got {profile_id}")
    if amount.minor_units <= 0:
        raise InvalidPaymentRequest("amount", f"must be more than zero, got {amount}")
    if tran_type not in (TranType.SALE, TranType.AUTH):
        raise InvalidPaymentRequest("tran_type", f"must be sale or auth, got {tran_type}")


def _explain(
    kind: OutcomeKind, state: PaymentState, trigger: Trigger, result: GatewayResult
) -> str:
    what = describe(result)
    if kind is OutcomeKind.APPLIED:
        return f"{what}: {state} -> {TRANSITIONS[state, trigger]}"
    if kind is OutcomeKind.DUPLICATE:
        return f"{what} changes nothing: the payment is already {state}"
    if kind is OutcomeKind.STALE:
        return f"{what} is older news than the payment's {state}"
    if kind is OutcomeKind.CONFLICT:
        return f"{what} contradicts the payment's {state}; not applied, review it"
    return f"{what}: '{trigger}' is not allowed from {state}"
