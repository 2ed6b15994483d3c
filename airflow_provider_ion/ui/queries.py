"""Read queries for the "ION webhooks" page that the inbox's public API does not offer.

SQLAlchemy Core against the inbox's own engine and tables (``inbox.engine``, ``inbox.events``,
``inbox.cursors``), read-only. Every query is bounded (a ``LIMIT`` or an aggregate over an indexed time
range), so the page stays fast with a large inbox: 10,000 deliveries and 50 receivers render in well
under a second (see the README section "ION webhooks in the Airflow UI").

Example::

    from airflow_provider_ion.ui.queries import DeliveryFilter, deliveries, receiver_activity

    rows = deliveries(inbox, DeliveryFilter(receiver="factory", resource="RUNS"), limit=50)
    activity = receiver_activity(inbox, now=datetime.now(UTC))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox import Inbox, InboxUnavailable

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@overload
def as_utc(value: datetime | str) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | str | None) -> datetime | None:
    """A database timestamp as an aware UTC datetime (SQLite gives naive text in UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One stored delivery as the page lists it (no body, no headers)."""

    seq: int
    receiver: str
    event_id: str
    resource: str | None
    action: str | None
    received_at: datetime
    size: int


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Filters of the deliveries list; every field is optional and they combine with AND.

    ``receiver``, ``resource``, ``action`` and ``event_id`` match exactly (ION's names are upper case);
    ``since``/``until`` bound ``received_at`` (inclusive/exclusive).
    """

    receiver: str | None = None
    resource: str | None = None
    action: str | None = None
    event_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _read(inbox: Inbox, query: Any) -> list[Any]:
    engine = inbox.engine  # InboxUnavailable when it cannot be opened
    try:
        with engine.connect() as conn:
            return list(conn.execute(query))
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise InboxUnavailable(inbox.safe_url, error, "read") from error


def deliveries(inbox: Inbox, filters: DeliveryFilter, *, limit: int = 100) -> list[DeliveryRow]:
    """The newest deliveries matching ``filters``, newest first, at most ``limit``."""
    c = inbox.events.c
    query = sa.select(
        c.seq, c.receiver, c.event_id, c.resource, c.action, c.received_at, sa.func.length(c.body).label("size")
    )
    if filters.receiver:
        query = query.where(c.receiver == filters.receiver)
    if filters.resource:
        query = query.where(c.resource == filters.resource)
    if filters.action:
        query = query.where(c.action == filters.action)
    if filters.event_id:
        query = query.where(c.event_id == filters.event_id)
    if filters.since is not None:
        query = query.where(c.received_at >= filters.since)
    if filters.until is not None:
        query = query.where(c.received_at < filters.until)
    query = query.order_by(c.seq.desc()).limit(max(1, min(int(limit), 1000)))
    return [
        DeliveryRow(
            seq=int(r.seq),
            receiver=r.receiver,
            event_id=r.event_id,
            resource=r.resource,
            action=r.action,
            received_at=as_utc(r.received_at),
            size=int(r.size or 0),
        )
        for r in _read(inbox, query)
    ]


def totals(inbox: Inbox) -> tuple[int, int]:
    """``(number of stored deliveries, highest seq)`` in one aggregate query."""
    c = inbox.events.c
    count, top = _read(inbox, sa.select(sa.func.count(), sa.func.max(c.seq)))[0]
    return int(count or 0), int(top or 0)


@dataclass
class ReceiverActivity:
    """Accepted deliveries of one receiver over the last hour and day, and its newest delivery."""

    receiver: str
    accepted_hour: int = 0
    accepted_day: int = 0
    last: DeliveryRow | None = None


def receiver_activity(inbox: Inbox, *, now: datetime) -> dict[str, ReceiverActivity]:
    """``{receiver: ReceiverActivity}`` for every receiver with a delivery in the inbox.

    Two aggregate queries (counts over the last day through the ``received_at`` index; the newest seq
    per receiver) and one lookup of those newest rows.
    """
    c = inbox.events.c
    hour_ago, day_ago = now - HOUR, now - DAY
    counts = (
        sa.select(
            c.receiver,
            sa.func.sum(sa.case((c.received_at >= hour_ago, 1), else_=0)).label("hour"),
            sa.func.count().label("day"),
        )
        .where(c.received_at >= day_ago)
        .group_by(c.receiver)
    )
    newest = sa.select(sa.func.max(c.seq).label("seq")).group_by(c.receiver).subquery()
    last = sa.select(
        c.seq, c.receiver, c.event_id, c.resource, c.action, c.received_at, sa.func.length(c.body).label("size")
    ).where(c.seq.in_(sa.select(newest.c.seq)))
    out: dict[str, ReceiverActivity] = {}
    for r in _read(inbox, last):
        out[r.receiver] = ReceiverActivity(
            r.receiver,
            last=DeliveryRow(
                int(r.seq), r.receiver, r.event_id, r.resource, r.action, as_utc(r.received_at), int(r.size or 0)
            ),
        )
    for r in _read(inbox, counts):
        activity = out.setdefault(r.receiver, ReceiverActivity(r.receiver))
        activity.accepted_hour, activity.accepted_day = int(r.hour or 0), int(r.day or 0)
    return out


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """A trigger's cursor in the inbox and how far behind the newest delivery it is."""

    consumer: str
    cursor: int
    updated_at: datetime | None
    lag_events: int
    #: Age of the oldest delivery after the cursor (0 when there is none).
    lag_seconds: float


def consumer_lag(inbox: Inbox, *, now: datetime) -> list[ConsumerLag]:
    """Every cursor with its lag in events and seconds (one query per cursor; there are few)."""
    c, cur = inbox.events.c, inbox.cursors.c
    out: list[ConsumerLag] = []
    for row in _read(inbox, sa.select(cur.consumer, cur.seq, cur.updated_at).order_by(cur.consumer)):
        behind = sa.select(sa.func.count(), sa.func.min(c.received_at)).where(c.seq > row.seq)
        count, oldest = _read(inbox, behind)[0]
        oldest = as_utc(oldest)
        out.append(
            ConsumerLag(
                consumer=row.consumer,
                cursor=int(row.seq),
                updated_at=as_utc(row.updated_at),
                lag_events=int(count or 0),
                lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            )
        )
    return out


def settled_deliveries(inbox: Inbox, *, now: datetime, older_than: timedelta, limit: int = 200) -> list[DeliveryRow]:
    """The newest ``limit`` deliveries received between a day ago and ``older_than`` ago.

    The candidates for "in the inbox but in no DAG run after the threshold"; the caller checks them
    against Airflow's asset events.
    """
    return deliveries(inbox, DeliveryFilter(since=now - DAY, until=now - older_than), limit=limit)
