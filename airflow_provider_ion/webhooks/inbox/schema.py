"""The inbox's tables (SQLAlchemy Core), one set per ``table_prefix`` and PostgreSQL schema.

Schema versions (kept in ``<prefix>_schema``, upgraded by :mod:`.migrations`):

1. 0.1.0: ``events``, ``cursors``, ``rejections``.
2. 0.2.0: ``seen`` (the dedup record, kept for the dedup horizon after the bodies are purged),
   ``conflicts`` (hourly counts of re-deliveries with another body), ``quarantine`` (signature failures
   of known receivers) and ``schema`` itself.
3. ``consumers``: what each trigger or sensor consumes (receiver, resources, actions) and when it was last
   seen, so the audit can compare consumers with ION's subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

__all__ = ["COLUMN_LIMITS", "InboxTables", "build_tables"]

#: Longest value each text column of an event holds (PostgreSQL enforces it; the inbox checks it first).
COLUMN_LIMITS = {"receiver": 255, "event_id": 255, "subscription_id": 255, "resource": 255, "action": 64}


def _serial() -> sa.types.TypeEngine[int]:
    # INTEGER PRIMARY KEY AUTOINCREMENT on SQLite: a rowid alias whose values are never reused, even after
    # purge deletes the newest rows (plain rowids would restart below a consumer's cursor).
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


@dataclass(frozen=True)
class InboxTables:
    """Every table of one inbox, and the metadata holding them.

    Example::

        tables = build_tables("ion_inbox", None)
        print(tables.events.name)  # ion_inbox_events
    """

    metadata: sa.MetaData
    events: sa.Table
    cursors: sa.Table
    rejections: sa.Table
    seen: sa.Table
    conflicts: sa.Table
    quarantine: sa.Table
    version: sa.Table
    consumers: sa.Table

    @property
    def v1(self) -> list[sa.Table]:
        """The tables of schema version 1 (0.1.0)."""
        return [self.events, self.cursors, self.rejections]

    @property
    def v2(self) -> list[sa.Table]:
        """The tables schema version 2 added."""
        return [self.seen, self.conflicts, self.quarantine, self.version]

    @property
    def v3(self) -> list[sa.Table]:
        """The tables schema version 3 added."""
        return [self.consumers]


def build_tables(prefix: str, schema: str | None) -> InboxTables:
    """The tables of the inbox ``prefix`` (in PostgreSQL ``schema``, else the connection's)."""
    metadata = sa.MetaData(schema=schema)
    events = sa.Table(
        f"{prefix}_events",
        metadata,
        sa.Column("seq", _serial(), primary_key=True, autoincrement=True),
        sa.Column("receiver", sa.String(COLUMN_LIMITS["receiver"]), nullable=False),
        sa.Column("event_id", sa.String(COLUMN_LIMITS["event_id"]), nullable=False),
        sa.Column("subscription_id", sa.String(COLUMN_LIMITS["subscription_id"])),
        sa.Column("resource", sa.String(COLUMN_LIMITS["resource"])),
        sa.Column("action", sa.String(COLUMN_LIMITS["action"])),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text()),
        sa.UniqueConstraint("receiver", "event_id", name=f"{prefix}_events_delivery_uq"),
        sa.Index(f"{prefix}_events_received_at_ix", "received_at"),
        sqlite_autoincrement=True,
    )
    cursors = sa.Table(
        f"{prefix}_cursors",
        metadata,
        sa.Column("consumer", sa.String(255), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Deliveries the receiver refused, counted per receiver, reason and hour (for the audit and stats).
    rejections = sa.Table(
        f"{prefix}_rejections",
        metadata,
        sa.Column("receiver", sa.String(255), primary_key=True),
        sa.Column("reason", sa.String(128), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    # One row per delivery identity ever stored, kept for the dedup horizon (longer than the bodies): a
    # replay of a purged event is still a duplicate. seq is the original row's; body_sha256 its body's.
    seen = sa.Table(
        f"{prefix}_seen",
        metadata,
        sa.Column("receiver", sa.String(COLUMN_LIMITS["receiver"]), primary_key=True),
        sa.Column("event_id", sa.String(COLUMN_LIMITS["event_id"]), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index(f"{prefix}_seen_seen_at_ix", "seen_at"),
    )
    # Re-deliveries of a known (receiver, event_id) with a different body, counted per receiver and hour.
    conflicts = sa.Table(
        f"{prefix}_conflicts",
        metadata,
        sa.Column("receiver", sa.String(255), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    quarantine = sa.Table(
        f"{prefix}_quarantine",
        metadata,
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("headers", sa.Text()),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Index(f"{prefix}_quarantine_receiver_ix", "receiver", "id"),
        sa.Index(f"{prefix}_quarantine_received_at_ix", "received_at"),
        sqlite_autoincrement=True,
    )
    version = sa.Table(
        f"{prefix}_schema",
        metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # What each trigger or sensor consumes, upserted when it opens its cursor (for the audit). resources and
    # actions are JSON lists of names as the filter holds them, or NULL for "any".
    consumers = sa.Table(
        f"{prefix}_consumers",
        metadata,
        sa.Column("consumer", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("receiver", sa.String(COLUMN_LIMITS["receiver"])),
        sa.Column("resources", sa.Text()),
        sa.Column("actions", sa.Text()),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Index(f"{prefix}_consumers_last_seen_ix", "last_seen"),
    )
    return InboxTables(metadata, events, cursors, rejections, seen, conflicts, quarantine, version, consumers)
