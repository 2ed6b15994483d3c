"""The quarantine: deliveries to a KNOWN receiver whose signature failed, kept for an operator to inspect.

Bounded per receiver by count and bytes (``[ion_webhooks] quarantine_max_count`` / ``quarantine_max_bytes``):
the check and the insert are one statement (``INSERT ... SELECT ... WHERE`` the receiver's totals leave
room), so a flood of forged requests can never grow it past the bound (on PostgreSQL concurrent inserts
may overshoot by at most the number of concurrent requests). Never read by triggers (its own table),
purged with the events' retention.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox.records import QuarantinedDelivery, from_db_ts, utc

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox.store import Inbox

__all__ = ["add", "counts", "listing", "remove"]


def add(inbox: Inbox, receiver: str, body: bytes, headers: Mapping[str, str], reason: str) -> bool:
    """Keep one delivery; False when the receiver's quarantine is full (count or bytes)."""
    table = inbox.tables.quarantine
    c = table.c
    body = bytes(body)
    size = len(body)
    if size > inbox.quarantine_max_bytes:
        return False
    totals = (
        sa.select(sa.func.count().label("n"), sa.func.coalesce(sa.func.sum(c.size), 0).label("bytes"))
        .where(c.receiver == receiver)
        .subquery()
    )
    values = sa.select(
        sa.literal(receiver, sa.String(255)),
        sa.literal(utc(None), sa.DateTime(timezone=True)),
        sa.literal(str(reason)[:128], sa.String(128)),
        sa.literal(size, sa.BigInteger()),
        sa.literal(json.dumps(dict(headers), default=str), sa.Text()),
        sa.literal(body, sa.LargeBinary()),
    ).where(totals.c.n < inbox.quarantine_max_count, totals.c.bytes + size <= inbox.quarantine_max_bytes)
    columns = ["receiver", "received_at", "reason", "size", "headers", "body"]
    statement = sa.insert(table).from_select(columns, values).returning(c.id)
    with inbox.connect("quarantine", write=True) as conn:
        return conn.execute(statement).first() is not None  # (rowcount is unreliable for INSERT ... SELECT)


def listing(inbox: Inbox, receiver: str | None, limit: int) -> list[QuarantinedDelivery]:
    """The oldest ``limit`` quarantined deliveries (of ``receiver``, or all)."""
    c = inbox.tables.quarantine.c
    query = sa.select(c.id, c.receiver, c.received_at, c.body, c.headers, c.reason)
    if receiver is not None:
        query = query.where(c.receiver == receiver)
    query = query.order_by(c.id).limit(max(0, int(limit)))
    with inbox.connect("quarantine", write=False) as conn:
        rows = list(conn.execute(query))
    return [
        QuarantinedDelivery(
            id=int(row.id),
            receiver=row.receiver,
            received_at=from_db_ts(row.received_at),
            body=bytes(row.body),
            headers=json.loads(row.headers) if row.headers else {},
            reason=row.reason,
        )
        for row in rows
    ]


def remove(inbox: Inbox, ids: Iterable[int]) -> int:
    """Delete quarantined deliveries by id; the number deleted."""
    wanted = [int(i) for i in ids]
    if not wanted:
        return 0
    table = inbox.tables.quarantine
    with inbox.connect("quarantine", write=True) as conn:
        return int(conn.execute(sa.delete(table).where(table.c.id.in_(wanted))).rowcount)


def counts(inbox: Inbox) -> dict[str, dict[str, int]]:
    """``{receiver: {"count": n, "bytes": b}}``."""
    c = inbox.tables.quarantine.c
    query = sa.select(c.receiver, sa.func.count().label("n"), sa.func.sum(c.size).label("b")).group_by(c.receiver)
    with inbox.connect("quarantine", write=False) as conn:
        return {row.receiver: {"count": int(row.n), "bytes": int(row.b or 0)} for row in conn.execute(query)}
