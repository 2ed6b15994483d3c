"""The durable webhook inbox: where a delivery lives between the receiver's 2xx and Airflow.

This module is the :class:`Inbox` itself: engine, schema upgrade on first use, appends handed to the
writer, reads and cursors. The group-commit writer is :mod:`.writer`, its SQL :mod:`.statements`, the
tables :mod:`.schema`, upgrades :mod:`.migrations`, counters/retention/stats :mod:`.housekeeping`, write
transactions :mod:`.transaction`, the quarantine :mod:`.quarantine`, wake-ups :mod:`.listener`. (Over
500 lines because it carries the package's contracts below and the public API's docstrings; each
method is short and the logic behind them lives in those modules.)

Contracts:

- **Delivery identity.** ``(receiver, event_id)`` is unique, and stays known for the dedup horizon
  (``[ion_webhooks] dedup_horizon_days``, 90 by default) after the body is purged (``retention``, 7 days):
  :meth:`Inbox.append` is an insert-or-ignore returning the stored row's seq, so a redelivery (or a
  replay of a purged event) is acknowledged again and stored once (``duplicate=True``). A redelivery with
  another body is a conflict: ``conflict=True`` with both hashes, counted per receiver and hour, logged.
- **Durability.** :meth:`Inbox.append` and :meth:`Inbox.aappend` return only after the commit that made
  the row durable, so the receiver can answer 2xx right after. SQLite runs in WAL mode with
  ``synchronous=FULL`` by default: WAL+NORMAL already survives ``kill -9`` of the writer (the commit is in
  the OS page cache), but only FULL also survives power loss or a kernel crash, and ION's retries stop
  once we answer 2xx; ``sqlite_synchronous="NORMAL"`` is a setting for who prefers throughput. PostgreSQL
  follows the server's ``synchronous_commit`` (keep it ``on``).
- **Group commit: one writer per Inbox** (see :mod:`.writer`). No artificial delay: a lone append is
  written at once, and batches form by themselves while a commit is in flight. Other writes of this
  process (cursors, counters, purge) queue on the same in-process lock as the writer's batches rather
  than on SQLite's busy handler, which polls and can starve one writer for the whole busy timeout.
- **A cursor never skips an event.** Readers page with ``seq > cursor``. That is only safe if a row with
  a smaller seq can never become visible after a row with a larger one. SQLite has a single writer, so seq
  order is commit order. On PostgreSQL, two transactions can take seqs 10 and 11 and commit 11 first; a
  reader who saw 11 and moved on would miss 10 forever. The inbox orders commits: each batch takes a
  transaction-level advisory lock *before* it draws its seqs and holds it until commit. PostgreSQL releases
  transaction locks only after the commit is durable and visible, so visible rows are always a prefix in
  seq order. The lock is keyed on the schema-qualified table name (the schema from ``current_schema()``
  when not given), so inboxes in different schemas never share it. The wait is bounded by ``lock_timeout``
  (then :class:`InboxUnavailable`, so the receiver answers 503 and ION retries).
- **Storage down means 503; bad data means 400.** Every storage failure (disk full, read-only file,
  server down, lock wait beyond the busy timeout) is raised as :class:`InboxUnavailable`, wrapping the
  original; its message names the inbox URL without the password. Data the inbox cannot store (a lone
  surrogate, a NUL, a field longer than its column) is :class:`InvalidDelivery`, for that delivery only.
- **Upgrades keep the data.** The schema carries a version and is upgraded on first use, once, under a
  lock (see :mod:`.migrations`).

Only the raw body is stored (as delivered, bytes); ``payload`` is parsed from it on read. Request headers
are stored too, for forensics, but never handed to Airflow (ION receivers can carry custom headers, which
may be credentials). SQLAlchemy Core only; this package imports SQLAlchemy at module level, so nothing
imported at DAG-parse time may import it at module level (the trigger imports it lazily).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine

from airflow_provider_ion.webhooks.inbox import consumers as consumer_records
from airflow_provider_ion.webhooks.inbox import housekeeping, migrations, quarantine, transaction
from airflow_provider_ion.webhooks.inbox.consumers import ConsumerRecord
from airflow_provider_ion.webhooks.inbox.listener import InboxListener
from airflow_provider_ion.webhooks.inbox.records import (
    AppendResult,
    InboxEvent,
    InboxUnavailable,
    QuarantinedDelivery,
    from_db_ts,
    parse_body,
    utc,
)
from airflow_provider_ion.webhooks.inbox.schema import build_tables
from airflow_provider_ion.webhooks.inbox.statements import WriterStatements, dialect_insert
from airflow_provider_ion.webhooks.inbox.transaction import WriteTransaction
from airflow_provider_ion.webhooks.inbox.writer import (
    BatchHook,
    Body,
    Pending,
    Writer,
    for_caller,
    prepare_row,
)

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_RETENTION", "Inbox", "WriteTransaction", "default_inbox_url"]

#: How long event bodies are kept. ION's retry window is unknown; plan for days.
DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_TABLE_PREFIX = "ion_inbox"
#: Most appends one writer transaction takes (a bound on a batch's latency and statement size).
DEFAULT_MAX_BATCH = 256
_SYNC_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def default_inbox_url() -> str:
    """The configured inbox: ``[ion_webhooks] inbox_url``, else ``$AIRFLOW_HOME/ion_inbox.db``."""
    from airflow_provider_ion import config

    return config.inbox_url()


def _setting(value: Any, key: str, kind: str) -> Any:
    if value is not None:
        return value
    from airflow_provider_ion import config

    return config.get_float(key) if kind == "float" else config.get_int(key)


def _set_wal(cursor: Any, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried for up to ``timeout`` seconds while the file is locked.

    Switching a rollback-journal file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once, without calling its busy handler, where waiting could deadlock ("If SQLite determines that
    invoking the busy handler could result in a deadlock, it will go ahead and return SQLITE_BUSY",
    sqlite.org/c3ref/busy_handler.html). Seen when two processes open a 0.1.0 inbox together: one upgrades
    it inside a write transaction while the other connects. ``busy_timeout`` alone does not cover it.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            contended = "locked" in str(error) or "busy" in str(error)
            if not contended or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Inbox:
    """The inbox store on SQLite (a file) or PostgreSQL, via SQLAlchemy Core.

    ``Inbox(url_or_engine)`` is cheap: the engine is created, and the schema created or upgraded, on first
    use, so an Inbox can be built at import or config time. Thread-safe; share one instance per process.

    Settings: ``table_prefix`` (tables ``<prefix>_events``, ``_cursors``, ``_rejections``, ``_seen``,
    ``_conflicts``, ``_quarantine``, ``_schema``; also the NOTIFY channel unless ``notify_channel`` is
    given), ``schema`` (PostgreSQL schema), ``retention`` (bodies; default of :meth:`purge`),
    ``dedup_horizon`` (how long a seen ``(receiver, event_id)`` stays a duplicate; default
    ``[ion_webhooks] dedup_horizon_days``), ``quarantine_max_count`` / ``quarantine_max_bytes`` (per
    receiver; defaults from ``[ion_webhooks]``), ``sqlite_synchronous`` (``FULL`` by default),
    ``busy_timeout`` (seconds a SQLite writer waits for the lock, or a PostgreSQL append for its ordering
    lock), ``max_batch`` (most appends the writer commits in one transaction), ``batch_hook`` (called in
    the writer thread inside each write transaction, after its rows are inserted and before the commit,
    with their event ids; an exception it raises aborts that transaction like a storage fault would: for
    instrumentation and fault-injection tests).

    Example::

        inbox = Inbox("sqlite:////var/lib/airflow/ion_inbox.db")
        result = inbox.append("shop-floor", "evt-1", b'{"resource": "RUNS", "action": "CREATE"}')
        for event in inbox.read_after(0):
            print(event.seq, event.payload)
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine | None = None,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        schema: str | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        dedup_horizon: timedelta | None = None,
        quarantine_max_count: int | None = None,
        quarantine_max_bytes: int | None = None,
        sqlite_synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        notify_channel: str | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        batch_hook: BatchHook | None = None,
    ) -> None:
        if not _IDENTIFIER.fullmatch(table_prefix):
            raise ValueError(f"table_prefix must be an SQL identifier, got {table_prefix!r}")
        sync = sqlite_synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ValueError(f"sqlite_synchronous must be one of {sorted(_SYNC_MODES)}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        if isinstance(url_or_engine, Engine):
            self._engine: Engine | None = url_or_engine
            self._url = url_or_engine.url
        else:
            self._engine = None
            self._url = sa.engine.make_url(url_or_engine or default_inbox_url())  # ArgumentError on junk
        self.table_prefix = table_prefix
        self.schema = schema
        self.retention = retention
        # Read from [ion_webhooks] on first use when not given (reading Airflow's config imports Airflow).
        self._dedup_horizon = dedup_horizon
        self._quarantine_max_count = quarantine_max_count
        self._quarantine_max_bytes = quarantine_max_bytes
        if dedup_horizon is not None:
            self._check_horizon(dedup_horizon)
        self.sqlite_synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self.notify_channel = notify_channel or table_prefix
        self.max_batch = int(max_batch)
        self.batch_hook = batch_hook
        self._lock = threading.Lock()
        #: SQLite has one writer at a time; its busy handler polls with growing sleeps, so under load one
        #: thread can lose the race for the whole busy timeout. This process's writers queue here.
        self.writer_lock = threading.Lock()
        self._ready = False
        self._listener: InboxListener | None = None
        self._writer: Writer | None = None
        self._statements: WriterStatements | None = None
        #: The schema version found on first use (before any upgrade); None until then.
        self.upgraded_from: int | None = None
        #: pg_advisory_xact_lock key of this inbox; set with the schema on first use (PostgreSQL only).
        self._lock_key: int | None = None
        self.tables = build_tables(table_prefix, schema)
        self.metadata = self.tables.metadata
        self.events = self.tables.events
        self.cursors = self.tables.cursors
        self.rejections = self.tables.rejections

    def _check_horizon(self, horizon: timedelta) -> timedelta:
        if horizon < self.retention:
            raise ValueError(
                f"the dedup horizon ({horizon}) must be at least the retention ({self.retention}): an event must "
                "stay known as long as its body is kept; raise [ion_webhooks] dedup_horizon_days"
            )
        return horizon

    @property
    def dedup_horizon(self) -> timedelta:
        """How long a stored ``(receiver, event_id)`` stays a duplicate (``[ion_webhooks] dedup_horizon_days``)."""
        if self._dedup_horizon is None:
            days = _setting(None, "dedup_horizon_days", "float")
            self._dedup_horizon = self._check_horizon(timedelta(days=days))
        return self._dedup_horizon

    @property
    def quarantine_max_count(self) -> int:
        """Most quarantined deliveries per receiver (``[ion_webhooks] quarantine_max_count``)."""
        if self._quarantine_max_count is None:
            self._quarantine_max_count = int(_setting(None, "quarantine_max_count", "int"))
        return self._quarantine_max_count

    @property
    def quarantine_max_bytes(self) -> int:
        """Most quarantined body bytes per receiver (``[ion_webhooks] quarantine_max_bytes``)."""
        if self._quarantine_max_bytes is None:
            self._quarantine_max_bytes = int(_setting(None, "quarantine_max_bytes", "int"))
        return self._quarantine_max_bytes

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
    def is_postgres(self) -> bool:
        """True on PostgreSQL."""
        return self.backend == "postgresql"

    def __repr__(self) -> str:
        return f"Inbox({self.safe_url!r}, table_prefix={self.table_prefix!r})"

    def unavailable(self, error: BaseException, action: str) -> InboxUnavailable:
        """``error`` as the :class:`InboxUnavailable` this inbox raises (URL without password)."""
        if isinstance(error, InboxUnavailable):
            return error
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
                    _set_wal(cursor, self.busy_timeout)
                    cursor.execute(f"PRAGMA synchronous = {sync}")
                finally:
                    cursor.close()

            return engine
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.is_postgres and url.get_driver_name() == "psycopg":
            kwargs["connect_args"] = {"connect_timeout": max(1, int(self.busy_timeout))}
        return sa.create_engine(url, **kwargs)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created (and the schema created or upgraded) on first use."""
        if self._engine is not None and self._ready:
            return self._engine
        with self._lock:
            try:
                if self._engine is None:
                    self._engine = self._create_engine()
                if not self._ready:
                    found, _now = migrations.upgrade(self._engine, self.tables)
                    self.upgraded_from = found
                    if self.is_postgres:
                        self._lock_key = self._ordering_lock_key(self._engine)
                    self._ready = True
            except (sa_exc.SQLAlchemyError, OSError, ImportError) as error:
                raise self.unavailable(error, "open") from error
        return self._engine

    def schema_version(self) -> int:
        """The inbox's schema version (after the upgrade on first use)."""
        with self.connect("schema", write=False) as conn:
            return migrations.read_version(conn, self.tables)

    def _ordering_lock_key(self, engine: Engine) -> int:
        """A stable signed 64-bit ``pg_advisory_xact_lock`` key for ``<schema>.<events table>``."""
        schema = self.schema
        if schema is None:
            with engine.connect() as conn:
                schema = conn.execute(sa.select(sa.func.current_schema())).scalar()
        full_name = f"{schema}.{self.events.name}"
        return int.from_bytes(hashlib.blake2b(full_name.encode(), digest_size=8).digest(), "big", signed=True)

    @contextlib.contextmanager
    def connect(self, action: str, *, write: bool) -> Iterator[Connection]:
        """A connection (in a transaction committed at exit when ``write``); storage faults raise
        :class:`InboxUnavailable`. SQLite writers of this process queue on :attr:`writer_lock` first."""
        engine = self.engine
        queued = write and not self.is_postgres
        if queued and not self.writer_lock.acquire(timeout=self.busy_timeout):
            error = TimeoutError(f"waited {self.busy_timeout:g}s for this process's other writers (locked)")
            raise self.unavailable(error, action)
        try:
            with engine.connect() as conn:
                try:
                    if write:
                        with conn.begin():
                            yield conn
                    else:
                        yield conn
                except (sa_exc.SQLAlchemyError, OSError):
                    # A storage fault may leave the connection unusable (SQLite opened read-only on a
                    # read-only file system, a server restart): never hand it out again.
                    with contextlib.suppress(Exception):
                        conn.invalidate()
                    raise
        except (sa_exc.SQLAlchemyError, OSError) as error:
            raise self.unavailable(error, action) from error
        finally:
            if queued:
                self.writer_lock.release()

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

    def append(
        self,
        receiver: str,
        event_id: str | int,
        body: Body,
        *,
        resource: str | None = None,
        action: str | None = None,
        headers: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        subscription_id: str | int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AppendResult:
        """Store one delivery once and wait for its commit (see :class:`AppendResult`).

        ``body`` is the raw request body (kept byte for byte); a mapping is serialised to JSON.
        ``resource``, ``action`` and ``subscription_id`` default to the body's fields of those names;
        ``fields`` is the body already parsed (the receiver has it), so it is not parsed again.
        Pass only ``headers`` worth keeping: they are stored as given (never returned to Airflow).
        Goes through the inbox's writer (group commit); blocks this thread until the batch holding the
        delivery is committed. Raises :class:`InvalidDelivery` when the delivery's own data cannot be
        stored, :class:`InboxUnavailable` when it could not be made durable.
        """
        row = prepare_row(receiver, event_id, body, resource, action, headers, received_at, subscription_id, fields)
        pending = Pending(row)
        self._submit(pending)
        pending.event.wait()  # type: ignore[union-attr]
        if pending.error is not None:
            raise for_caller(pending.error)
        assert pending.result is not None
        return pending.result

    async def aappend(
        self,
        receiver: str,
        event_id: str | int,
        body: Body,
        *,
        resource: str | None = None,
        action: str | None = None,
        headers: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        subscription_id: str | int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AppendResult:
        """:meth:`append` for an event loop: awaits the commit without holding a thread.

        Cancelling the await does not cancel the write (the delivery may still be stored; it was not
        acknowledged, so a redelivery is deduplicated).
        """
        row = prepare_row(receiver, event_id, body, resource, action, headers, received_at, subscription_id, fields)
        loop = asyncio.get_running_loop()
        pending = Pending(row, loop, loop.create_future())
        self._submit(pending)
        return await pending.future  # type: ignore[misc]

    def _submit(self, pending: Pending) -> None:
        while True:
            writer = self._writer
            if writer is None or writer.pid != os.getpid():
                with self._lock:
                    writer = self._writer
                    if writer is None or writer.pid != os.getpid():
                        # First append, after close(), or in a forked child (the parent's thread is gone).
                        writer = self._writer = Writer(self)
            if writer.submit(pending):
                return
            # close() stopped this writer between our look and our put: the next one takes it.
            with self._lock:
                if self._writer is writer:
                    self._writer = None

    @property
    def queued_appends(self) -> int:
        """Appends of this process waiting for the writer's next batch (0 when it is idle)."""
        writer = self._writer
        return 0 if writer is None else writer.queued

    def writer_statements(self) -> WriterStatements:
        """The writer's compiled statements (built on first use)."""
        if self._statements is None:
            engine = self.engine
            self._statements = WriterStatements(
                self.tables,
                engine.dialect,
                lock_key=self._lock_key,
                busy_timeout=self.busy_timeout,
                channel=self.notify_channel,
            )
        return self._statements

    def write_transaction(self) -> contextlib.AbstractContextManager[WriteTransaction]:
        """One transaction holding this inbox's write lock, for bulk imports and maintenance.

        SQLite: ``BEGIN IMMEDIATE`` (the database's write lock); PostgreSQL: the ordering lock. Appends
        made through the handle commit together when the block exits (nothing is stored when it raises or
        after :meth:`WriteTransaction.rollback`). Every other append, of any process, waits meanwhile (up
        to ``busy_timeout``, then :class:`InboxUnavailable`). Keep it short.

        Example::

            with inbox.write_transaction() as tx:
                for event_id, body in backlog:
                    tx.append("shop-floor", event_id, body)
        """
        return transaction.hold(self)

    # -- reading -----------------------------------------------------------------------------------------

    _EVENT_COLUMNS = ("seq", "receiver", "event_id", "subscription_id", "resource", "action", "received_at", "body")

    def _select_events(self) -> sa.Select[Any]:
        return sa.select(*(self.events.c[name] for name in self._EVENT_COLUMNS))

    @staticmethod
    def _to_event(row: Any) -> InboxEvent:
        parsed = parse_body(bytes(row.body))
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
            received_at=from_db_ts(row.received_at),
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
        with self.connect("read", write=False) as conn:
            return [self._to_event(row) for row in conn.execute(query)]

    def latest(self, limit: int = 20, *, receiver: str | None = None) -> list[InboxEvent]:
        """The newest ``limit`` events (oldest first): what ``airflow-ion inbox tail`` shows."""
        c = self.events.c
        query = self._select_events()
        if receiver is not None:
            query = query.where(c.receiver == receiver)
        query = query.order_by(c.seq.desc()).limit(max(0, int(limit)))
        with self.connect("read", write=False) as conn:
            rows = list(conn.execute(query))
        return [self._to_event(row) for row in reversed(rows)]

    def get(self, receiver: str, event_id: str | int) -> InboxEvent | None:
        """The stored delivery ``(receiver, event_id)``, or ``None``."""
        c = self.events.c
        query = self._select_events().where(c.receiver == receiver, c.event_id == str(event_id))
        with self.connect("read", write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else self._to_event(row)

    def latest_seq(self) -> int:
        """The highest stored seq, 0 when empty. A new consumer that wants only new events starts here."""
        with self.connect("read", write=False) as conn:
            return int(conn.execute(sa.select(sa.func.max(self.events.c.seq))).scalar() or 0)

    def seq_at_or_after(self, timestamp: datetime) -> int:
        """Seq of the first event received at or after ``timestamp`` (``latest_seq() + 1`` if none).

        To look back to a DAG run's start: ``read_after(seq_at_or_after(start) - 1)``. Naive timestamps
        are taken as UTC.
        """
        c = self.events.c
        with self.connect("read", write=False) as conn:
            found = conn.execute(sa.select(sa.func.min(c.seq)).where(c.received_at >= utc(timestamp))).scalar()
            if found is not None:
                return int(found)
            return int(conn.execute(sa.select(sa.func.max(c.seq))).scalar() or 0) + 1

    # -- consumer cursors --------------------------------------------------------------------------------

    def get_cursor(self, consumer: str) -> int:
        """The consumer's last processed seq (0 for a new consumer)."""
        with self.connect("cursor", write=False) as conn:
            value = conn.execute(sa.select(self.cursors.c.seq).where(self.cursors.c.consumer == consumer)).scalar()
        return int(value or 0)

    def set_cursor(self, consumer: str, seq: int) -> int:
        """Advance the consumer's cursor to ``seq``; never moves it backwards. Returns the stored value.

        A single upsert (``GREATEST`` semantics), so racing consumers with the same name cannot move it back.
        """
        if int(seq) < 0:
            raise ValueError("cursor seq must be >= 0")
        table = self.cursors
        statement = dialect_insert(self.is_postgres)(table).values(
            consumer=consumer, seq=int(seq), updated_at=utc(None)
        )
        statement = statement.on_conflict_do_update(
            index_elements=["consumer"],
            set_={
                "seq": sa.case((statement.excluded.seq > table.c.seq, statement.excluded.seq), else_=table.c.seq),
                "updated_at": statement.excluded.updated_at,
            },
        ).returning(table.c.seq)
        with self.connect("cursor", write=True) as conn:
            return int(conn.execute(statement).scalar_one())

    def open_cursor(self, consumer: str, start: int | None = None) -> int:
        """The consumer's cursor; a consumer seen for the first time is saved at once at ``start``.

        ``start`` defaults to :meth:`latest_seq` (only new events). Saved at once so that a later open
        (after a restart) resumes here rather than at a newer "latest", skipping what arrived in between.
        """
        with self.connect("cursor", write=False) as conn:
            value = conn.execute(sa.select(self.cursors.c.seq).where(self.cursors.c.consumer == consumer)).scalar()
        if value is not None:
            return int(value)
        return self.set_cursor(consumer, self.latest_seq() if start is None else max(0, int(start)))

    def list_cursors(self) -> dict[str, int]:
        """Every consumer's cursor."""
        with self.connect("cursor", write=False) as conn:
            return {row.consumer: int(row.seq) for row in conn.execute(sa.select(self.cursors))}

    # -- what consumers consume (see .consumers) ------------------------------------------------------------

    def record_consumer(
        self,
        consumer: str,
        *,
        kind: str,
        receiver: str | None = None,
        resources: Iterable[str] | None = None,
        actions: Iterable[str] | None = None,
    ) -> None:
        """Record what ``consumer`` (a trigger's cursor name, or a sensor's) consumes, seen now.

        ``kind`` is ``"trigger"`` or ``"sensor"``; ``None`` resources/actions mean any. For the audit, which
        compares the consumers seen recently with ION's active subscriptions (:meth:`consumers`).
        """
        consumer_records.record(self, consumer, kind=kind, receiver=receiver, resources=resources, actions=actions)

    def consumers(self, since: datetime | None = None) -> list[ConsumerRecord]:
        """The consumers recorded by :meth:`record_consumer`, seen at or after ``since`` (all when None)."""
        return consumer_records.listing(self, since)

    # -- counters: rejections and conflicts (see .housekeeping) --------------------------------------------

    def add_rejections(self, counts: Mapping[tuple[str, str], int], at: datetime | None = None) -> None:
        """Add ``{(receiver, reason): n}`` to the hourly rejection counters (one upsert per pair).

        The receiver batches its counts and calls this every few seconds, so refused (possibly forged)
        requests cost no write each.
        """
        housekeeping.add_rejections(self, counts, at)

    def rejection_counts(self, *, since: datetime | None = None) -> dict[str, dict[str, int]]:
        """``{receiver: {reason: n}}`` over the hours from ``since`` (its hour included) on."""
        return housekeeping.rejection_counts(self, since=since)

    def conflict_counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """``{receiver: n}``: re-deliveries of a known event id with a different body, from ``since`` on."""
        return housekeeping.conflict_counts(self, since=since)

    # -- quarantine --------------------------------------------------------------------------------------

    def quarantine(self, receiver: str, body: bytes, headers: Mapping[str, str], reason: str) -> bool:
        """Keep a delivery to a known receiver whose signature failed; False when its quarantine is full.

        Never visible to :meth:`read_after` or triggers; purged with the retention (see :mod:`.quarantine`).
        """
        return quarantine.add(self, receiver, body, headers, reason)

    def quarantined(self, receiver: str | None = None, limit: int = 100) -> list[QuarantinedDelivery]:
        """The oldest ``limit`` quarantined deliveries (of ``receiver``, or of all receivers)."""
        return quarantine.listing(self, receiver, limit)

    def remove_quarantined(self, ids: Iterable[int]) -> int:
        """Delete quarantined deliveries by id; returns how many were deleted."""
        return quarantine.remove(self, ids)

    # -- retention and stats (see .housekeeping) -----------------------------------------------------------

    def purge(self, older_than: timedelta | None = None) -> int:
        """Delete events received more than ``older_than`` ago (default: the ``retention`` setting).

        Age only: a consumer that fell further behind than the retention loses those events, which is why
        the retention must exceed both ION's retry window and any expected consumer outage. The same age
        purges the quarantine and the rejection counters; the seen record (dedup) and the conflict
        counters are purged at the dedup horizon, so a replay of a purged event stays a duplicate until
        then. Deletes in batches. Returns the count of events deleted.
        """
        return housekeeping.purge(self, older_than)

    def stats(self) -> dict[str, Any]:
        """Counts, time range, latest seq, consumers' cursors and lag, rejections, conflicts, quarantine,
        schema version and settings; JSON-serialisable (what ``airflow-ion inbox stats`` prints)."""
        return housekeeping.stats(self)

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
