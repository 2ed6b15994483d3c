"""Write transactions: one transaction holding an inbox's write lock (see :meth:`Inbox.write_transaction`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_ion.webhooks.inbox.records import AppendResult
from airflow_provider_ion.webhooks.inbox.writer import Body, log_conflicts, prepare_row, write_rows

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox.store import Inbox

__all__ = ["WriteTransaction", "hold"]


class WriteTransaction:
    """The handle :meth:`Inbox.write_transaction` yields: appends inside one held transaction.

    Example::

        with inbox.write_transaction() as tx:
            tx.append("shop-floor", "evt-1", b"{}")
            tx.rollback()  # nothing stored
    """

    def __init__(self, inbox: Inbox, conn: Any) -> None:
        self._inbox = inbox
        self._conn = conn
        self._done = False

    def append(self, receiver: str, event_id: str | int, body: Body, **kwargs: Any) -> AppendResult:
        """:meth:`Inbox.append` inside this transaction (visible to others after the commit)."""
        if self._done:
            raise RuntimeError("this write transaction is finished; open a new one")
        row = prepare_row(receiver, event_id, body, **kwargs)
        try:
            results = write_rows(self._conn, [row], self._inbox.writer_statements(), lock=False)
        except Exception as error:
            raise self._inbox.unavailable(error, "append") from error
        log_conflicts([row], results)
        return results[0]

    def rollback(self) -> None:
        """Undo every append of this transaction (and end it)."""
        if not self._done:
            self._done = True
            with contextlib.suppress(Exception):
                self._conn.rollback()

    def commit(self) -> None:
        """Commit (done at the end of the ``with`` block)."""
        if not self._done:
            self._done = True
            try:
                self._conn.commit()
            except Exception as error:
                raise self._inbox.unavailable(error, "commit") from error


@contextlib.contextmanager
def hold(inbox: Inbox) -> Iterator[WriteTransaction]:
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
    engine = inbox.engine
    sqlite = not inbox.is_postgres
    if sqlite and not inbox.writer_lock.acquire(timeout=inbox.busy_timeout):
        error = TimeoutError(f"waited {inbox.busy_timeout:g}s for this process's other writers (locked)")
        raise inbox.unavailable(error, "write transaction")
    raw: Any = None
    try:
        try:
            raw = engine.raw_connection()
            conn = raw.driver_connection
            if sqlite:
                conn.isolation_level = None
                conn.execute("BEGIN IMMEDIATE")
            else:
                cursor = conn.cursor()
                cursor.execute(*inbox.writer_statements().lock)  # type: ignore[misc]
                cursor.close()
        except Exception as error:  # driver, SQLAlchemy or OS: the lock could not be taken
            if raw is not None:
                raw.invalidate()
            raise inbox.unavailable(error, "write transaction") from error
        tx = WriteTransaction(inbox, conn)
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise
        tx.commit()
    finally:
        if raw is not None:
            if sqlite:
                with contextlib.suppress(Exception):
                    raw.driver_connection.isolation_level = ""
            raw.close()
        if sqlite:
            inbox.writer_lock.release()
