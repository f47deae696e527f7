"""What PayTabs sends us unasked, as the HTTP layer needs it: verified, then read.

Two things arrive from PayTabs outside our own calls: the server-to-server callback (IPN) and
the shopper's browser coming back from the hosted page with signed form fields. The HTTP layer
owns the order of the checks and the answers; what a valid PayTabs signature is and what a
PayTabs transaction looks like belong to the PayTabs connector, behind this port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from paytabs_guard.domain import GatewayResult


class InvalidCallbackSignature(Exception):
    """The delivery is not signed by PayTabs with a key we hold. ``reason`` is a short code for
    metrics and logs (``missing``, ``malformed``, ``mismatch``, ...), never told to the sender
    beyond what the problem type says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnreadableCallback(Exception):
    """A signed body that is not a PayTabs transaction we can use.

    ``money_as_number`` when an amount came as a JSON number (refused like the API refuses it,
    so no amount passes through a float); otherwise ``fields`` names what is wrong or missing
    (at most five, possibly none).
    """

    def __init__(self, *, money_as_number: bool = False, fields: Sequence[str] = ()) -> None:
        super().__init__("money_not_string" if money_as_number else "schema")
        self.money_as_number = money_as_number
        self.fields = tuple(fields)


class CallbackReader(Protocol):
    def verify_callback(
        self,
        body: bytes,
        headers: Mapping[str, str],
        signatures: Sequence[str],
        *,
        now: datetime,
    ) -> None:
        """Raise InvalidCallbackSignature unless the raw ``body`` is signed: PayTabs'
        ``Signature`` header (``signatures``: every value sent), or a Standard Webhooks
        delivery in ``headers`` checked against ``now``."""
        ...

    def read_callback(self, document: Mapping[str, object]) -> GatewayResult:
        """The result a verified callback's JSON object carries; raises UnreadableCallback."""
        ...

    def verify_return(self, fields: Mapping[str, str]) -> None:
        """Raise InvalidCallbackSignature unless the browser return's form ``fields`` are
        signed by PayTabs."""
        ...
