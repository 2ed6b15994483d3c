"""The durable webhook inbox: where a delivery lives between the receiver's 2xx and Airflow.

Contracts (see ARCHITECTURE.md):

- **Delivery identity.** ``(receiver, event_id)`` is unique. :meth:`Inbox.append` is an insert-or-ignore
  that returns the sequence number of the stored row, so a redelivery is acknowledged again and stored once
  (also when both copies arrive in the same batch: the second gets the first's seq, ``duplicate=True``).
- **Durability.** :meth:`Inbox.append` and :meth:`Inbox.aappend` return only after the commit that made
  the row durable, so the receiver can answer 2xx right after. SQLite runs in WAL mode with
  ``synchronous=FULL`` by default: WAL+NORMAL already survives ``kill -9`` of the writer (the commit is in
  the OS page cache), but only FULL also survives power loss or a kernel crash, and ION's retries stop
  once we answer 2xx; ``sqlite_synchronous="NORMAL"`` is a setting for who prefers throughput. PostgreSQL
  follows the server's ``synchronous_commit`` (keep it ``on``).
- **Group commit: one writer per Inbox.** An append does not write itself: it prepares its row in the
  caller's thread and queues it for the inbox's writer thread, then waits (a thread on an event, a
  coroutine on an asyncio future, so a request holds no pool thread while it waits). The writer takes
  everything pending (up to ``max_batch``), dedups within the batch, inserts it with one multi-row
  insert-or-ignore in ONE transaction, commits once (one fsync; on PostgreSQL one ordering lock and one
  ``NOTIFY`` carrying the highest new seq), then completes every caller. If the batch fails, every caller
  in it gets :class:`InboxUnavailable` and the next batch starts afresh. Why: a commit is an fsync (or a
  WAL flush); per-append commits serialised on a lock made 32 concurrent requests wait for 32 flushes plus
  everyone's Python in between. No artificial delay: a lone append is written at once, and batches form
  by themselves while a commit is in flight. The writer owns a dedicated connection (no pool checkout, no
  pre-ping), its statements are compiled once per batch size with bind parameters, and it makes few
  driver calls per batch: each one releases the GIL and may wait up to the switch interval to get it back
  from a busy event loop. A row the database refuses as data (a field longer than its column on
  PostgreSQL) would fail its whole batch, so such a batch is retried one row per transaction and only
  that delivery is refused. Other writes of this process (cursors, counters, purge) queue on the same
  in-process lock as the writer's batches rather than on SQLite's busy handler, which polls and can
  starve one writer for the whole busy timeout under load.
- **A cursor never skips an event.** Readers page with ``seq > cursor``. That is only safe if a row with
  a smaller seq can never become visible after a row with a larger one. SQLite has a single writer, so seq
  order is commit order. On PostgreSQL, two transactions can take seqs 10 and 11 and commit 11 first; a
  reader who saw 11 and moved on would miss 10 forever. The inbox orders commits: each batch takes a
  transaction-level advisory lock *before* it draws its seqs and holds it until commit. PostgreSQL releases
  transaction locks only after the commit is durable and visible, so the next batch's seqs are drawn after
  the previous rows are visible (a batch's rows become visible together): visible rows are always a prefix
  in seq order. The lock is keyed on the schema-qualified table name, the schema taken from the server's
  ``current_schema()`` when not given, so inboxes in different schemas never share it. (Until this
  version the key was the bare table name: during a rolling upgrade, old and new writers of one inbox do
  not exclude each other; restart all receivers of an inbox together.) The alternative, an ``xid8``
  column read only below ``pg_snapshot_xmin(pg_current_snapshot())``, is not enough alone (xid order is
  not seq order: it needs the same kind of lock around drawing both) and lets any long transaction
  anywhere on the server stall delivery. The lock wait is bounded by ``lock_timeout`` (then
  :class:`InboxUnavailable`, so the receiver answers 503 and ION retries).
- **Storage down means 503.** Every storage failure (disk full, read-only file, server down, lock wait
  beyond the busy timeout) is raised as :class:`InboxUnavailable`, wrapping the original; its message
  names the inbox URL without the password.

Only the raw body is stored (as delivered, bytes); ``payload`` is parsed from it on read. One source of
truth, half the storage, and a body that is not JSON is still stored (it was acknowledged) and surfaces
as ``{"_raw": "<text>"}``. Request headers are stored too, for forensics, but never handed to Airflow:
ION receivers can carry custom headers, which may be credentials.

SQLAlchemy Core only (the writer runs Core statements compiled once, on the driver connection). This
module imports SQLAlchemy at module level, so nothing imported at DAG-parse time may import it at module
level (the trigger imports it lazily). Engines are created on first use, the writer thread on first append.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
#: Most appends one writer transaction takes (a bound on a batch's latency and statement size).
DEFAULT_MAX_BATCH = 256
#: Batch sizes whose insert statement text the writer keeps.
_STATEMENT_CACHE = 64
#: The columns an append writes, in the order of a prepared row's values.
_APPEND_COLUMNS = ("receiver", "event_id", "subscription_id", "resource", "action", "received_at", "body", "headers")
_SYNC_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def default_inbox_url() -> str:
    """The configured inbox: ``[ion_webhooks] inbox_url``, else ``$AIRFLOW_HOME/ion_inbox.db``."""
    from airflow_provider_ion import config

    return config.inbox_url()


class InboxUnavailable(Exception):
    """The inbox storage failed; the receiver answers 503 so ION delivers again later.

    The original exception is ``__cause__`` (and ``original``). The message names the inbox URL with the
    password hidden, and never contains SQL parameters (event bodies).
    """

    def __init__(self, url: str, original: BaseException, action: str = "use") -> None:
        self.url = url
        self.original = original
        self.action = action
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
    (seconds a SQLite writer waits for the lock, or a PostgreSQL append waits for its ordering lock),
    ``max_batch`` (most appends the writer commits in one transaction, see the module doc).
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
        max_batch: int = DEFAULT_MAX_BATCH,
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
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self.max_batch = int(max_batch)
        self._lock = threading.Lock()
        # SQLite has one writer at a time; its busy handler polls with growing sleeps, so under load
        # one thread can lose the race for the whole busy timeout. Queue this process's writers here
        # (the append writer takes it per batch, the other writes per transaction).
        self._sqlite_writer = threading.Lock()
        self._ready = False
        self._listener: InboxListener | None = None
        self._writer: _Writer | None = None
        self._statements: _Statements | None = None
        #: pg_advisory_xact_lock key of this inbox; set with the schema on first use (PostgreSQL only).
        self._lock_key: int | None = None

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
            # No pre-ping: a SQLite file connection does not go stale, and the ping was a statement
            # (and a GIL hand-off) per checkout.
            engine = sa.create_engine(url, connect_args={"timeout": self.busy_timeout})
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
                    if self._is_pg:
                        self._lock_key = self._ordering_lock_key(self._engine)
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

    def _ordering_lock_key(self, engine: Engine) -> int:
        """A stable signed 64-bit ``pg_advisory_xact_lock`` key for ``<schema>.<events table>``.

        The schema is the configured one or else the server's ``current_schema()`` (where the tables were
        created), so two inboxes with the same prefix in different schemas (chosen by ``search_path``)
        never serialise on each other's lock.
        """
        schema = self.schema
        if schema is None:
            with engine.connect() as conn:
                schema = conn.execute(sa.select(sa.func.current_schema())).scalar()
        full_name = f"{schema}.{self.events.name}"
        return int.from_bytes(hashlib.blake2b(full_name.encode(), digest_size=8).digest(), "big", signed=True)

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
        """Stop the writer (after the appends already queued), release connections and the listener.

        The inbox stays usable: the next append starts a new writer.
        """
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop(timeout=self.busy_timeout + 10)
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
        fields: Mapping[str, Any] | None = None,
    ) -> AppendResult:
        """Store one delivery once and wait for its commit; return its seq (the existing row's on a redelivery).

        ``body`` is the raw request body (kept byte for byte); a mapping is serialised to JSON.
        ``resource``, ``action`` and ``subscription_id`` default to the body's fields of those names;
        ``fields`` is the body already parsed (the receiver has it), so it is not parsed again.
        Pass only ``headers`` worth keeping: they are stored as given (never returned to Airflow).
        Goes through the inbox's writer (group commit, see the module doc); blocks this thread until the
        batch holding the delivery is committed. Raises :class:`InboxUnavailable` when it could not be
        made durable.
        """
        row = self._prepare_row(
            receiver, event_id, body, resource, action, headers, received_at, subscription_id, fields
        )
        pending = _Pending(row)
        self._submit(pending)
        pending.event.wait()  # type: ignore[union-attr]
        if pending.error is not None:
            raise _for_caller(pending.error)
        assert pending.result is not None
        return pending.result

    async def aappend(
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
        fields: Mapping[str, Any] | None = None,
    ) -> AppendResult:
        """:meth:`append` for an event loop: awaits the commit without holding a thread.

        The row is prepared on the loop (cheap: no parsing when ``fields`` is given) and written by the
        writer thread, which resolves the future on this loop after the commit. Cancelling the await does
        not cancel the write (the delivery may still be stored; it was not acknowledged, so a redelivery
        is deduplicated).
        """
        row = self._prepare_row(
            receiver, event_id, body, resource, action, headers, received_at, subscription_id, fields
        )
        loop = asyncio.get_running_loop()
        pending = _Pending(row, loop, loop.create_future())
        self._submit(pending)
        return await pending.future  # type: ignore[misc]

    def _submit(self, pending: _Pending) -> None:
        while True:
            writer = self._writer
            if writer is None or writer.pid != os.getpid():
                with self._lock:
                    writer = self._writer
                    if writer is None or writer.pid != os.getpid():
                        # First append, after close(), or in a forked child (the parent's thread is gone).
                        writer = self._writer = _Writer(self)
            if writer.submit(pending):
                return
            # close() stopped this writer between our look and our put: the next one takes it.
            with self._lock:
                if self._writer is writer:
                    self._writer = None

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
        fields: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if isinstance(body, Mapping):
            raw = json.dumps(body, separators=(",", ":"), default=str).encode()
            fields = body if fields is None else fields
        elif isinstance(body, str):
            raw = body.encode("utf-8", "surrogatepass")
        else:
            raw = bytes(body)
        if fields is None and (resource is None or action is None or subscription_id is None):
            parsed = _parse_body(raw)
            fields = parsed if isinstance(parsed, dict) else {}
        elif fields is None:
            fields = {}
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

    def _compiled(self) -> _Statements:
        if self._statements is None:
            self._statements = _Statements(self, self.engine.dialect)
        return self._statements

    def _write_rows(self, conn: Any, rows: Sequence[Mapping[str, Any]], *, lock: bool = True) -> list[AppendResult]:
        """Insert-or-ignore ``rows`` (distinct keys) in the open transaction of DBAPI ``conn``; no commit.

        PostgreSQL: the ordering lock first (unless the caller took it: ``lock=False``), then one
        multi-row insert, then one ``NOTIFY`` with the highest new seq (delivered at commit). A row already
        stored gets its seq by one lookup each.
        """
        st = self._compiled()
        cursor = conn.cursor()
        try:
            if lock and st.lock is not None:
                cursor.execute(*st.lock)
            sql, params = st.insert_params(rows)
            cursor.execute(sql, params)
            new = {(r, e): int(seq) for seq, r, e in cursor.fetchall()}
            results: list[AppendResult] = []
            top = 0
            for row in rows:
                seq = new.get((row["receiver"], row["event_id"]))
                if seq is not None:
                    results.append(AppendResult(seq, False))
                    top = max(top, seq)
                    continue
                cursor.execute(*st.existing(row["receiver"], row["event_id"]))
                results.append(AppendResult(int(cursor.fetchone()[0]), True))
            if st.lock is not None and top:  # PostgreSQL: wake the listeners once per batch
                cursor.execute(*st.notify(str(top)))
        finally:
            cursor.close()
        return results

    def _append_in(self, conn: Connection, row: dict[str, Any]) -> AppendResult:
        """The writer's statements for one row inside an open SQLAlchemy transaction (the caller commits).

        Lets the tests hold a writer's transaction (and its ordering lock) open.
        """
        return self._write_rows(conn.connection.driver_connection, [row])[0]

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

    def open_cursor(self, consumer: str, start: int | None = None) -> int:
        """The consumer's cursor; a consumer seen for the first time is saved at once at ``start``.

        ``start`` defaults to :meth:`latest_seq` (only new events). Saved at once so that a later open
        (after a restart) resumes here rather than at a newer "latest", skipping what arrived in between.
        """
        with self._connect("cursor", write=False) as conn:
            value = conn.execute(sa.select(self.cursors.c.seq).where(self.cursors.c.consumer == consumer)).scalar()
        if value is not None:
            return int(value)
        return self.set_cursor(consumer, self.latest_seq() if start is None else max(0, int(start)))

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


# -- the writer (group commit) ---------------------------------------------------------------------------


class _Pending:
    """One queued append: its row, then its result or error, and how to tell its caller.

    A thread waits on ``event``; a coroutine awaits ``future`` on ``loop`` (resolved through
    ``call_soon_threadsafe``, once per loop per batch).
    """

    __slots__ = ("error", "event", "future", "key", "loop", "result", "row")

    def __init__(
        self,
        row: dict[str, Any],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[AppendResult] | None = None,
    ) -> None:
        self.row = row
        self.key = (row["receiver"], row["event_id"])
        self.loop = loop
        self.future = future
        self.event = threading.Event() if loop is None else None
        self.result: AppendResult | None = None
        self.error: BaseException | None = None


def _for_caller(error: BaseException) -> BaseException:
    """A fresh :class:`InboxUnavailable` per caller (one batch's error is raised in many threads/tasks)."""
    if isinstance(error, InboxUnavailable):
        copy = InboxUnavailable(error.url, error.original, error.action)
        copy.__cause__ = error.original
        return copy
    return error


def _settle(batch: list[_Pending]) -> None:
    """Resolve a batch's futures on their loop (a cancelled waiter is skipped: the row may be stored)."""
    for pending in batch:
        future = pending.future
        if future is None or future.done():
            continue
        if pending.error is not None:
            future.set_exception(_for_caller(pending.error))
        else:
            future.set_result(pending.result)  # type: ignore[arg-type]


class _Statements:
    """The writer's SQL for one dialect: SQLAlchemy Core compiled once (the insert once per batch size).

    Executed on the DBAPI connection with bind parameters; the column types' bind processors (SQLite's
    datetime text format, binary) are applied here, so rows are stored exactly as through the engine.
    """

    def __init__(self, inbox: Inbox, dialect: Any) -> None:
        self.inbox = inbox
        self.dialect = dialect
        table = inbox.events
        self._processors = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in _APPEND_COLUMNS
        ]
        self._inserts: dict[int, tuple[str, list[str] | None, list[int] | None]] = {}
        self._template: tuple[str, str, str] | tuple[()] | None = None
        self._named = False
        c = table.c
        self._existing = self._compile(
            sa.select(c.seq).where(
                c.receiver == sa.bindparam("receiver", type_=c.receiver.type),
                c.event_id == sa.bindparam("event_id", type_=c.event_id.type),
            )
        )
        self.lock: tuple[str] | None = None
        self._notify: tuple[str, list[str] | None] | None = None
        if inbox._is_pg:
            # Take the ordering lock before drawing a seq (see the module doc), in one round trip, its
            # wait bounded by lock_timeout: CASE evaluates its condition (set_config) before its result.
            timeout = sa.func.set_config("lock_timeout", f"{int(inbox.busy_timeout * 1000)}ms", True)
            lock = sa.select(sa.case((timeout.is_not(None), sa.func.pg_advisory_xact_lock(inbox._lock_key))))
            self.lock = (str(lock.compile(dialect=dialect, compile_kwargs={"literal_binds": True})),)
            self._notify = self._compile(
                sa.select(
                    sa.func.pg_notify(sa.bindparam("channel", type_=sa.Text), sa.bindparam("payload", type_=sa.Text))
                )
            )

    def _compile(self, statement: Any) -> tuple[str, list[str] | None]:
        compiled = statement.compile(dialect=self.dialect)
        return compiled.string, (list(compiled.positiontup) if compiled.positional else None)

    @staticmethod
    def _bind(compiled: tuple[str, list[str] | None], values: dict[str, Any]) -> tuple[str, Any]:
        sql, names = compiled
        return sql, (values if names is None else tuple(values[name] for name in names))

    def existing(self, receiver: str, event_id: str) -> tuple[str, Any]:
        return self._bind(self._existing, {"receiver": receiver, "event_id": event_id})

    def notify(self, payload: str) -> tuple[str, Any]:
        assert self._notify is not None
        return self._bind(self._notify, {"channel": self.inbox.notify_channel, "payload": payload})

    def insert_params(self, rows: Sequence[Mapping[str, Any]]) -> tuple[str, Any]:
        """The multi-row insert-or-ignore ``... RETURNING seq, receiver, event_id`` and its parameters."""
        entry = self._inserts.get(len(rows))
        if entry is None:
            if len(self._inserts) >= _STATEMENT_CACHE:  # bounded: a 256-row statement is ~64 KB of text
                self._inserts.pop(next(iter(self._inserts)))
            entry = self._inserts[len(rows)] = self._insert_for(len(rows))
        sql, names, order = entry
        flat = [
            value if process is None else process(value)
            for row in rows
            for process, value in zip(self._processors, (row[name] for name in _APPEND_COLUMNS), strict=True)
        ]
        if names is not None:  # named parameter style
            return sql, dict(zip(names, flat, strict=True))
        return sql, (flat if order is None else [flat[i] for i in order])

    def _insert_for(self, n: int) -> tuple[str, list[str] | None, list[int] | None]:
        """The n-row statement: from the compiled one-row template (compiling 256 rows takes ~40 ms).

        The template is checked once against a real compile of two rows; a dialect whose output does not
        match gets a real compile per size instead.
        """
        if self._template is None:
            one, two = self._compile_insert(1), self._compile_insert(2)
            template = self._split(one[0])
            # Named: the names follow the row; positional: the placeholders must be in row-major order.
            usable = bool(template) and self._join(template, 2) == two[0] and two[2] is None
            self._template = template if usable else ()
            self._named = one[1] is not None
        if not self._template:
            return self._compile_insert(n)
        sql = self._join(self._template, n)
        if self._named:
            return sql, [f"{name}_{i}" for i in range(n) for name in _APPEND_COLUMNS], None
        return sql, None, None

    @staticmethod
    def _split(sql: str) -> tuple[str, str, str] | tuple[()]:
        head, sep, rest = sql.partition(" VALUES ")
        row, conflict, tail = rest.partition(" ON CONFLICT ")
        if not sep or not conflict:
            return ()
        return head + sep, row, conflict + tail

    @staticmethod
    def _join(template: tuple[str, str, str] | tuple[()], n: int) -> str:
        head, row, tail = template  # type: ignore[misc]
        # The row with its bind names' "_0" turned into a format slot, then one copy per row.
        names = "|".join(_APPEND_COLUMNS)
        slotted = re.sub(rf"\b({names})_0\b", r"\g<1>_{0}", row.replace("{", "{{").replace("}", "}}"))
        return head + ", ".join([slotted.format(i) for i in range(n)]) + tail

    def _compile_insert(self, n: int) -> tuple[str, list[str] | None, list[int] | None]:
        table = self.inbox.events
        expected = [f"{name}_{i}" for i in range(n) for name in _APPEND_COLUMNS]
        values = [
            {name: sa.bindparam(f"{name}_{i}", type_=table.c[name].type) for name in _APPEND_COLUMNS} for i in range(n)
        ]
        statement = (
            self.inbox._insert()(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=["receiver", "event_id"])
            .returning(table.c.seq, table.c.receiver, table.c.event_id)
        )
        sql, positions = self._compile(statement)
        if positions is None:
            return sql, expected, None
        index = {name: i for i, name in enumerate(expected)}
        order = [index[name] for name in positions]
        return sql, None, (None if order == list(range(len(order))) else order)


class _Writer:
    """The inbox's single writer: a daemon thread, its queue and its own connection (see the module doc).

    ``submit`` puts a pending append on the queue; the thread takes everything pending (up to the inbox's
    ``max_batch``), commits it in one transaction and completes every caller. ``stop`` lets it finish the
    appends already queued, then closes its connection.
    """

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name=f"ion-inbox-writer:{inbox.table_prefix}", daemon=True)
        self._thread.start()

    def submit(self, pending: _Pending) -> bool:
        """Queue ``pending``; False when the writer is stopping (the caller then starts a new one)."""
        with self._lock:
            if self._closed:
                return False
            self._queue.put(pending)
        return True

    def stop(self, timeout: float) -> None:
        """Finish what is queued, then end the thread and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)  # after every accepted append: all of them are written first
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        limit = self.inbox.max_batch
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is None:
                break
            batch = [first]
            # No waiting for more: what queued up during the previous commit is the batch.
            while len(batch) < limit:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._write(batch)
            except BaseException as error:  # never leave a caller waiting; the thread lives on
                for pending in batch:
                    if pending.result is None and pending.error is None:
                        pending.error = error
            self._complete(batch)
        self._close_connection()

    @staticmethod
    def _complete(batch: list[_Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for pending in batch:
            if pending.loop is None:
                pending.event.set()  # type: ignore[union-attr]
            else:
                by_loop.setdefault(pending.loop, []).append(pending)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, items)

    def _write(self, batch: list[_Pending]) -> None:
        """Dedup within the batch, commit the distinct rows, hand every caller its result or error."""
        first: dict[tuple[str, str], _Pending] = {}
        for pending in batch:
            first.setdefault(pending.key, pending)
        distinct = list(first.values())
        try:
            results = self._commit([p.row for p in distinct])
            for pending, result in zip(distinct, results, strict=True):
                pending.result = result
        except Exception as error:
            if len(distinct) > 1 and self._is_data_error(error):
                # One refused row must not fail its neighbours: write them one per transaction.
                for pending in distinct:
                    try:
                        pending.result = self._commit([pending.row])[0]
                    except Exception as one:
                        pending.error = one
            else:
                for pending in distinct:
                    pending.error = error
        for pending in batch:
            original = first[pending.key]
            if original is not pending:  # a redelivery inside the batch: the first one's row
                if original.result is not None:
                    pending.result = AppendResult(original.result.seq, True)
                else:
                    pending.error = original.error

    def _is_data_error(self, error: BaseException) -> bool:
        cause = error.original if isinstance(error, InboxUnavailable) else error
        dbapi = getattr(self.inbox.engine.dialect, "loaded_dbapi", None) if self.inbox._ready else None
        kinds = tuple(k for k in (getattr(dbapi, "DataError", None), getattr(dbapi, "IntegrityError", None)) if k)
        return bool(kinds) and isinstance(cause, kinds)

    def _commit(self, rows: list[dict[str, Any]]) -> list[AppendResult]:
        """One transaction for ``rows``; storage failures raise :class:`InboxUnavailable`.

        A connection found dead at the first statement (server restarted; nothing written yet) is
        replaced once and the batch retried; later failures are not retried (the commit may have landed:
        the caller answers 503 and ION's redelivery is deduplicated).
        """
        inbox = self.inbox
        engine = inbox.engine  # InboxUnavailable("open") when the storage cannot be opened
        dbapi_error: Any = getattr(engine.dialect, "loaded_dbapi", None)
        dbapi_error = getattr(dbapi_error, "Error", OSError)
        sqlite = not inbox._is_pg
        if sqlite and not inbox._sqlite_writer.acquire(timeout=inbox.busy_timeout):
            error = TimeoutError(f"waited {inbox.busy_timeout:g}s for this process's other writers (locked)")
            raise inbox._unavailable(error, "append")
        try:
            for attempt in (1, 2):
                started = False
                try:
                    conn = self._connection(engine)
                    if sqlite:
                        # Take the write lock up front, so the busy timeout applies here and not mid-batch.
                        conn.execute("BEGIN IMMEDIATE")
                    else:
                        self._take_ordering_lock(conn)
                    started = True
                    results = inbox._write_rows(conn, rows, lock=False)
                    conn.commit()
                    return results
                except (dbapi_error, sa_exc.SQLAlchemyError, OSError) as error:
                    dropped = self._abort(engine, error)
                    if attempt == 1 and dropped and not started and not isinstance(error, TimeoutError):
                        continue
                    raise inbox._unavailable(error, "append") from error
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if sqlite:
                inbox._sqlite_writer.release()

    def _take_ordering_lock(self, conn: Any) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute(*self.inbox._compiled().lock)  # type: ignore[misc]
        finally:
            cursor.close()

    def _connection(self, engine: Engine) -> Any:
        if self._conn is None:
            raw = engine.raw_connection()  # pragmas applied by the engine's connect hook
            conn = raw.driver_connection
            raw.detach()  # the writer's own connection, never returned to the pool
            if not self.inbox._is_pg:
                conn.isolation_level = None  # explicit BEGIN IMMEDIATE / COMMIT
            self._conn = conn
        return self._conn

    def _abort(self, engine: Engine, error: BaseException) -> bool:
        """Roll back; drop the connection if it is dead or cannot roll back. True when dropped."""
        conn = self._conn
        if conn is None:
            return True
        try:
            disconnect = engine.dialect.is_disconnect(error, conn, None)
        except Exception:  # a dialect that cannot tell: assume the connection is fine
            disconnect = False
        if not disconnect:
            try:
                conn.rollback()
                return False
            except Exception:  # a connection that cannot roll back is replaced
                pass
        self._close_connection()
        return True

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


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
