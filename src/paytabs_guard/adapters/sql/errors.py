"""Storage errors a caller can act on."""

from __future__ import annotations

from paytabs_guard.service.ports import StaleVersion


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
