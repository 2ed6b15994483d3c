"""Waking readers up when events are appended: PostgreSQL ``LISTEN``/``NOTIFY``, else polling."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox.store import Inbox

__all__ = ["InboxListener"]


class InboxListener:
    """Wakes a reader when events are appended (see :meth:`Inbox.listen`). Not thread-safe; close it.

    Example::

        with inbox.listen() as listener:
            events = inbox.read_after(cursor)  # listen first, then read: nothing falls in between
            if not events:
                listener.wait(5.0)
    """

    def __init__(self, inbox: Inbox, poll_interval: float = 0.2) -> None:
        self.inbox = inbox
        self.poll_interval = poll_interval
        self._conn: Any = None
        engine = inbox.engine
        if inbox.is_postgres and engine.url.get_driver_name() == "psycopg":
            try:
                raw = engine.raw_connection()
                conn = raw.driver_connection
                raw.detach()  # a private connection, never returned to the pool
                if conn is None:  # an invalidated pool entry: no DBAPI connection behind it
                    raise RuntimeError("the pool gave a connection without its DBAPI connection")
                conn.rollback()
                conn.autocommit = True
                channel = inbox.notify_channel.replace('"', '""')
                conn.execute(f'LISTEN "{channel}"')
                self._conn = conn
            except Exception as error:
                raise inbox.unavailable(error, "listen") from error
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
                raise self.inbox.unavailable(error, "listen") from error
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
