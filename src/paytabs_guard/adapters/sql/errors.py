"""Storage errors a caller can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from paytabs_guard.service.ports import GatewayReferenceTaken, StaleVersion

if TYPE_CHECKING:
    from .idempotency import PendingClaim
    from .inbox import PendingDelivery

#: How each database names the two uniqueness rules on a PayTabs transaction reference.
_TRAN_REF_RULES = (
    "uq_payments_tran_ref",  # PostgreSQL: the constraints' names (migrations/0001)
    "pk_gateway_transactions",
    "payments.tran_ref",  # SQLite: "UNIQUE constraint failed: <table>.<column>"
    "gateway_transactions.tran_ref",
)


class ConcurrentUpdate(StaleVersion):
    """Another transaction saved this payment after it was read here (optimistic ``version``
    check). Nothing was written: load the payment again, with ``for_update=True``, and retry."""

    def __init__(self, payment_id: str, expected_version: int) -> None:
        self.payment_id = payment_id
        self.expected_version = expected_version
        super().__init__(
            f"payment {payment_id} was changed by another transaction since version "
            f"{expected_version} was read; reload it with for_update=True and apply again"
        )

    def __repr__(self) -> str:
        return f"ConcurrentUpdate({self.payment_id!r}, expected_version={self.expected_version})"


class ClaimLost(Exception):
    """The commit's idempotency claim found its key held by another request, or the delivery
    it records was recorded before: nothing was written."""

    def __init__(self, claim: PendingClaim | PendingDelivery) -> None:
        super().__init__(f"key {claim.key!r} is taken")
        self.claim = claim


def reference_taken(error: BaseException) -> GatewayReferenceTaken | None:
    """``error`` as :class:`GatewayReferenceTaken` when it is the database refusing a second
    payment a transaction reference; None for anything else."""
    if not isinstance(error, IntegrityError):
        return None
    text = str(error.orig)
    if not any(rule in text for rule in _TRAN_REF_RULES):
        return None
    return GatewayReferenceTaken()
