"""Counters (rejections, conflicts), retention (purge) and stats of an inbox: the store's housekeeping.

Functions of an :class:`Inbox` (whose methods of the same names call them).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox import migrations, quarantine
from airflow_provider_ion.webhooks.inbox.records import from_db_ts, utc
from airflow_provider_ion.webhooks.inbox.statements import dialect_insert

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox.store import Inbox

__all__ = ["PURGE_BATCH", "add_rejections", "conflict_counts", "purge", "rejection_counts", "stats"]

#: Rows one purge transaction deletes at most (a large purge never holds SQLite's write lock for long).
PURGE_BATCH = 5000


def add_rejections(inbox: Inbox, counts: Mapping[tuple[str, str], int], at: datetime | None = None) -> None:
    """Add ``{(receiver, reason): n}`` to the hourly rejection counters (one upsert per pair).

    The receiver batches its counts and calls this every few seconds, so refused (possibly forged)
    requests cost no write each.
    """
    if not counts:
        return
    hour = utc(at).replace(minute=0, second=0, microsecond=0)
    table = inbox.rejections
    with inbox.connect("rejections", write=True) as conn:
        for (receiver, reason), n in counts.items():
            statement = dialect_insert(inbox.is_postgres)(table).values(
                receiver=receiver, reason=reason, hour=hour, count=int(n)
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["receiver", "reason", "hour"],
                    set_={"count": table.c.count + statement.excluded.count},
                )
            )


def rejection_counts(inbox: Inbox, *, since: datetime | None = None) -> dict[str, dict[str, int]]:
    """``{receiver: {reason: n}}`` over the hours from ``since`` (its hour included) on."""
    c = inbox.rejections.c
    query = sa.select(c.receiver, c.reason, sa.func.sum(c.count).label("n")).group_by(c.receiver, c.reason)
    if since is not None:
        query = query.where(c.hour >= utc(since).replace(minute=0, second=0, microsecond=0))
    out: dict[str, dict[str, int]] = {}
    with inbox.connect("rejections", write=False) as conn:
        for row in conn.execute(query):
            out.setdefault(row.receiver, {})[row.reason] = int(row.n)
    return out


def conflict_counts(inbox: Inbox, *, since: datetime | None = None) -> dict[str, int]:
    """``{receiver: n}``: re-deliveries of a known event id with a different body, from ``since`` on."""
    c = inbox.tables.conflicts.c
    query = sa.select(c.receiver, sa.func.sum(c.count).label("n")).group_by(c.receiver)
    if since is not None:
        query = query.where(c.hour >= utc(since).replace(minute=0, second=0, microsecond=0))
    with inbox.connect("conflicts", write=False) as conn:
        return {row.receiver: int(row.n) for row in conn.execute(query)}


def purge(inbox: Inbox, older_than: timedelta | None = None) -> int:
    """Delete events received more than ``older_than`` ago (default: the ``retention`` setting).

    Age only: a consumer that fell further behind than the retention loses those events, which is why
    the retention must exceed both ION's retry window and any expected consumer outage. The same age
    purges the quarantine and the hourly counters; the seen record (dedup) is purged at the dedup
    horizon, so a replay of a purged event stays a duplicate until then. Deletes in batches so a large
    purge never holds the SQLite write lock for long. Returns the count of events deleted.
    """
    now = utc(None)
    cutoff = now - (inbox.retention if older_than is None else older_than)
    deleted = _delete_batches(inbox, inbox.events, inbox.events.c.seq, inbox.events.c.received_at, cutoff)
    t = inbox.tables
    _delete_batches(inbox, t.quarantine, t.quarantine.c.id, t.quarantine.c.received_at, cutoff)
    _delete_batches(inbox, t.seen, None, t.seen.c.seen_at, now - inbox.dedup_horizon)
    with inbox.connect("purge", write=True) as conn:
        conn.execute(sa.delete(inbox.rejections).where(inbox.rejections.c.hour < cutoff))
        conn.execute(sa.delete(t.conflicts).where(t.conflicts.c.hour < now - inbox.dedup_horizon))
    return deleted


def _delete_batches(inbox: Inbox, table: sa.Table, key: Any, when: Any, cutoff: datetime) -> int:
    deleted = 0
    while True:
        with inbox.connect("purge", write=True) as conn:
            if key is None:  # composite key: delete by age, bounded by the oldest batch's timestamp
                edge = conn.execute(
                    sa.select(when).where(when < cutoff).order_by(when).offset(PURGE_BATCH).limit(1)
                ).scalar()
                bound = cutoff if edge is None else edge
                count = conn.execute(sa.delete(table).where(when < bound)).rowcount
                deleted += count
                if edge is None:
                    return deleted
                continue
            batch = sa.select(key).where(when < cutoff).order_by(key).limit(PURGE_BATCH)
            count = conn.execute(sa.delete(table).where(key.in_(batch.scalar_subquery()))).rowcount
        deleted += count
        if count < PURGE_BATCH:
            return deleted


def stats(inbox: Inbox) -> dict[str, Any]:
    """Counts, time range, latest seq, consumers' cursors and lag, rejections, conflicts, quarantine."""
    c, cur = inbox.events.c, inbox.cursors.c
    with inbox.connect("stats", write=False) as conn:
        total, oldest, newest, latest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(c.received_at), sa.func.max(c.received_at), sa.func.max(c.seq))
        ).one()
        by_receiver = {
            row.receiver: int(row.n)
            for row in conn.execute(
                sa.select(c.receiver, sa.func.count().label("n")).group_by(c.receiver).order_by(c.receiver)
            )
        }
        by_resource = [
            {"resource": row.resource, "action": row.action, "count": int(row.n)}
            for row in conn.execute(
                sa.select(c.resource, c.action, sa.func.count().label("n"))
                .group_by(c.resource, c.action)
                .order_by(c.resource, c.action)
            )
        ]
        lag_query = (
            sa.select(cur.consumer, cur.seq, cur.updated_at, sa.func.count(c.seq).label("lag"))
            .select_from(inbox.cursors.outerjoin(inbox.events, c.seq > cur.seq))
            .group_by(cur.consumer, cur.seq, cur.updated_at)
            .order_by(cur.consumer)
        )
        consumers = {
            row.consumer: {
                "cursor": int(row.seq),
                "lag": int(row.lag),
                "updated_at": from_db_ts(row.updated_at).isoformat(),
            }
            for row in conn.execute(lag_query)
        }
        seen = int(conn.execute(sa.select(sa.func.count()).select_from(inbox.tables.seen)).scalar() or 0)
        version = migrations.read_version(conn, inbox.tables)
    return {
        "url": inbox.safe_url,
        "backend": inbox.backend,
        "schema_version": version,
        "total": int(total),
        "latest_seq": int(latest or 0),
        "oldest_received_at": None if oldest is None else from_db_ts(oldest).isoformat(),
        "newest_received_at": None if newest is None else from_db_ts(newest).isoformat(),
        "by_receiver": by_receiver,
        "by_resource_action": by_resource,
        "consumers": consumers,
        "rejections": rejection_counts(inbox),
        "conflicts": conflict_counts(inbox),
        "quarantine": quarantine.counts(inbox),
        "seen_ids": seen,
        "retention_seconds": inbox.retention.total_seconds(),
        "dedup_horizon_seconds": inbox.dedup_horizon.total_seconds(),
    }
