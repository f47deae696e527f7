"""PayTabs' callback (IPN) and browser return, read for the service (``CallbackReader``).

Signatures are checked on the raw bytes with every configured key (``signature.py``); a
delivery that carries Standard Webhooks headers is checked as one instead, with the ``whsec_``
secrets among the keys. A verified body becomes a domain result through the same wire model
and transformer as a query's answer, so a callback and a query can never disagree on what a
transaction means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from pydantic import SecretStr, ValidationError

from paytabs_guard.adapters.paytabs.signature import (
    InvalidSignature,
    verify_callback,
    verify_return,
)
from paytabs_guard.adapters.paytabs.transformers import (
    PayTabsTransaction,
    UnusableTransaction,
    to_gateway_result,
)
from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.domain import GatewayResult, ResultSource
from paytabs_guard.service.callbacks import InvalidCallbackSignature, UnreadableCallback

# PayTabs sends money as strings; a JSON number is refused like the API refuses it, so no
# amount ever passes through a float-shaped value on its way in.
MONEY_FIELDS: Final = ("cart_amount", "tran_total")
_MAX_FIELDS_NAMED: Final = 5


class PayTabsCallbacks:
    """Verifies and reads what PayTabs sends, with the keys of one merchant profile.

    Raises ``standard.InvalidWebhookSecret`` at construction for a malformed ``whsec_`` key,
    so a bad secret stops start-up instead of failing every delivery.
    """

    def __init__(self, keys: Sequence[SecretStr], *, timestamp_tolerance: int) -> None:
        # Each secret signs one scheme: a whsec_ secret (incoming relays) only the timestamped
        # Standard Webhooks one. Were it also a PayTabs key, its holder could sign a
        # timestamp-less callback and step around the relay's replay window.
        self._standard_secrets = tuple(
            k for k in keys if k.get_secret_value().startswith(standard.SECRET_PREFIX)
        )
        self._keys = tuple(k for k in keys if k not in self._standard_secrets)
        for secret in self._standard_secrets:
            standard.decode_secret(secret)
        self._tolerance = timestamp_tolerance

    def verify_callback(
        self,
        body: bytes,
        headers: Mapping[str, str],
        signatures: Sequence[str],
        *,
        now: datetime,
    ) -> None:
        try:
            if standard.SIGNATURE_HEADER in headers:
                if not self._standard_secrets:
                    raise standard.WebhookVerificationError("no_secret_configured")
                secrets = self._standard_secrets
                standard.verify(headers, body, secrets, tolerance_seconds=self._tolerance, now=now)
                return
            if len(signatures) > 1:
                raise InvalidSignature("malformed")
            verify_callback(body, signatures[0] if signatures else None, self._keys)
        except (InvalidSignature, standard.WebhookVerificationError) as failure:
            raise InvalidCallbackSignature(failure.reason) from None

    def read_callback(self, document: Mapping[str, object]) -> GatewayResult:
        if any(not isinstance(document.get(name, ""), str) for name in MONEY_FIELDS):
            raise UnreadableCallback(money_as_number=True)
        try:
            transaction = PayTabsTransaction.model_validate(document)
        except ValidationError as error:
            fields = sorted({".".join(map(str, e["loc"])) for e in error.errors()})
            raise UnreadableCallback(fields=fields[:_MAX_FIELDS_NAMED]) from None
        if transaction.payment_result is None:
            raise UnreadableCallback(fields=["payment_result"])
        try:
            return to_gateway_result(transaction, ResultSource.CALLBACK)
        except UnusableTransaction as unusable:
            raise UnreadableCallback(fields=[unusable.field] if unusable.field else []) from None

    def verify_return(self, fields: Mapping[str, str]) -> None:
        try:
            verify_return(fields, self._keys)
        except InvalidSignature as failure:
            raise InvalidCallbackSignature(failure.reason) from None
