"""The group-commit writer: one thread per Inbox commits everything pending in one transaction.

An append prepares (and validates) its row in the caller's thread, queues it and waits (a thread on an
event, a coroutine on an asyncio future). The writer takes everything pending (up to ``max_batch``),
dedups within the batch, writes it with one multi-row insert-or-ignore (plus one insert into the seen
record) in ONE transaction, commits once (one fsync; on PostgreSQL one ordering lock and one ``NOTIFY``),
then completes every caller.

Faults: whatever goes wrong, the writer's transaction is rolled back before the next batch (a connection
that cannot roll back is dropped), so it never stays inside ``BEGIN IMMEDIATE`` holding SQLite's write
lock. A failure that is the ROW's fault (the database refuses its data) is retried one row per
transaction, so only that delivery gets :class:`InvalidDelivery` and its neighbours are stored; any other
failure is storage's: :class:`InboxUnavailable` for every caller of the batch.

Why ~500 lines: the batching thread, row validation and the per-row fallback are one mechanism whose
failure rules (above) must be read together.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_ion.webhooks.inbox.records import AppendResult, InboxUnavailable, InvalidDelivery, parse_body, utc
from airflow_provider_ion.webhooks.inbox.schema import COLUMN_LIMITS
from airflow_provider_ion.webhooks.inbox.statements import WriterStatements

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox.store import Inbox

__all__ = ["BatchHook", "Pending", "Writer", "for_caller", "is_row_fault", "prepare_row", "write_rows"]

log = logging.getLogger("airflow_provider_ion.webhooks.inbox")

#: Called inside each write transaction after its rows are inserted, before the commit (see ``Inbox``).
BatchHook = Callable[[Sequence[str]], None]

Body = bytes | bytearray | memoryview | str | Mapping[str, Any]


def _text(name: str, value: Any, *, required: bool) -> str | None:
    if value is None or isinstance(value, dict | list):
        if required:
            raise InvalidDelivery(f"{name} is missing; every delivery needs one", name)
        return None
    text = value if isinstance(value, str) else str(value)
    if required and not text:
        raise InvalidDelivery(f"{name} is empty; every delivery needs one", name)
    limit = COLUMN_LIMITS[name]
    if len(text) > limit:
        raise InvalidDelivery(f"{name} is {len(text)} characters long; the inbox stores at most {limit}", name)
    if "\x00" in text:
        raise InvalidDelivery(f"{name} contains a NUL character, which the inbox cannot store", name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDelivery(
            f"{name} is not valid Unicode text (it contains a lone surrogate such as \\ud800); send UTF-8", name
        ) from None
    return text


def prepare_row(
    receiver: str,
    event_id: str | int,
    body: Body,
    resource: str | None = None,
    action: str | None = None,
    headers: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
    subscription_id: str | int | None = None,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The row an append writes, validated: raises :class:`InvalidDelivery` for data the inbox cannot store."""
    if isinstance(body, Mapping):
        raw = json.dumps(body, separators=(",", ":"), default=str).encode()
        fields = body if fields is None else fields
    elif isinstance(body, str):
        raw = body.encode("utf-8", "surrogatepass")
    else:
        raw = bytes(body)
    if fields is None and (resource is None or action is None or subscription_id is None):
        parsed = parse_body(raw)
        fields = parsed if isinstance(parsed, dict) else {}
    elif fields is None:
        fields = {}
    if subscription_id is None:
        subscription_id = fields.get("subscription_id")
    return {
        "receiver": _text("receiver", receiver, required=True),
        "event_id": _text("event_id", event_id, required=True),
        "subscription_id": _text("subscription_id", subscription_id, required=False),
        "resource": _text("resource", resource if resource is not None else fields.get("resource"), required=False),
        "action": _text("action", action if action is not None else fields.get("action"), required=False),
        "received_at": utc(received_at),
        "body": raw,
        # ensure_ascii (the default) escapes any surrogate: headers can always be stored.
        "headers": json.dumps(dict(headers), default=str) if headers else None,
        "body_sha256": hashlib.sha256(raw).hexdigest(),
    }


def write_rows(
    conn: Any,
    rows: Sequence[Mapping[str, Any]],
    st: WriterStatements,
    *,
    lock: bool = True,
    hook: BatchHook | None = None,
    extra_conflicts: Mapping[str, int] | None = None,
) -> list[AppendResult]:
    """Insert-or-ignore ``rows`` (distinct keys) in the open transaction of DBAPI ``conn``; no commit.

    PostgreSQL: the ordering lock first (unless the caller took it: ``lock=False``). Then one multi-row
    insert into events and one into the seen record for the new rows. A new event whose identity the seen
    record already holds is a replay of a purged event: its row is deleted again and it is a duplicate. A
    duplicate gets its original's seq and body hash by one look-up each; a different hash is a conflict,
    counted per receiver and hour (with ``extra_conflicts``, the writer's in-batch copies). PostgreSQL:
    one ``NOTIFY`` with the highest new seq (sent at commit).
    """
    cursor = conn.cursor()
    try:
        if lock and st.lock is not None:
            cursor.execute(*st.lock)
        cursor.execute(*st.events.params(rows))
        new = {(r, e): int(seq) for seq, r, e in cursor.fetchall()}
        replayed: set[tuple[str, str]] = set()
        if new:
            seen_rows = [
                {
                    "receiver": row["receiver"],
                    "event_id": row["event_id"],
                    "seq": new[(row["receiver"], row["event_id"])],
                    "body_sha256": row["body_sha256"],
                    "seen_at": row["received_at"],
                }
                for row in rows
                if (row["receiver"], row["event_id"]) in new
            ]
            cursor.execute(*st.seen.params(seen_rows))
            recorded = {(r, e) for r, e in cursor.fetchall()}
            for key in new.keys() - recorded:
                replayed.add(key)
                cursor.execute(*st.delete_event.bind(seq=new[key]))
        results: list[AppendResult] = []
        conflicts: dict[str, int] = dict(extra_conflicts or {})
        top = 0
        for row in rows:
            key = (row["receiver"], row["event_id"])
            sha = row["body_sha256"]
            if key in new and key not in replayed:
                results.append(AppendResult(new[key], False))
                top = max(top, new[key])
                continue
            cursor.execute(*st.seen_lookup.bind(receiver=key[0], event_id=key[1]))
            found = cursor.fetchone()
            if found is not None:
                seq, existing = int(found[0]), found[1]
            else:  # stored by an older release (no seen record): hash the stored body
                cursor.execute(*st.event_lookup.bind(receiver=key[0], event_id=key[1]))
                stored = cursor.fetchone()
                seq, existing = int(stored[0]), hashlib.sha256(bytes(stored[1])).hexdigest()
            conflict = existing != sha
            if conflict:
                conflicts[key[0]] = conflicts.get(key[0], 0) + 1
            results.append(AppendResult(seq, True, conflict, sha, existing))
        if conflicts:
            hour = utc(None).replace(minute=0, second=0, microsecond=0)
            for receiver, count in conflicts.items():
                cursor.execute(*st.count_conflicts.bind(receiver=receiver, hour=hour, count=count))
        if hook is not None:
            hook([row["event_id"] for row in rows])
        if st.notify is not None and top:  # PostgreSQL: wake the listeners once per batch
            cursor.execute(*st.notify.bind(channel=st.channel, payload=str(top)))
    finally:
        cursor.close()
    return results


def log_conflicts(rows: Sequence[Mapping[str, Any]], results: Sequence[AppendResult]) -> None:
    """One WARNING per conflicting re-delivery, with both body hashes (never the bodies)."""
    for row, result in zip(rows, results, strict=True):
        if result.conflict:
            log.warning(
                "inbox: receiver %r re-delivered event_id %r with a different body (stored sha256 %s, this "
                "one %s); kept the first, answered duplicate",
                row["receiver"],
                row["event_id"],
                result.existing_sha256,
                result.body_sha256,
            )


def is_row_fault(error: BaseException, dbapi: Any) -> bool:
    """True when ``error`` is the row's data being refused (not storage failing)."""
    if isinstance(error, InvalidDelivery):
        return True
    kinds = tuple(k for k in (getattr(dbapi, "DataError", None), getattr(dbapi, "IntegrityError", None)) if k)
    if kinds and isinstance(error, kinds):
        return True
    base = getattr(dbapi, "Error", None)
    return isinstance(error, UnicodeError | ValueError | TypeError | OverflowError) and not (
        base is not None and isinstance(error, base)
    )


class Pending:
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


def for_caller(error: BaseException) -> BaseException:
    """A fresh exception per caller (one batch's error is raised in many threads/tasks)."""
    if isinstance(error, InboxUnavailable):
        copy = InboxUnavailable(error.url, error.original, error.action)
        copy.__cause__ = error.original
        return copy
    if isinstance(error, InvalidDelivery):
        fresh = InvalidDelivery(str(error), error.field)
        fresh.__cause__ = error.__cause__
        return fresh
    return error


def _settle(batch: list[Pending]) -> None:
    """Resolve a batch's futures on their loop (a cancelled waiter is skipped: the row may be stored)."""
    for pending in batch:
        future = pending.future
        if future is None or future.done():
            continue
        if pending.error is not None:
            future.set_exception(for_caller(pending.error))
        else:
            future.set_result(pending.result)  # type: ignore[arg-type]


class _RowRefused(Exception):
    """Internal: the database refused a row's data (wraps the driver's error)."""


class Writer:
    """The inbox's single writer: a daemon thread, its queue and its own connection.

    ``submit`` puts a pending append on the queue; the thread takes everything pending (up to the inbox's
    ``max_batch``), commits it in one transaction and completes every caller. ``stop`` lets it finish the
    appends already queued, then closes its connection.

    Example (what ``Inbox.append`` does)::

        writer = Writer(inbox)
        pending = Pending(prepare_row("r", "evt-1", b"{}"))
        writer.submit(pending)
        pending.event.wait()
    """

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.conn: Any = None
        self._thread = threading.Thread(target=self._run, name=f"ion-inbox-writer:{inbox.table_prefix}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Appends waiting for a batch (not counting the one being committed)."""
        return self._queue.qsize()

    def submit(self, pending: Pending) -> bool:
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
                        pending.error = self.inbox.unavailable(error, "append")
            self._complete(batch)
        self._close_connection()

    @staticmethod
    def _complete(batch: list[Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
        for pending in batch:
            if pending.loop is None:
                pending.event.set()  # type: ignore[union-attr]
            else:
                by_loop.setdefault(pending.loop, []).append(pending)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, items)

    def _write(self, batch: list[Pending]) -> None:
        """Dedup within the batch, commit the distinct rows, hand every caller its result or error.

        A copy inside the batch with another body than the first is a conflict too: counted in the same
        transaction as the first copy.
        """
        first: dict[tuple[str, str], Pending] = {}
        extra: dict[tuple[str, str], int] = {}
        for pending in batch:
            original = first.setdefault(pending.key, pending)
            if original is not pending and original.row["body_sha256"] != pending.row["body_sha256"]:
                extra[pending.key] = extra.get(pending.key, 0) + 1
        distinct = list(first.values())

        def by_receiver(keys: list[tuple[str, str]]) -> dict[str, int]:
            counts: dict[str, int] = {}
            for key in keys:
                if key in extra:
                    counts[key[0]] = counts.get(key[0], 0) + extra[key]
            return counts

        try:
            results = self._commit([p.row for p in distinct], by_receiver([p.key for p in distinct]))
            for pending, result in zip(distinct, results, strict=True):
                pending.result = result
        except _RowRefused as refused:
            if len(distinct) == 1:
                distinct[0].error = self._invalid(refused)
            else:
                # One refused row must not fail its neighbours: write them one per transaction.
                for pending in distinct:
                    try:
                        pending.result = self._commit([pending.row], by_receiver([pending.key]))[0]
                    except _RowRefused as one:
                        pending.error = self._invalid(one)
                    except Exception as one:
                        pending.error = one
        except Exception as error:
            for pending in distinct:
                pending.error = error
        for pending in batch:
            original = first[pending.key]
            if original is not pending:  # a redelivery inside the batch: the first one's row
                if original.result is not None:
                    sha = pending.row["body_sha256"]
                    known = original.row["body_sha256"]
                    pending.result = AppendResult(original.result.seq, True, sha != known, sha, known)
                else:
                    pending.error = original.error
        done = [p for p in batch if p.result is not None]
        log_conflicts([p.row for p in done], [p.result for p in done])  # type: ignore[misc]

    @staticmethod
    def _invalid(refused: _RowRefused) -> InvalidDelivery:
        cause = refused.__cause__ or refused
        if isinstance(cause, InvalidDelivery):
            return cause
        detail = getattr(cause, "orig", None) or cause
        text = " ".join(str(detail).split())[:200]
        error = InvalidDelivery(f"the inbox refused this delivery's data: {type(detail).__name__}: {text}")
        error.__cause__ = cause
        return error

    def _commit(self, rows: list[dict[str, Any]], extra_conflicts: Mapping[str, int]) -> list[AppendResult]:
        """One transaction for ``rows``; storage failures raise :class:`InboxUnavailable`, refused data
        ``_RowRefused``. The transaction is always rolled back on failure.

        A connection found dead at the first statement (server restarted; nothing written yet) is
        replaced once and the batch retried; later failures are not retried (the commit may have landed:
        the caller answers 503 and ION's redelivery is deduplicated).
        """
        inbox = self.inbox
        engine = inbox.engine  # InboxUnavailable("open") when the storage cannot be opened
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        sqlite = not inbox.is_postgres
        if sqlite and not inbox.writer_lock.acquire(timeout=inbox.busy_timeout):
            error = TimeoutError(f"waited {inbox.busy_timeout:g}s for this process's other writers (locked)")
            raise inbox.unavailable(error, "append")
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
                    st = inbox.writer_statements()
                    results = write_rows(
                        conn, rows, st, lock=False, hook=inbox.batch_hook, extra_conflicts=extra_conflicts
                    )
                    conn.commit()
                    return results
                except BaseException as error:  # whatever it is, roll back first
                    dropped = self._abort(engine, error)
                    if not isinstance(error, Exception):
                        raise
                    if is_row_fault(error, dbapi):
                        raise _RowRefused() from error
                    if attempt == 1 and dropped and not started and not isinstance(error, TimeoutError):
                        continue
                    raise inbox.unavailable(error, "append") from error
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if sqlite:
                inbox.writer_lock.release()

    def _take_ordering_lock(self, conn: Any) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute(*self.inbox.writer_statements().lock)  # type: ignore[misc]
        finally:
            cursor.close()

    def _connection(self, engine: Any) -> Any:
        if self.conn is None:
            raw = engine.raw_connection()  # pragmas applied by the engine's connect hook
            conn = raw.driver_connection
            raw.detach()  # the writer's own connection, never returned to the pool
            if not self.inbox.is_postgres:
                conn.isolation_level = None  # explicit BEGIN IMMEDIATE / COMMIT
            self.conn = conn
        return self.conn

    def _abort(self, engine: Any, error: BaseException) -> bool:
        """Roll back, and keep the connection only when the error was not storage's (a refused row, an
        error outside the database) and it rolled back cleanly.

        A storage fault drops it: a SQLite connection opened while the file system was read-only stays
        read-only, and a server restart leaves a dead one; the next batch opens a fresh connection.
        Returns True when the connection was dead or could not roll back (a retry may succeed).
        """
        conn = self.conn
        if conn is None:
            return True
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        base = getattr(dbapi, "Error", None)
        storage = isinstance(error, OSError) or (
            base is not None and isinstance(error, base) and not is_row_fault(error, dbapi)
        )
        try:
            disconnect = bool(engine.dialect.is_disconnect(error, conn, None))
        except Exception:  # a dialect that cannot tell: assume the connection is alive
            disconnect = False
        if not disconnect:
            try:
                conn.rollback()
                if not storage and (self.inbox.is_postgres or not conn.in_transaction):
                    return False
            except Exception:  # a connection that cannot roll back is replaced
                disconnect = True
        self._close_connection()
        return disconnect

    def _close_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
