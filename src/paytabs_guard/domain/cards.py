"""A saved card: PayTabs' token for a card a customer let the merchant keep.

The token is a credential (with the profile's server key it charges the card), so it is kept
out of ``repr`` and never leaves the service: the API names a card by ``id`` and shows only its
scheme, last four digits and expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .gateway_results import CardDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedCard:
    """One card of one customer (the merchant's ``customer_id``).

    The row exists from the create that asked to save the card; ``token`` arrives with the
    payment's authorised result (``None`` until then, and again once the card is deleted).
    ``tran_ref`` is the transaction that created the token: PayTabs wants it with each charge.
    ``refused_at``: when PayTabs refused the token as unknown (:attr:`refused`).
    """

    id: str
    customer_id: str
    payment_id: str
    created_at: datetime
    token: str | None = field(default=None, repr=False)
    tran_ref: str | None = None
    details: CardDetails = field(default_factory=CardDetails)
    deleted_at: datetime | None = None
    refused_at: datetime | None = None

    @property
    def ready(self) -> bool:
        """PayTabs issued the token, and the card was neither deleted nor refused: it can be
        charged."""
        return (
            self.token is not None
            and self.tran_ref is not None
            and self.deleted_at is None
            and self.refused_at is None
        )

    @property
    def refused(self) -> bool:
        """PayTabs refused the token as unknown (code 209: deleted there, expired, another
        profile's), and the card was not deleted: it is charged no more. The token is kept:
        PayTabs' word is about one profile, and a service pointed at the wrong one must not
        lose every card on its first renewals (clearing ``refused_at`` gives it back)."""
        return self.refused_at is not None and self.deleted_at is None
