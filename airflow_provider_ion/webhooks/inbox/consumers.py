"""The consumers record: what each trigger or sensor reading this inbox consumes, and when it was last seen.

A trigger upserts its row when it opens its cursor (and a sensor when it starts waiting), so the audit
can compare the filters in use with ION's active subscriptions. Rows are small, one per consumer name;
``last_seen`` lets the audit ignore consumers gone for longer than its window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox.records import from_db_ts, utc
from airflow_provider_ion.webhooks.inbox.statements import dialect_insert

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox.store import Inbox

__all__ = ["KINDS", "ConsumerRecord", "listing", "record"]

#: What a consumer is: an event trigger (AssetWatcher, holds a cursor) or a sensor's wait.
KINDS = ("trigger", "sensor")


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    """One consumer of the inbox and its filter (``None`` for resources/actions means any).

    Example::

        for consumer in inbox.consumers(since=datetime.now(UTC) - timedelta(days=7)):
            print(consumer.consumer, consumer.receiver, consumer.resources, consumer.actions)
    """

    consumer: str
    kind: str
    receiver: str | None
    resources: tuple[str, ...] | None
    actions: tuple[str, ...] | None
    first_seen: datetime
    last_seen: datetime


def _names(values: Iterable[str] | None) -> str | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    names = sorted({str(v).strip() for v in values if str(v).strip()})
    if not names:
        return None
    return json.dumps(names)


def _check_text(value: str | None, what: str, limit: int) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise ValueError(f"consumer {what} must be a string of at most {limit} characters, got {value!r:.80}")


def record(
    inbox: Inbox,
    consumer: str,
    *,
    kind: str,
    receiver: str | None,
    resources: Iterable[str] | None,
    actions: Iterable[str] | None,
    at: datetime | None = None,
) -> None:
    """Upsert ``consumer``'s filter and set its ``last_seen`` to ``at`` (now); ``first_seen`` is kept."""
    if not isinstance(consumer, str) or not consumer.strip():
        raise ValueError(f"consumer must be a non-empty name, got {consumer!r}")
    _check_text(consumer, "name", 255)
    if kind not in KINDS:
        raise ValueError(f"consumer kind must be one of {KINDS}, got {kind!r}")
    _check_text(receiver, "receiver", 255)
    table = inbox.tables.consumers
    when = utc(at)
    values = {
        "consumer": consumer,
        "kind": kind,
        "receiver": receiver or None,
        "resources": _names(resources),
        "actions": _names(actions),
        "first_seen": when,
        "last_seen": when,
    }
    statement = dialect_insert(inbox.is_postgres)(table).values(**values)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["consumer"],
        set_={
            "kind": excluded.kind,
            "receiver": excluded.receiver,
            "resources": excluded.resources,
            "actions": excluded.actions,
            "last_seen": excluded.last_seen,
        },
    )
    with inbox.connect("consumers", write=True) as conn:
        conn.execute(statement)


def listing(inbox: Inbox, since: datetime | None = None) -> list[ConsumerRecord]:
    """Every consumer seen at or after ``since`` (all when ``None``), by name."""
    table = inbox.tables.consumers
    query = sa.select(table).order_by(table.c.consumer)
    if since is not None:
        query = query.where(table.c.last_seen >= utc(since))
    with inbox.connect("consumers", write=False) as conn:
        rows = conn.execute(query).all()
    return [
        ConsumerRecord(
            consumer=row.consumer,
            kind=row.kind,
            receiver=row.receiver,
            resources=None if row.resources is None else tuple(json.loads(row.resources)),
            actions=None if row.actions is None else tuple(json.loads(row.actions)),
            first_seen=from_db_ts(row.first_seen),
            last_seen=from_db_ts(row.last_seen),
        )
        for row in rows
    ]
