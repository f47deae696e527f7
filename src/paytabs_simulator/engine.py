"""The simulator's store and PayTabs' business rules: pages, payments, follow-ups, tokens.

Every method that changes state is synchronous, so under asyncio each one is atomic: two
requests can never interleave inside a capture or a refund.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import string
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from paytabs_simulator import errors
from paytabs_simulator.callbacks import CallbackDispatcher, Notification, NotificationKind
from paytabs_simulator.cards import (
    AUTHORISED,
    CANCELLED,
    CARD_EXPIRED,
    MERCHANT_LIMITS_EXCEEDED,
    PENDING,
    SETTLED_OUTCOMES,
    CardInfo,
    CardOutcome,
    EnteredCard,
)
from paytabs_simulator.config import Profile, SimulatorConfig
from paytabs_simulator.faults import Faults, hits
from paytabs_simulator.records import (
    HostedPage,
    JsonObject,
    PaymentResult,
    PendingCard,
    StoredToken,
    Transaction,
)
from paytabs_simulator.signing import sign_body
from paytabs_simulator.validation import (
    FollowUpRequest,
    HostedPageRequest,
    RecurringRequest,
    parse_payment_request,
    parse_profile_id,
)
from paytabs_simulator.wire import json_bytes, transaction_object

PageProblem = Literal["unknown", "expired", "used", "no_3ds"]
# Which `tokenise` value gives which token alphabet and length (docs/paytabs.md §4.2).
TOKEN_FORMATS: dict[int, tuple[str, int]] = {
    2: ("0123456789ABCDEF", 32),
    3: (string.ascii_uppercase + string.digits, 20),
    4: (string.digits, 22),
    5: (string.digits, 16),
    6: (string.ascii_uppercase + string.digits, 32),
}


class PageUnavailable(Exception):
    """The hosted page cannot take a payment: unknown, expired, already used, or no 3DS step."""

    def __init__(self, problem: PageProblem, lang: str = "en") -> None:
        super().__init__(problem)
        self.problem = problem
        self.lang = lang  # the page's language, when the page is known


class SettleRefused(Exception):
    """Only a pending (P) or on-hold (H) transaction can be settled by the test API."""


class Engine:
    """One simulated PayTabs: profiles, transactions, pages, tokens, faults and callbacks."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.profiles = {profile.profile_id: profile for profile in config.profiles}
        self.rng = random.Random(config.seed)
        self.faults: Faults = config.faults
        self.closing = asyncio.Event()
        self.callbacks = CallbackDispatcher(
            retry_delays=config.callback_retry_delays,
            timeout_seconds=config.callback_timeout_seconds,
            user_agent=config.callback_user_agent,
            transport=config.callback_transport,
            clock=self.now,
        )
        self._clear()

    def _clear(self) -> None:
        self.started_at = self.now()
        self.transactions: dict[str, Transaction] = {}
        self.pages: dict[str, HostedPage] = {}
        self.tokens: dict[str, StoredToken] = {}
        self.stats: Counter[str] = Counter()
        # (profile id, canonical body) -> when it last succeeded; insertion order = time order.
        self._recent_requests: dict[tuple[int, str], datetime] = {}
        self._sequence = 0
        # Indexes so that queries and follow-up rules stay cheap in long benchmark runs.
        self._by_cart: dict[tuple[int, str], list[Transaction]] = {}
        self._follow_ups: dict[str, list[Transaction]] = {}

    # -- time, identifiers ------------------------------------------------------------------

    def now(self) -> datetime:
        moment = self.config.clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def elapsed_seconds(self) -> float:
        return (self.now() - self.started_at).total_seconds()

    def trace(self) -> str:
        return self._stamp("PMNT0402")

    def _stamp(self, prefix: str) -> str:
        self._sequence += 1
        seconds = int(self.now().timestamp()) & 0xFFFFFFFF
        return f"{prefix}.{seconds:08X}.{self._sequence & 0xFFFFFFFF:08X}"

    def _new_tran_ref(self, now: datetime) -> str:
        # Test profiles: TST + 2-digit year + day of year + 8 digits (docs/paytabs.md §14).
        while True:
            tran_ref = f"TST{now:%y}{now.timetuple().tm_yday:03d}{self.rng.randrange(10**8):08d}"
            if tran_ref not in self.transactions:
                return tran_ref

    def _new_page_id(self) -> str:
        while True:
            page_id = f"{self.rng.getrandbits(128):032X}"
            if page_id not in self.pages:
                return page_id

    def _new_token(self, tokenise: int) -> str:
        alphabet, length = TOKEN_FORMATS[tokenise]
        while True:
            token = "".join(self.rng.choice(alphabet) for _ in range(length))
            if token not in self.tokens:
                return token

    def _result(self, outcome: CardOutcome, now: datetime, *, card_payment: bool) -> PaymentResult:
        return PaymentResult(
            response_status=outcome.response_status,
            response_code=outcome.response_code or f"G{self.rng.randrange(10**5):05d}",
            response_message=outcome.response_message,
            transaction_time=now,
            acquirer_ref=self._stamp("TRAN0001") if card_payment else None,
            cvv_result=" " if card_payment else None,
            avs_result=" " if card_payment else None,
        )

    # -- the JSON API -----------------------------------------------------------------------

    def authenticate(self, server_key: str | None, raw_profile_id: object) -> Profile:
        profile_id = parse_profile_id(raw_profile_id)
        profile = None if profile_id is None else self.profiles.get(profile_id)
        if (
            profile is None
            or server_key is None
            or not hmac.compare_digest(server_key.encode(), profile.server_key.encode())
        ):
            raise errors.authentication_failed()
        return profile

    def payment_request(self, profile: Profile, body: JsonObject) -> Transaction:
        """`POST /payment/request`: create a page, run a follow-up or charge a token."""
        request = parse_payment_request(body, profile, strict_urls=self.config.strict_urls)
        now = self.now()
        key = (profile.profile_id, json.dumps(body, sort_keys=True, default=str))
        self._refuse_duplicate(key, now)
        match request:
            case HostedPageRequest():
                tx = self._create_page(profile, request, now)
            case FollowUpRequest():
                tx = self._follow_up(profile, request, now)
            case RecurringRequest():
                tx = self._charge_token(profile, request, now)
        self._recent_requests.pop(key, None)
        self._recent_requests[key] = now
        return tx

    def _refuse_duplicate(self, key: tuple[int, str], now: datetime) -> None:
        window = timedelta(seconds=self.config.duplicate_window_seconds)
        while self._recent_requests:
            old_key, seen = next(iter(self._recent_requests.items()))
            if now - seen < window:
                break
            del self._recent_requests[old_key]
        last = self._recent_requests.get(key)
        if last is not None and now - last < window:
            raise errors.duplicate_request()

    def _store(self, tx: Transaction) -> Transaction:
        self.transactions[tx.tran_ref] = tx
        self._by_cart.setdefault((tx.profile.profile_id, tx.cart_id), []).append(tx)
        if tx.previous_tran_ref is not None:
            self._follow_ups.setdefault(tx.previous_tran_ref, []).append(tx)
        return tx

    def _create_page(
        self, profile: Profile, request: HostedPageRequest, now: datetime
    ) -> Transaction:
        tran_ref = self._new_tran_ref(now)
        ttl_minutes = request.paypage_ttl or self.config.page_ttl_minutes
        page = HostedPage(
            page_id=self._new_page_id(),
            tran_ref=tran_ref,
            expires_at=now + timedelta(minutes=ttl_minutes),
            return_url=request.return_url,
            return_using_get=request.return_using_get,
            tokenise=request.tokenise,
            show_save_card=request.show_save_card,
            hide_shipping=request.hide_shipping,
            paypage_lang=request.paypage_lang,
            options=request.options,
        )
        self.pages[page.page_id] = page
        return self._store(
            Transaction(
                tran_ref=tran_ref,
                profile=profile,
                tran_type=request.tran_type,
                tran_class="ECom",
                cart_id=request.cart.cart_id,
                cart_description=request.cart.cart_description,
                cart_currency=request.cart.cart_currency,
                cart_amount=request.cart.cart_amount,
                created_at=now,
                customer_ref=request.customer_ref,
                customer_details=request.customer_details,
                shipping_details=request.shipping_details,
                user_defined=request.user_defined,
                callback=request.callback,
                page=page,
            )
        )

    def _follow_up(self, profile: Profile, request: FollowUpRequest, now: datetime) -> Transaction:
        original = self.transactions.get(request.tran_ref)
        if original is None or original.profile.profile_id != profile.profile_id:
            raise errors.transaction_not_found()
        if request.cart.cart_currency != original.cart_currency:
            raise errors.invalid_currency()
        if original.status != "A":
            raise errors.operation_not_allowed()
        children = [
            tx for tx in self._follow_ups.get(original.tran_ref, []) if tx.status in {"A", "P"}
        ]
        captured = sum(
            (tx.cart_amount for tx in children if tx.tran_type == "Capture"), start=Decimal(0)
        )
        refunded = sum(
            (tx.cart_amount for tx in children if tx.tran_type == "Refund"), start=Decimal(0)
        )
        ended = any(tx.tran_type in {"Void", "Release"} for tx in children)
        amount = request.cart.cart_amount
        outcome = AUTHORISED
        match request.tran_type:
            case "Capture":
                if original.tran_type != "Auth" or ended:
                    raise errors.operation_not_allowed()
                if captured + amount > original.cart_amount:
                    raise errors.amount_exceeds_remaining()
                if self.faults.capture_pending:
                    outcome = PENDING
            case "Void" | "Release":
                if original.tran_type != "Auth" or ended or captured > 0:
                    raise errors.operation_not_allowed()
                if amount > original.cart_amount:
                    raise errors.amount_exceeds_remaining()
            case _:  # Refund
                if original.tran_type not in {"Sale", "Capture"}:
                    raise errors.operation_not_allowed()
                if refunded + amount > original.cart_amount:
                    raise errors.amount_exceeds_remaining()
                if self.faults.refund_pending:
                    outcome = PENDING
        tx = self._store(
            Transaction(
                tran_ref=self._new_tran_ref(now),
                profile=profile,
                tran_type=request.tran_type,
                tran_class="ECom",
                cart_id=request.cart.cart_id,
                cart_description=request.cart.cart_description,
                cart_currency=request.cart.cart_currency,
                cart_amount=amount,
                created_at=now,
                previous_tran_ref=original.tran_ref,
                customer_details=request.customer_details or original.customer_details,
                user_defined=request.user_defined or original.user_defined,
                callback=request.callback,
                card=original.card,
            )
        )
        tx.result = self._result(outcome, now, card_payment=False)
        self._notify(tx)
        return tx

    def _charge_token(
        self, profile: Profile, request: RecurringRequest, now: datetime
    ) -> Transaction:
        stored = self.tokens.get(request.token)
        if (
            stored is None
            or stored.deleted
            or stored.profile_id != profile.profile_id
            or request.tran_ref not in stored.tran_refs
        ):
            raise errors.invalid_token()
        cart = request.cart
        if stored.card.expired(now):
            # The issuer declines a card past its expiry month; the token itself stays valid
            # (a card renewed with the same number could be charged again).
            outcome = CARD_EXPIRED
        elif cart.cart_amount > profile.transaction_limit:
            outcome = MERCHANT_LIMITS_EXCEEDED
        else:
            outcome = AUTHORISED
        tx = self._store(
            Transaction(
                tran_ref=self._new_tran_ref(now),
                profile=profile,
                tran_type=request.tran_type,
                tran_class="Recurring",
                cart_id=cart.cart_id,
                cart_description=cart.cart_description,
                cart_currency=cart.cart_currency,
                cart_amount=cart.cart_amount,
                created_at=now,
                customer_ref=request.customer_ref,
                customer_details=request.customer_details or stored.customer_details,
                user_defined=request.user_defined,
                callback=request.callback,
                card=stored.card,
                token=stored.token,
            )
        )
        tx.result = self._result(outcome, now, card_payment=True)
        stored.tran_refs.append(tx.tran_ref)
        self._notify(tx)
        return tx

    def find_transaction(self, profile: Profile, tran_ref: str) -> Transaction:
        tx = self.transactions.get(tran_ref)
        if tx is None or tx.profile.profile_id != profile.profile_id:
            raise errors.transaction_not_found()
        return tx

    def cart_transactions(self, profile: Profile, cart_id: str) -> list[Transaction]:
        return list(self._by_cart.get((profile.profile_id, cart_id), []))

    def token_origin(self, profile: Profile, token: object) -> Transaction:
        stored = self._live_token(profile, token)
        return self.transactions[stored.tran_refs[0]]

    def delete_token(self, profile: Profile, token: object) -> None:
        # Deleting a token never changes the transactions made with it (docs/paytabs.md §6).
        self._live_token(profile, token).deleted = True

    def _live_token(self, profile: Profile, token: object) -> StoredToken:
        stored = self.tokens.get(token) if isinstance(token, str) else None
        if stored is None or stored.deleted or stored.profile_id != profile.profile_id:
            raise errors.invalid_token()
        return stored

    # -- the hosted payment page ------------------------------------------------------------

    def open_page(self, page_id: str) -> Transaction:
        """The transaction behind a page that can still take a payment; else PageUnavailable."""
        page = self.pages.get(page_id)
        if page is None:
            raise PageUnavailable("unknown")
        if page.state == "done":
            raise PageUnavailable("used", page.paypage_lang)
        if self.now() >= page.expires_at:
            raise PageUnavailable("expired", page.paypage_lang)
        return self.transactions[page.tran_ref]

    def paid_page(self, page_id: str) -> Transaction | None:
        """The transaction of a page already used, for a form sent to it again (a double
        click on Pay): None for any other page."""
        page = self.pages.get(page_id)
        if page is None or page.state != "done":
            return None
        return self.transactions.get(page.tran_ref)

    def submit_card(self, tx: Transaction, card: EnteredCard, *, save_card: bool) -> bool:
        """Pay with a checked card; False when a 3-D Secure step must come first."""
        page = self._page_of(tx)
        if card.outcome.needs_3ds:
            page.state = "3ds"
            page.pending = PendingCard(card.info, card.outcome, save_card)
            return False
        self._finish(tx, card.outcome, card.info, save_card=save_card)
        return True

    def complete_3ds(self, tx: Transaction) -> None:
        page = self._page_of(tx)
        if page.state != "3ds" or page.pending is None:
            raise PageUnavailable("no_3ds", page.paypage_lang)
        pending = page.pending
        self._finish(tx, pending.outcome, pending.card, save_card=pending.save_card)

    def cancel_page(self, tx: Transaction) -> None:
        self._finish(tx, CANCELLED, None, save_card=False)

    def _page_of(self, tx: Transaction) -> HostedPage:
        if tx.page is None:
            raise PageUnavailable("unknown")
        return tx.page

    def _finish(
        self, tx: Transaction, outcome: CardOutcome, card: CardInfo | None, *, save_card: bool
    ) -> None:
        page = self._page_of(tx)
        now = self.now()
        if outcome is not CANCELLED and tx.cart_amount > tx.profile.transaction_limit:
            # Over the profile limit: a declined transaction, not an error (docs/paytabs.md §7.3).
            outcome = MERCHANT_LIMITS_EXCEEDED
        tx.card = card
        tx.save_card = save_card or not page.show_save_card
        tx.result = self._result(outcome, now, card_payment=card is not None)
        self._tokenise(tx)
        page.state = "done"
        page.pending = None
        self._notify(tx)

    def _tokenise(self, tx: Transaction) -> None:
        """Issue the token a paid page asked for (``tokenise`` 2 and up; 1 means none), with
        its first authorised result: at once, or when a pending or held payment settles."""
        page = tx.page
        if (
            tx.status == "A"
            and tx.card is not None
            and tx.token is None
            and page is not None
            and page.tokenise is not None
            and page.tokenise >= 2
            and tx.save_card
        ):
            tx.token = self._new_token(page.tokenise)
            self.tokens[tx.token] = StoredToken(
                token=tx.token,
                profile_id=tx.profile.profile_id,
                tran_refs=[tx.tran_ref],
                card=tx.card,
                customer_details=tx.customer_details,
            )

    # -- callbacks --------------------------------------------------------------------------

    def _notify(self, tx: Transaction) -> None:
        if tx.callback is None or tx.result is None:
            return
        faults = self.faults
        url, result = tx.callback, tx.result
        first = self._notification(tx, url, "normal")
        if hits(self.rng, faults.callback_withhold_rate):
            self.callbacks.record_withheld(first)
            return
        batch = [first]
        if hits(self.rng, faults.callback_duplicate_rate):
            batch.append(replace(first, kind="duplicate"))
        if result.response_status != "P" and hits(self.rng, faults.callback_out_of_order):
            earlier = replace(
                result,
                response_status="P",
                response_code=PENDING.response_code or "",
                response_message=PENDING.response_message,
                transaction_time=result.transaction_time - timedelta(seconds=1),
            )
            stale = replace(tx, result=earlier, token=None)
            batch.append(self._notification(stale, url, "stale"))
        self.callbacks.dispatch(batch, delay_seconds=faults.callback_delay_ms / 1000.0)

    def _notification(self, tx: Transaction, url: str, kind: NotificationKind) -> Notification:
        ipn_trace = self._stamp("IPNS0001")
        body = json_bytes(transaction_object(tx, ipn_trace=ipn_trace))
        return Notification(
            url=url,
            body=body,
            signature=sign_body(body, tx.profile.server_key),
            tran_ref=tx.tran_ref,
            ipn_trace=ipn_trace,
            response_status=tx.status or "",
            kind=kind,
        )

    # -- test and admin API -----------------------------------------------------------------

    def settle(self, tran_ref: str, status: str) -> Transaction:
        """Move a P or H transaction to its final status, as PayTabs does later, and notify."""
        tx = self.transactions.get(tran_ref)
        if tx is None or tx.result is None:
            raise SettleRefused(f"{tran_ref} has no result to settle")
        if tx.result.response_status not in {"P", "H"}:
            raise SettleRefused(f"{tran_ref} is {tx.result.response_status}, not P or H")
        outcome = SETTLED_OUTCOMES.get(status)
        if outcome is None:
            raise SettleRefused(
                f"cannot settle to {status!r}; use one of {sorted(SETTLED_OUTCOMES)}"
            )
        tx.result = self._result(
            outcome, self.now(), card_payment=tx.result.acquirer_ref is not None
        )
        self._tokenise(tx)
        self._notify(tx)
        return tx

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults

    async def reset(self) -> None:
        """Forget everything and restore the start-up faults, as if freshly started."""
        await self.callbacks.aclose()
        self.callbacks.clear_log()
        self.faults = self.config.faults
        self.rng.seed(self.config.seed)
        self._clear()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up early when the simulator shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)

    def begin_shutdown(self) -> None:
        """Release hanging and delayed requests so the server can stop promptly."""
        self.closing.set()

    async def aclose(self) -> None:
        self.begin_shutdown()
        await self.callbacks.aclose()
