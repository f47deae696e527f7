"""Outgoing webhook sinks named by their URL instead of their position in the list.

Revision ID: 0013_webhook_sink_names
Revises: 0012_saved_card_refusals
Create Date: 2026-12-06

The service named the sink of the N-th URL of EVENTS_WEBHOOK_URLS ``webhook:N``: removing
URL 1 gave URL 2 the name ``webhook:1`` and with it URL 1's backlog, and URL 2's own pending
deliveries were left to a name nothing sent. Sinks are now ``webhook:<endpoint name>``, a
hash of the normalised URL (``outgoing_webhooks.endpoint_name``). The deliveries stored under
``webhook:N`` move to the sink of the URL at position N of the configuration this upgrade
runs with (``upgrade(..., webhook_aliases=...)``, which the service and ``paytabs-guard db
upgrade`` pass from EVENTS_WEBHOOK_URLS): change that list in a release of its own, not in
the one that brings this upgrade. A position the configuration no longer has keeps its rows
under ``webhook:N``, a sink no longer configured (docs/events.md). The positions are kept in
``webhook_sink_aliases`` for the rows an instance of the older version writes during a
rolling upgrade (the service moves those at its start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0013_webhook_sink_names"
down_revision: str | None = "0012_saved_card_refusals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_sink_aliases",
        sa.Column("alias", sa.Text(), primary_key=True),
        sa.Column("sink", sa.Text(), nullable=False),
    )
    aliases: Mapping[str, str] = context.config.attributes.get("webhook_aliases") or {}
    bind = op.get_bind()
    for alias, sink in sorted(aliases.items()):
        bind.execute(
            sa.text("INSERT INTO webhook_sink_aliases (alias, sink) VALUES (:alias, :sink)"),
            {"alias": alias, "sink": sink},
        )
        # Every status: the delivered rows are the events' history, and a redelivery names
        # the sink. An event is fanned out once, so the new name has no row of it yet; the
        # guard keeps the upgrade from failing on the unique (event_id, sink) if it had.
        bind.execute(
            sa.text(
                "UPDATE event_deliveries SET sink = :sink WHERE sink = :alias "
                "AND NOT EXISTS (SELECT 1 FROM event_deliveries AS taken "
                "WHERE taken.event_id = event_deliveries.event_id AND taken.sink = :sink)"
            ),
            {"alias": alias, "sink": sink},
        )


def downgrade() -> None:
    # The older version names sinks by position again: rows go back to the position they
    # had at the upgrade (those of URLs added since stay under their URL's name).
    bind = op.get_bind()
    for alias, sink in bind.execute(sa.text("SELECT alias, sink FROM webhook_sink_aliases")):
        bind.execute(
            sa.text(
                "UPDATE event_deliveries SET sink = :alias WHERE sink = :sink "
                "AND NOT EXISTS (SELECT 1 FROM event_deliveries AS taken "
                "WHERE taken.event_id = event_deliveries.event_id AND taken.sink = :alias)"
            ),
            {"alias": alias, "sink": sink},
        )
    op.drop_table("webhook_sink_aliases")
