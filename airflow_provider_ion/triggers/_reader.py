"""One inbox reader per triggerer process per inbox, shared by every trigger waiting on it.

Why: a triggerer may hold thousands of waiting triggers (deferred sensors, asset watchers). If each
polled the inbox, the inbox would see N queries per poll interval. Instead each process keeps one
:class:`InboxReader` per ``(event loop, inbox URL, poll interval)``: a single asyncio task that reads
``seq > min(position of every waiter)`` once per poll and hands each waiter the events past its own
position (pre-filtered for waiters that only want matches). Reads are sync SQLAlchemy calls, so they
run in a worker thread (``asyncio.to_thread``) and never block the triggerer's loop. The reader stops
when its last waiter leaves.

Wake-ups: SQLite is polled every ``poll_interval`` (0.2 s by default); PostgreSQL with psycopg 3 waits
on ``LISTEN``/``NOTIFY`` (:meth:`Inbox.listen`) and still re-reads every few seconds as the fallback (a
lost notification costs at most that long; a dead LISTEN connection falls back to plain polling until
it can be re-opened).

Nothing here is imported at DAG-parse time (the trigger and sensor modules import it lazily).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox import Inbox, InboxEvent

log = logging.getLogger(__name__)

#: Events per read; also the most one waiter is handed at once.
READ_LIMIT = 256
#: With LISTEN/NOTIFY, re-read anyway this often (a safety net for a lost notification).
NOTIFY_FALLBACK_INTERVAL = 2.0
#: Back-off after a failed read (storage down): retried, never fatal for the waiters.
ERROR_BACKOFF = (0.5, 1.0, 2.0, 5.0)


def resolve_inbox_url(explicit: str | None = None) -> str:
    """The inbox a trigger or sensor reads: ``explicit``, else :func:`airflow_provider_ion.config.inbox_url`."""
    from airflow_provider_ion import config

    return config.inbox_url(explicit)


def resolve_poll_interval(explicit: float | None = None) -> float:
    """``explicit``, else ``[ion_webhooks] poll_interval`` (0.2 s), floored at 10 ms."""
    from airflow_provider_ion import config

    return max(0.01, float(explicit) if explicit is not None else config.get_float("poll_interval"))


_inboxes: dict[str, Inbox] = {}
_inboxes_lock = threading.Lock()


def get_inbox(url: str) -> Inbox:
    """One :class:`Inbox` (one engine, one pool) per URL per process."""
    with _inboxes_lock:
        inbox = _inboxes.get(url)
        if inbox is None:
            from airflow_provider_ion.webhooks.inbox import Inbox

            inbox = _inboxes[url] = Inbox(url)
        return inbox


class Waiter:
    """One consumer of an :class:`InboxReader`'s events.

    ``position`` is the last seq this waiter has been handed (``None``: not reading yet). Each delivery
    is ``(events, upto)``: the events after the old position that pass ``accept`` (all when ``accept`` is
    ``None``), and the seq the waiter has now read up to (so cursors can move past non-matching events).
    """

    def __init__(self, reader: InboxReader, position: int | None, accept: Callable[[Any], bool] | None) -> None:
        self.reader = reader
        self.position = position
        self.accept = accept
        self.epoch = 0
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def rewind(self, position: int) -> None:
        """Read again from ``position``: drops what is queued (it will come again, in order)."""
        self.position = position
        self.epoch += 1
        while not self.queue.empty():
            self.queue.get_nowait()
        self.reader.wake()

    def poke(self, item: Any) -> None:
        """Put an out-of-band item (e.g. a join notice) in this waiter's queue."""
        self.queue.put_nowait(item)

    async def get(self, timeout: float | None = None) -> Any:
        """Next delivery ``(events, upto)`` or poked item; ``None`` after ``timeout`` seconds."""
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.reader.remove(self)


class InboxReader:
    """The shared reader of one inbox in one event loop (see the module doc)."""

    def __init__(self, url: str, poll_interval: float) -> None:
        self.url = url
        self.poll_interval = poll_interval
        self.inbox = get_inbox(url)
        self.waiters: set[Waiter] = set()
        self.reads = 0  # read_after queries issued (tests and stats)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._key: tuple[Any, str, float] | None = None

    def add_waiter(self, position: int | None = None, accept: Callable[[Any], bool] | None = None) -> Waiter:
        waiter = Waiter(self, position, accept)
        self.waiters.add(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ion-inbox-reader[{self.url}]")
        self.wake()
        return waiter

    def remove(self, waiter: Waiter) -> None:
        self.waiters.discard(waiter)
        if not self.waiters:
            if self._key is not None and _readers.get(self._key) is self:
                del _readers[self._key]
            if self._task is not None and not self._task.done():
                self._task.cancel()
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        listener: Any = None
        notify_wait: asyncio.Future | None = None
        failures = 0
        loop = asyncio.get_running_loop()
        listen_retry_at = 0.0
        try:
            if self.inbox.backend == "postgresql":
                listener = await self._open_listener()
                listen_retry_at = loop.time() + 30.0
            while self.waiters:
                self._wake.clear()
                active = [w for w in self.waiters if w.position is not None]
                if not active:
                    await self._wake.wait()
                    continue
                start = min(w.position for w in active if w.position is not None)
                snapshot = {w: (w.position, w.epoch) for w in active}
                try:
                    self.reads += 1
                    events = await asyncio.to_thread(self.inbox.read_after, start, limit=READ_LIMIT)
                    failures = 0
                except Exception as error:  # storage down: keep waiting, never fail the waiters for it
                    delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                    failures += 1
                    log.warning("ION inbox read failed (retrying in %.1fs): %s", delay, error)
                    await self._sleep(delay)
                    continue
                self._dispatch(events, snapshot)
                if len(events) >= READ_LIMIT:
                    await asyncio.sleep(0)  # let consumers drain before the next page
                    continue
                if listener is not None:
                    if notify_wait is None:
                        notify_wait = asyncio.ensure_future(asyncio.to_thread(listener.wait, NOTIFY_FALLBACK_INTERVAL))
                    wake_wait = asyncio.ensure_future(self._wake.wait())
                    done, _ = await asyncio.wait({notify_wait, wake_wait}, return_when=asyncio.FIRST_COMPLETED)
                    wake_wait.cancel()
                    if notify_wait in done:
                        finished, notify_wait = notify_wait, None
                        if finished.exception() is not None:
                            log.warning("ION inbox LISTEN failed; polling: %s", finished.exception())
                            with contextlib.suppress(Exception):
                                listener.close()
                            listener = None
                            listen_retry_at = loop.time() + 30.0
                else:
                    await self._sleep(self.poll_interval)
                    if self.inbox.backend == "postgresql" and loop.time() >= listen_retry_at:
                        listener = await self._open_listener()
                        listen_retry_at = loop.time() + 30.0
        finally:
            if listener is not None:
                if notify_wait is not None:
                    # The thread is still inside listener.wait(); close when it returns.
                    close = listener.close
                    notify_wait.add_done_callback(lambda _f: close())
                else:
                    listener.close()

    async def _open_listener(self) -> Any:
        try:
            listener = await asyncio.to_thread(self.inbox.listen, self.poll_interval)
        except Exception as error:
            log.warning("ION inbox LISTEN unavailable; polling every %.2fs: %s", self.poll_interval, error)
            return None
        if not listener.uses_notify:  # not psycopg 3: polling it is
            listener.close()
            return None
        return listener

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _dispatch(self, events: list[InboxEvent], snapshot: dict[Waiter, tuple[int | None, int]]) -> None:
        last = events[-1].seq if events else None
        for waiter, (position, epoch) in snapshot.items():
            if waiter not in self.waiters or waiter.epoch != epoch or position is None:
                continue  # left, or rewound while we read: its next read starts over
            if last is None or last <= position:
                continue
            fresh = [e for e in events if e.seq > position]
            if waiter.accept is not None:
                fresh = [e for e in fresh if waiter.accept(e)]
            waiter.position = last
            waiter.queue.put_nowait((fresh, last))


def _reader_key(url: str, poll_interval: float) -> tuple[Any, str, float]:
    return (asyncio.get_running_loop(), url, poll_interval)


_readers: dict[tuple[Any, str, float], InboxReader] = {}


def get_reader(url: str, poll_interval: float) -> InboxReader:
    """The running loop's shared reader for ``url`` (created on first use)."""
    key = _reader_key(url, poll_interval)
    reader = _readers.get(key)
    if reader is None:
        reader = _readers[key] = InboxReader(url, poll_interval)
        reader._key = key
    return reader


_generation = itertools.count(1)


def next_generation() -> int:
    """Process-wide increasing numbers for the ack-mode producer's read passes."""
    return next(_generation)
