"""Saved cards in SQL, inside the caller's unit of work (one transaction with the payment).

Each call is one statement run at once on the unit of work's connection: a card row never
waits for the payment's writes at commit, so ``saved_cards`` has no foreign key to payments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from paytabs_guard.domain import CardDetails
from paytabs_guard.domain.cards import SavedCard

from .tables import saved_cards
from .transaction import DbTransaction


class SqlSavedCards:
    """The ``SavedCards`` of one ``SqlUnitOfWork``."""

    def __init__(self, transaction: DbTransaction) -> None:
        self._transaction = transaction

    async def add(self, card: SavedCard) -> None:
        connection = await self._transaction.connection()
        await connection.execute(saved_cards.insert().values(**_row(card)))

    async def get(self, card_id: str, *, for_update: bool = False) -> SavedCard | None:
        connection = await self._transaction.connection()
        statement = select(saved_cards).where(saved_cards.c.id == card_id)
        if for_update:
            statement = statement.with_for_update()
        row = (await connection.execute(statement)).mappings().first()
        return None if row is None else _card(row)

    async def of_customer(self, customer_id: str) -> Sequence[SavedCard]:
        """The customer's cards that can be charged, oldest first."""
        connection = await self._transaction.connection()
        statement = (
            select(saved_cards)
            .where(
                saved_cards.c.customer_id == customer_id,
                saved_cards.c.token.is_not(None),
                saved_cards.c.deleted_at.is_(None),
                saved_cards.c.refused_at.is_(None),
            )
            .order_by(saved_cards.c.created_at, saved_cards.c.id)
        )
        return [_card(row) for row in (await connection.execute(statement)).mappings()]

    async def issued(
        self, card_id: str, payment_id: str, token: str, tran_ref: str, card: CardDetails | None
    ) -> None:
        """PayTabs issued ``token`` for the card ``payment_id`` saves. A card that has its token
        already, or belongs to another payment, is left as it is. A card deleted before its
        token came keeps it until it is deleted at PayTabs too (``deleted_with_token``)."""
        details = card or CardDetails()
        connection = await self._transaction.connection()
        await connection.execute(
            update(saved_cards)
            .where(
                saved_cards.c.id == card_id,
                saved_cards.c.payment_id == payment_id,
                saved_cards.c.token.is_(None),
            )
            .values(token=token, tran_ref=tran_ref, **_details_columns(details))
        )

    async def delete(self, card_id: str, *, now: datetime) -> None:
        """No more charges: stamp ``deleted_at`` (once)."""
        connection = await self._transaction.connection()
        await connection.execute(
            update(saved_cards)
            .where(saved_cards.c.id == card_id, saved_cards.c.deleted_at.is_(None))
            .values(deleted_at=now)
        )

    async def refuse(self, card_id: str, *, now: datetime) -> bool:
        """PayTabs refused the card's token as unknown: stamp ``refused_at`` (once; see the
        port)."""
        connection = await self._transaction.connection()
        result = await connection.execute(
            update(saved_cards)
            .where(saved_cards.c.id == card_id, saved_cards.c.refused_at.is_(None))
            .values(refused_at=now)
        )
        return bool(result.rowcount)

    async def deleted_with_token(self, limit: int) -> Sequence[SavedCard]:
        connection = await self._transaction.connection()
        statement = (
            select(saved_cards)
            .where(saved_cards.c.deleted_at.is_not(None), saved_cards.c.token.is_not(None))
            .order_by(saved_cards.c.deleted_at, saved_cards.c.id)
            .limit(limit)
        )
        return [_card(row) for row in (await connection.execute(statement)).mappings()]

    async def forget_token(self, card_id: str, token: str) -> bool:
        """PayTabs deleted ``token`` too: keep no copy of it (once: see the port)."""
        connection = await self._transaction.connection()
        result = await connection.execute(
            update(saved_cards)
            .where(saved_cards.c.id == card_id, saved_cards.c.token == token)
            .values(token=None)
        )
        return bool(result.rowcount)


def _row(card: SavedCard) -> dict[str, object]:
    return {
        "id": card.id,
        "customer_id": card.customer_id,
        "payment_id": card.payment_id,
        "token": card.token,
        "tran_ref": card.tran_ref,
        **_details_columns(card.details),
        "created_at": card.created_at,
        "deleted_at": card.deleted_at,
        "refused_at": card.refused_at,
    }


def _details_columns(details: CardDetails) -> dict[str, object]:
    return {
        "card_scheme": details.scheme,
        "last_four": details.last_four,
        "expiry_month": details.expiry_month,
        "expiry_year": details.expiry_year,
    }


def _card(row: Any) -> SavedCard:  # a RowMapping of saved_cards
    return SavedCard(
        id=row["id"],
        customer_id=row["customer_id"],
        payment_id=row["payment_id"],
        created_at=row["created_at"],
        token=row["token"],
        tran_ref=row["tran_ref"],
        details=CardDetails(
            scheme=row["card_scheme"],
            last_four=row["last_four"],
            expiry_month=row["expiry_month"],
            expiry_year=row["expiry_year"],
        ),
        deleted_at=row["deleted_at"],
        refused_at=row["refused_at"],
    )
