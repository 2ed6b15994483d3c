"""What the inbox hands out and raises: results, stored events, quarantined deliveries, errors.

Plain data (no SQLAlchemy at import time beyond the type of a wrapped error), shared by every module of
the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AppendResult",
    "InboxEvent",
    "InboxUnavailable",
    "InvalidDelivery",
    "QuarantinedDelivery",
    "from_db_ts",
    "parse_body",
    "utc",
]


class InboxUnavailable(Exception):
    """The inbox storage failed; the receiver answers 503 so ION delivers again later.

    The original exception is ``__cause__`` (and ``original``). The message names the inbox URL with the
    password hidden, and never contains SQL parameters (event bodies).

    Example::

        try:
            inbox.append("shop-floor", "evt-1", body)
        except InboxUnavailable:
            ...  # answer 503 with Retry-After
    """

    def __init__(self, url: str, original: BaseException, action: str = "use") -> None:
        self.url = url
        self.original = original
        self.action = action
        detail = getattr(original, "orig", None) or original
        text = " ".join(str(detail).split())[:300]
        super().__init__(f"inbox {url} unavailable ({action}): {type(detail).__name__}: {text}")


class InvalidDelivery(ValueError):
    """The delivery's own data cannot be stored (the receiver answers 400; a retry would fail the same way).

    Raised by :meth:`Inbox.append`/``aappend`` for that delivery only: its batch neighbours are stored.
    ``field`` names the offending field (``None`` when the database refused the row as a whole).

    Example::

        try:
            inbox.append("shop-floor", "\\ud800", b"{}")
        except InvalidDelivery as error:
            print(error.field)  # event_id
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of an append.

    ``seq`` of the stored row (the original's on a redelivery); ``duplicate`` when ``(receiver, event_id)``
    was seen before (also after its body was purged: see the dedup horizon); ``conflict`` when that earlier
    delivery had a different body (``body_sha256`` is this body's hash, ``existing_sha256`` the stored one's).

    Example::

        result = inbox.append("shop-floor", "evt-1", b'{"resource": "RUNS"}')
        if result.conflict:
            log.warning("evt-1 re-delivered with another body")
    """

    seq: int
    duplicate: bool
    conflict: bool = False
    body_sha256: str | None = None
    existing_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One stored delivery, as handed to Airflow (``to_dict`` is what goes into a TriggerEvent/XCom).

    Example::

        for event in inbox.read_after(cursor):
            print(event.seq, event.resource, event.payload)
    """

    seq: int
    receiver: str
    event_id: str
    subscription_id: str | None
    resource: str | None
    action: str | None
    payload: dict[str, Any] = field(hash=False)
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``received_at`` as ISO 8601 UTC)."""
        return {
            "seq": self.seq,
            "receiver": self.receiver,
            "event_id": self.event_id,
            "subscription_id": self.subscription_id,
            "resource": self.resource,
            "action": self.action,
            "payload": self.payload,
            "received_at": self.received_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class QuarantinedDelivery:
    """A delivery to a known receiver whose signature failed, kept for inspection (never read by triggers).

    Example::

        for item in inbox.quarantined("shop-floor"):
            print(item.id, item.reason, len(item.body))
    """

    id: int
    receiver: str
    received_at: datetime
    body: bytes = field(repr=False)
    headers: dict[str, str]
    reason: str


def utc(value: datetime | None) -> datetime:
    """``value`` as an aware UTC datetime (naive is taken as UTC); now when ``None``."""
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def from_db_ts(value: datetime | str) -> datetime:
    """A stored timestamp as aware UTC (SQLite stores DateTime as naive text in UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_body(body: bytes) -> Any:
    """The body as JSON, or ``None`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
