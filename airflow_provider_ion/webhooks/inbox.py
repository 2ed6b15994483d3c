"""The durable webhook inbox: where a delivery lives between the receiver's 2xx and Airflow.

Contracts (see ARCHITECTURE.md):

- **Delivery identity.** ``(receiver, event_id)`` is unique. :meth:`Inbox.append` is an insert-or-ignore
  that returns the sequence number of the stored row, so a redelivery is acknowledged again and stored once.
- **Durability.** :meth:`Inbox.append` commits before it returns, so the receiver can answer 2xx right
  after it. SQLite runs in WAL mode with ``synchronous=FULL`` by default: WAL+NORMAL already survives
  ``kill -9`` of the writer (the commit is in the OS page cache), but only FULL also survives power loss
  or a kernel crash, and ION's retries stop once we answer 2xx. Measured on a 2-core VM (one thread,
  1 KB bodies): NORMAL ~1,000-1,200 appends/s (p50 0.4 ms), FULL ~300-900 appends/s (p50 0.6-4 ms), both
  far above any plausible ION webhook rate; ``sqlite_synchronous="NORMAL"`` is a setting for who prefers
  throughput. Writers of one process queue on a lock before SQLite's busy handler (which polls and can
  starve one thread for the whole busy timeout under load). PostgreSQL follows the server's
  ``synchronous_commit`` (keep it ``on``).
- **A cursor never skips an event.** Readers page with ``seq > cursor``. That is only safe if a row with
  a smaller seq can never become visible after a row with a larger one. SQLite has a single writer, so seq
  order is commit order. On PostgreSQL, two appends can take seqs 10 and 11 and commit 11 first; a reader
  who saw 11 and moved on would miss 10 forever. The inbox orders commits: each append takes a
  transaction-level advisory lock (keyed on the table name) *before* it draws its seq and holds it until
  commit. PostgreSQL releases transaction locks only after the commit is durable and visible, so the next
  append's seq is drawn after the previous row is visible: visible rows are always a prefix in seq order.
  This serialises appends to one inbox, which costs little because ``NOTIFY`` (sent by every append)
  already serialises committing transactions on a global lock. The alternative, an ``xid8`` column read
  only below ``pg_snapshot_xmin(pg_current_snapshot())``, is not enough alone (xid order is not seq order:
  it needs the same kind of lock around drawing both) and lets any long transaction anywhere on the
  server stall delivery. The lock wait is bounded by ``lock_timeout``
  (then :class:`InboxUnavailable`, so the receiver answers 503 and ION retries).
- **Storage down means 503.** Every storage failure (disk full, read-only file, server down, lock wait
  beyond the busy timeout) is raised as :class:`InboxUnavailable`, wrapping the original; its message
  names the inbox URL without the password.

Only the raw body is stored (as delivered, bytes); ``payload`` is parsed from it on read. One source of
truth, half the storage, and a body that is not JSON is still stored (it was acknowledged) and surfaces
as ``{"_raw": "<text>"}``. Request headers are stored too, for forensics, but never handed to Airflow:
ION receivers can carry custom headers, which may be credentials.

SQLAlchemy Core only. This module imports SQLAlchemy at module level, so nothing imported at DAG-parse
time may import it at module level (the trigger imports it lazily). Engines are created on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine

__all__ = [
    "DEFAULT_RETENTION",
    "AppendResult",
    "Inbox",
    "InboxEvent",
    "InboxListener",
    "InboxUnavailable",
    "default_inbox_url",
]

#: How long events (and so their dedup ids) are kept. ION's retry window is unknown; plan for days.
DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_TABLE_PREFIX = "ion_inbox"
_PURGE_BATCH = 5000
_SYNC_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def default_inbox_url() -> str:
    """``$AIRFLOW_ION_INBOX_URL``, else a SQLite file ``$AIRFLOW_HOME/ion_inbox.db`` (``~/airflow``)."""
    url = os.environ.get("AIRFLOW_ION_INBOX_URL")
    if url:
        return url
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return f"sqlite:///{Path(home, 'ion_inbox.db')}"


class InboxUnavailable(Exception):
    """The inbox storage failed; the receiver answers 503 so ION delivers again later.

    The original exception is ``__cause__`` (and ``original``). The message names the inbox URL with the
    password hidden, and never contains SQL parameters (event bodies).
    """

    def __init__(self, url: str, original: BaseException, action: str = "use") -> None:
        self.url = url
        self.original = original
        detail = original.orig if isinstance(original, sa_exc.DBAPIError) else original
        text = " ".join(str(detail).split())[:300]
        super().__init__(f"inbox {url} unavailable ({action}): {type(detail).__name__}: {text}")


@dataclass(frozen=True, slots=True)
class AppendResult:
    """``seq`` of the stored row; ``duplicate`` is true when it was already there (a redelivery)."""

    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One stored delivery, as handed to Airflow (``to_dict`` is what goes into a TriggerEvent/XCom)."""

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


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _from_db_ts(value: datetime | str) -> datetime:
    # SQLite stores DateTime as naive text in UTC (we convert before writing).
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


class Inbox:
    """The inbox store on SQLite (a file) or PostgreSQL, via SQLAlchemy Core.

    ``Inbox(url_or_engine)`` is cheap: the engine and the schema are created on first use, so an Inbox
    can be built at import or config time. Thread-safe; share one instance per process.

    Settings: ``table_prefix`` (tables ``<prefix>_events`` and ``<prefix>_cursors``; also the NOTIFY
    channel unless ``notify_channel`` is given), ``schema`` (PostgreSQL schema), ``retention`` (default of
    :meth:`purge`), ``sqlite_synchronous`` (``FULL`` by default, see the module doc), ``busy_timeout``
    (seconds a SQLite writer waits for the lock, or a PostgreSQL append waits for its ordering lock).
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine | None = None,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        schema: str | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        sqlite_synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        notify_channel: str | None = None,
    ) -> None:
        if not _IDENTIFIER.fullmatch(table_prefix):
            raise ValueError(f"table_prefix must be an SQL identifier, got {table_prefix!r}")
        sync = sqlite_synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ValueError(f"sqlite_synchronous must be one of {sorted(_SYNC_MODES)}")
        if isinstance(url_or_engine, Engine):
            self._engine: Engine | None = url_or_engine
            self._url = url_or_engine.url
        else:
            self._engine = None
            self._url = sa.engine.make_url(url_or_engine or default_inbox_url())  # ArgumentError on junk
        self.table_prefix = table_prefix
        self.schema = schema
        self.retention = retention
        self.sqlite_synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self.notify_channel = notify_channel or table_prefix
        self._lock = threading.Lock()
        # SQLite has one writer at a time; its busy handler polls with growing sleeps, so under load
        # one thread can lose the race for the whole busy timeout. Queue this process's writers here.
        self._sqlite_writer = threading.Lock()
        self._ready = False
        self._listener: InboxListener | None = None

        self.metadata = sa.MetaData(schema=schema)
        self.events = sa.Table(
            f"{table_prefix}_events",
            self.metadata,
            # INTEGER PRIMARY KEY AUTOINCREMENT on SQLite: a rowid alias whose values are never reused,
            # even after purge deletes the newest rows (plain rowids would restart below a consumer's cursor).
            sa.Column(
                "seq",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("receiver", sa.String(255), nullable=False),
            sa.Column("event_id", sa.String(255), nullable=False),
            sa.Column("subscription_id", sa.String(255)),
            sa.Column("resource", sa.String(255)),
            sa.Column("action", sa.String(64)),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("body", sa.LargeBinary(), nullable=False),
            sa.Column("headers", sa.Text()),
            sa.UniqueConstraint("receiver", "event_id", name=f"{table_prefix}_events_delivery_uq"),
            sa.Index(f"{table_prefix}_events_received_at_ix", "received_at"),
            sqlite_autoincrement=True,
        )
        self.cursors = sa.Table(
            f"{table_prefix}_cursors",
            self.metadata,
            sa.Column("consumer", sa.String(255), primary_key=True),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        # Deliveries the receiver refused, counted per receiver, reason and hour (for the audit).
        self.rejections = sa.Table(
            f"{table_prefix}_rejections",
            self.metadata,
            sa.Column("receiver", sa.String(255), primary_key=True),
            sa.Column("reason", sa.String(128), primary_key=True),
            sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
            sa.Column("count", sa.BigInteger(), nullable=False),
        )
        full_name = f"{schema}.{self.events.name}" if schema else self.events.name
        # Stable signed 64-bit key for pg_advisory_xact_lock, one per inbox table.
        self._lock_key = int.from_bytes(hashlib.blake2b(full_name.encode(), digest_size=8).digest(), "big", signed=True)

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str | URL | None = None, **settings: Any) -> Inbox:
        """An inbox at ``url`` (default: :func:`default_inbox_url`)."""
        return cls(url, **settings)

    @property
    def safe_url(self) -> str:
        """The URL with the password hidden: what messages and stats show."""
        return self._url.render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql`` (the SQLAlchemy backend name)."""
        return self._url.get_backend_name()

    @property
    def _is_pg(self) -> bool:
        return self.backend == "postgresql"

    def __repr__(self) -> str:
        return f"Inbox({self.safe_url!r}, table_prefix={self.table_prefix!r})"

    def _unavailable(self, error: BaseException, action: str) -> InboxUnavailable:
        return InboxUnavailable(self.safe_url, error, action)

    def _create_engine(self) -> Engine:
        url = self._url
        if self.backend == "sqlite":
            database = url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"timeout": self.busy_timeout})
            sync, busy_ms = self.sqlite_synchronous, int(self.busy_timeout * 1000)

            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                    cursor.execute("PRAGMA journal_mode = WAL")
                    cursor.execute(f"PRAGMA synchronous = {sync}")
                finally:
                    cursor.close()

            return engine
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self._is_pg and url.get_driver_name() == "psycopg":
            kwargs["connect_args"] = {"connect_timeout": max(1, int(self.busy_timeout))}
        return sa.create_engine(url, **kwargs)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created (and the schema with it) on first use."""
        if self._engine is not None and self._ready:
            return self._engine
        with self._lock:
            try:
                if self._engine is None:
                    self._engine = self._create_engine()
                if not self._ready:
                    self._create_schema(self._engine)
                    self._ready = True
            except (sa_exc.SQLAlchemyError, OSError, ImportError) as error:
                raise self._unavailable(error, "open") from error
        return self._engine

    def _create_schema(self, engine: Engine) -> None:
        for attempt in range(3):
            try:
                self.metadata.create_all(engine, checkfirst=True)
                return
            except (sa_exc.ProgrammingError, sa_exc.IntegrityError):
                # Another process created the tables between our check and our CREATE: look again.
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextlib.contextmanager
    def _connect(self, action: str, *, write: bool) -> Iterator[Connection]:
        engine = self.engine
        queued = write and not self._is_pg
        if queued and not self._sqlite_writer.acquire(timeout=self.busy_timeout):
            error = TimeoutError(f"waited {self.busy_timeout:g}s for this process's other writers (locked)")
            raise self._unavailable(error, action)
        try:
            with engine.begin() if write else engine.connect() as conn:
                yield conn
        except (sa_exc.SQLAlchemyError, OSError) as error:
            raise self._unavailable(error, action) from error
        finally:
            if queued:
                self._sqlite_writer.release()

    def close(self) -> None:
        """Release connections (and the notification listener)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------------

    def _insert(self) -> Any:
        if self._is_pg:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    def append(
        self,
        receiver: str,
        event_id: str | int,
        body: bytes | bytearray | memoryview | str | Mapping[str, Any],
        *,
        resource: str | None = None,
        action: str | None = None,
        headers: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        subscription_id: str | int | None = None,
    ) -> AppendResult:
        """Store one delivery once and commit; return its seq (the existing row's on a redelivery).

        ``body`` is the raw request body (kept byte for byte); a mapping is serialised to JSON.
        ``resource``, ``action`` and ``subscription_id`` default to the body's fields of those names.
        Pass only ``headers`` worth keeping: they are stored as given (never returned to Airflow).
        Raises :class:`InboxUnavailable` when the delivery could not be made durable.
        """
        row = self._prepare_row(receiver, event_id, body, resource, action, headers, received_at, subscription_id)
        with self._connect("append", write=True) as conn:
            return self._append_in(conn, row)

    @staticmethod
    def _prepare_row(
        receiver: str,
        event_id: str | int,
        body: bytes | bytearray | memoryview | str | Mapping[str, Any],
        resource: str | None = None,
        action: str | None = None,
        headers: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        subscription_id: str | int | None = None,
    ) -> dict[str, Any]:
        if isinstance(body, Mapping):
            raw = json.dumps(body, separators=(",", ":"), default=str).encode()
        elif isinstance(body, str):
            raw = body.encode("utf-8", "surrogatepass")
        else:
            raw = bytes(body)
        parsed = _parse_body(raw)
        fields = parsed if isinstance(parsed, dict) else {}
        if subscription_id is None:
            subscription_id = fields.get("subscription_id")
        return {
            "receiver": str(receiver),
            "event_id": str(event_id),
            "subscription_id": _str_or_none(subscription_id),
            "resource": resource if resource is not None else _str_or_none(fields.get("resource")),
            "action": action if action is not None else _str_or_none(fields.get("action")),
            "received_at": _utc(received_at),
            "body": raw,
            "headers": json.dumps(dict(headers), default=str) if headers else None,
        }

    def _append_in(self, conn: Connection, row: dict[str, Any]) -> AppendResult:
        """Insert-or-ignore inside an open transaction (the caller commits). Separate for the tests."""
        table = self.events
        statement = self._insert()(table).values(**row).on_conflict_do_nothing(index_elements=["receiver", "event_id"])
        if self._is_pg:
            # Take the ordering lock before drawing a seq (see the module doc), in one round trip, its
            # wait bounded by lock_timeout: CASE evaluates its condition (set_config) before its result.
            timeout = sa.func.set_config("lock_timeout", f"{int(self.busy_timeout * 1000)}ms", True)
            lock = sa.case((timeout.is_not(None), sa.func.pg_advisory_xact_lock(self._lock_key)))
            conn.execute(sa.select(lock))
            # NOTIFY rides on the INSERT (one round trip); it is delivered at commit, only for new rows.
            statement = statement.returning(
                table.c.seq, sa.func.pg_notify(self.notify_channel, sa.cast(table.c.seq, sa.Text))
            )
        else:
            statement = statement.returning(table.c.seq)
        seq = conn.execute(statement).scalar()
        if seq is not None:
            return AppendResult(int(seq), False)
        existing = conn.execute(
            sa.select(table.c.seq).where(table.c.receiver == row["receiver"], table.c.event_id == row["event_id"])
        ).scalar_one()
        return AppendResult(int(existing), True)

    # -- reading -----------------------------------------------------------------------------------------

    _EVENT_COLUMNS = (
        "seq",
        "receiver",
        "event_id",
        "subscription_id",
        "resource",
        "action",
        "received_at",
        "body",
    )

    def _select_events(self) -> sa.Select[Any]:
        return sa.select(*(self.events.c[name] for name in self._EVENT_COLUMNS))

    @staticmethod
    def _to_event(row: Any) -> InboxEvent:
        parsed = _parse_body(bytes(row.body))
        if not isinstance(parsed, dict):
            parsed = {"_raw": bytes(row.body).decode("utf-8", "replace")} if parsed is None else {"_value": parsed}
        return InboxEvent(
            seq=int(row.seq),
            receiver=row.receiver,
            event_id=row.event_id,
            subscription_id=row.subscription_id,
            resource=row.resource,
            action=row.action,
            payload=parsed,
            received_at=_from_db_ts(row.received_at),
        )

    def read_after(
        self,
        seq: int,
        *,
        limit: int = 500,
        receiver: str | None = None,
        resources: Iterable[str] | None = None,
        actions: Iterable[str] | None = None,
    ) -> list[InboxEvent]:
        """Events with ``seq`` greater than ``seq``, in seq order, at most ``limit``; one indexed query.

        Filters match exactly (ION's names are upper case: ``RUNS``, ``CREATE``). Safe to page with: a
        row with a smaller seq never becomes visible after one with a larger seq (see the module doc).
        """
        c = self.events.c
        query = self._select_events().where(c.seq > int(seq))
        if receiver is not None:
            query = query.where(c.receiver == receiver)
        if resources is not None:
            query = query.where(c.resource.in_(list(resources)))
        if actions is not None:
            query = query.where(c.action.in_(list(actions)))
        query = query.order_by(c.seq).limit(max(0, int(limit)))
        with self._connect("read", write=False) as conn:
            return [self._to_event(row) for row in conn.execute(query)]

    def latest(self, limit: int = 20, *, receiver: str | None = None) -> list[InboxEvent]:
        """The newest ``limit`` events (oldest first): what ``airflow-ion inbox tail`` shows."""
        c = self.events.c
        query = self._select_events()
        if receiver is not None:
            query = query.where(c.receiver == receiver)
        query = query.order_by(c.seq.desc()).limit(max(0, int(limit)))
        with self._connect("read", write=False) as conn:
            rows = list(conn.execute(query))
        return [self._to_event(row) for row in reversed(rows)]

    def get(self, receiver: str, event_id: str | int) -> InboxEvent | None:
        """The stored delivery ``(receiver, event_id)``, or ``None``."""
        c = self.events.c
        query = self._select_events().where(c.receiver == receiver, c.event_id == str(event_id))
        with self._connect("read", write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else self._to_event(row)

    def latest_seq(self) -> int:
        """The highest stored seq, 0 when empty. A new consumer that wants only new events starts here."""
        with self._connect("read", write=False) as conn:
            return int(conn.execute(sa.select(sa.func.max(self.events.c.seq))).scalar() or 0)

    def seq_at_or_after(self, timestamp: datetime) -> int:
        """Seq of the first event received at or after ``timestamp`` (``latest_seq() + 1`` if none).

        To look back to a DAG run's start: ``read_after(seq_at_or_after(start) - 1)``. Naive timestamps
        are taken as UTC.
        """
        c = self.events.c
        with self._connect("read", write=False) as conn:
            found = conn.execute(sa.select(sa.func.min(c.seq)).where(c.received_at >= _utc(timestamp))).scalar()
            if found is not None:
                return int(found)
            return int(conn.execute(sa.select(sa.func.max(c.seq))).scalar() or 0) + 1

    # -- consumer cursors --------------------------------------------------------------------------------

    def get_cursor(self, consumer: str) -> int:
        """The consumer's last processed seq (0 for a new consumer)."""
        with self._connect("cursor", write=False) as conn:
            value = conn.execute(sa.select(self.cursors.c.seq).where(self.cursors.c.consumer == consumer)).scalar()
        return int(value or 0)

    def set_cursor(self, consumer: str, seq: int) -> int:
        """Advance the consumer's cursor to ``seq``; never moves it backwards. Returns the stored value.

        A single upsert (``GREATEST`` semantics), so racing consumers with the same name cannot move it back.
        """
        if int(seq) < 0:
            raise ValueError("cursor seq must be >= 0")
        table = self.cursors
        statement = self._insert()(table).values(consumer=consumer, seq=int(seq), updated_at=_utc(None))
        statement = statement.on_conflict_do_update(
            index_elements=["consumer"],
            set_={
                "seq": sa.case((statement.excluded.seq > table.c.seq, statement.excluded.seq), else_=table.c.seq),
                "updated_at": statement.excluded.updated_at,
            },
        ).returning(table.c.seq)
        with self._connect("cursor", write=True) as conn:
            return int(conn.execute(statement).scalar_one())

    def list_cursors(self) -> dict[str, int]:
        """Every consumer's cursor."""
        with self._connect("cursor", write=False) as conn:
            return {row.consumer: int(row.seq) for row in conn.execute(sa.select(self.cursors))}

    # -- rejections ----------------------------------------------------------------------------------------

    def add_rejections(self, counts: Mapping[tuple[str, str], int], at: datetime | None = None) -> None:
        """Add ``{(receiver, reason): n}`` to the hourly rejection counters (one upsert per pair).

        The receiver batches its counts and calls this every few seconds, so refused (possibly forged)
        requests cost no write each.
        """
        if not counts:
            return
        hour = _utc(at).replace(minute=0, second=0, microsecond=0)
        table = self.rejections
        with self._connect("rejections", write=True) as conn:
            for (receiver, reason), n in counts.items():
                statement = self._insert()(table).values(receiver=receiver, reason=reason, hour=hour, count=int(n))
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["receiver", "reason", "hour"],
                        set_={"count": table.c.count + statement.excluded.count},
                    )
                )

    def rejection_counts(self, *, since: datetime | None = None) -> dict[str, dict[str, int]]:
        """``{receiver: {reason: n}}`` over the hours from ``since`` (its hour included) on."""
        c = self.rejections.c
        query = sa.select(c.receiver, c.reason, sa.func.sum(c.count).label("n")).group_by(c.receiver, c.reason)
        if since is not None:
            query = query.where(c.hour >= _utc(since).replace(minute=0, second=0, microsecond=0))
        out: dict[str, dict[str, int]] = {}
        with self._connect("rejections", write=False) as conn:
            for row in conn.execute(query):
                out.setdefault(row.receiver, {})[row.reason] = int(row.n)
        return out

    # -- retention and stats -----------------------------------------------------------------------------

    def purge(self, older_than: timedelta | None = None) -> int:
        """Delete events received more than ``older_than`` ago (default: the ``retention`` setting).

        Age only: a consumer that fell further behind than the retention loses those events, which is why
        the retention must exceed both ION's retry window (dedup) and any expected consumer outage.
        Deletes in batches so a large purge never holds the SQLite write lock for long. Returns the count.
        """
        cutoff = _utc(None) - (self.retention if older_than is None else older_than)
        c = self.events.c
        batch = sa.select(c.seq).where(c.received_at < cutoff).order_by(c.seq).limit(_PURGE_BATCH)
        deleted = 0
        while True:
            with self._connect("purge", write=True) as conn:
                count = conn.execute(sa.delete(self.events).where(c.seq.in_(batch.scalar_subquery()))).rowcount
            deleted += count
            if count < _PURGE_BATCH:
                break
        with self._connect("purge", write=True) as conn:
            conn.execute(sa.delete(self.rejections).where(self.rejections.c.hour < cutoff))
        return deleted

    def stats(self) -> dict[str, Any]:
        """Counts, time range, latest seq and every consumer's cursor and lag; JSON-serialisable."""
        c, cur = self.events.c, self.cursors.c
        with self._connect("stats", write=False) as conn:
            total, oldest, newest, latest = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.min(c.received_at),
                    sa.func.max(c.received_at),
                    sa.func.max(c.seq),
                )
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
                .select_from(self.cursors.outerjoin(self.events, c.seq > cur.seq))
                .group_by(cur.consumer, cur.seq, cur.updated_at)
                .order_by(cur.consumer)
            )
            consumers = {
                row.consumer: {
                    "cursor": int(row.seq),
                    "lag": int(row.lag),
                    "updated_at": _from_db_ts(row.updated_at).isoformat(),
                }
                for row in conn.execute(lag_query)
            }
        return {
            "url": self.safe_url,
            "backend": self.backend,
            "total": int(total),
            "latest_seq": int(latest or 0),
            "oldest_received_at": None if oldest is None else _from_db_ts(oldest).isoformat(),
            "newest_received_at": None if newest is None else _from_db_ts(newest).isoformat(),
            "by_receiver": by_receiver,
            "by_resource_action": by_resource,
            "consumers": consumers,
            "retention_seconds": self.retention.total_seconds(),
        }

    # -- waking up readers -------------------------------------------------------------------------------

    def listen(self, poll_interval: float = 0.2) -> InboxListener:
        """A listener that wakes up when an event is appended.

        PostgreSQL with psycopg 3: ``LISTEN`` on the inbox channel (instant, across machines). Otherwise it
        polls :meth:`latest_seq`. Start listening *before* the read you want to follow up, so no append
        falls between your read and your wait.
        """
        return InboxListener(self, poll_interval)

    def wait_for_notify(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for appends; the highest seq announced, or ``None`` on timeout.

        Convenience over a listener kept by this inbox (created, and listening, on the first call).
        """
        if self._listener is None:
            self._listener = self.listen()
        return self._listener.wait(timeout)


class InboxListener:
    """Wakes a reader when events are appended (see :meth:`Inbox.listen`). Not thread-safe; close it."""

    def __init__(self, inbox: Inbox, poll_interval: float = 0.2) -> None:
        self.inbox = inbox
        self.poll_interval = poll_interval
        self._conn: Any = None
        engine = inbox.engine
        if inbox._is_pg and engine.url.get_driver_name() == "psycopg":
            try:
                raw = engine.raw_connection()
                conn = raw.driver_connection
                raw.detach()  # a private connection, never returned to the pool
                conn.rollback()
                conn.autocommit = True
                channel = inbox.notify_channel.replace('"', '""')
                conn.execute(f'LISTEN "{channel}"')
                self._conn = conn
            except Exception as error:
                raise inbox._unavailable(error, "listen") from error
        else:
            self._seen = inbox.latest_seq()

    @property
    def uses_notify(self) -> bool:
        """True when woken by PostgreSQL ``NOTIFY`` rather than by polling."""
        return self._conn is not None

    def wait(self, timeout: float) -> int | None:
        """Block up to ``timeout`` seconds; the highest appended seq seen, or ``None`` if nothing came."""
        if self._conn is not None:
            best: int | None = None
            try:
                for notify in self._conn.notifies(timeout=max(0.0, timeout), stop_after=1):
                    with contextlib.suppress(ValueError):
                        best = max(best or 0, int(notify.payload))
                # Drain what else arrived together, without waiting.
                for notify in self._conn.notifies(timeout=0):
                    with contextlib.suppress(ValueError):
                        best = max(best or 0, int(notify.payload))
            except Exception as error:
                raise self.inbox._unavailable(error, "listen") from error
            return best
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            latest = self.inbox.latest_seq()
            if latest > self._seen:
                self._seen = latest
                return latest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(self.poll_interval, remaining))

    def close(self) -> None:
        """Close the private connection (PostgreSQL)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> InboxListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
