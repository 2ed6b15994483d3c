"""Webhook delivery: what ION does after a committed change, at-least-once, signed, with an audit trail.

A change to a domain object (through :meth:`Store.on_change`) or :meth:`Deliveries.fire` finds every
active subscription for ``(resource, action)`` on an active receiver. For each it records a
``WebhookEvent`` (``PENDING``) and queues a delivery; the GraphQL mutation answers at once, because
the sending happens on a background asyncio loop in its own thread (one per emulator, started on the
first event), at most ``concurrency`` attempts at a time.

An attempt POSTs the body (same bytes every time, see :mod:`.delivery_attempt`) and succeeds when the
receiver answers its ``expectedResponseCode``. Otherwise the event becomes ``RETRYING`` and is tried
again after the next wait of the retry schedule, until ``max_attempts``: then ``FAILED``. Every attempt
updates the event (``attempts``, ``lastResponseCode``, ``lastError``, ``status``, ``deliveredAt``),
which clients read through GraphQL ``webhookEvents`` like ION's audit trail.

Like ION there is no ordering guarantee, but the default is roughly in order: events start in the
order they were created and wait for a free slot first-come first-served.

Body: ``{"event_id", "subscription_id", "resource", "action", "data", "created_at"}`` in that order
(ION's published bodies start with the first three), JSON with the standard separators.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from airflow_provider_ion.resources import canonical_resource
from airflow_provider_ion.testing.emulator.delivery_attempt import AttemptResult, Job, attempt
from airflow_provider_ion.testing.emulator.delivery_faults import DeliveryFault, DeliveryFaultQueue
from airflow_provider_ion.testing.emulator.delivery_http import HttpSender
from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings
from airflow_provider_ion.testing.emulator.errors import NotFound
from airflow_provider_ion.testing.emulator.store import Store, now_iso

log = logging.getLogger(__name__)

_STAT_NAMES = (
    "events",
    "attempts",
    "sent",
    "succeeded",
    "failed",
    "retries",
    "duplicates_sent",
    "dropped",
    "delayed",
    "reordered",
)


class Deliveries:
    """The delivery worker of one emulator store.

    Example::

        deliveries = Deliveries(store, DeliverySettings(retry_schedule=(0.05, 0.1, 0.2), max_attempts=5))
        store.create_object("runs", {"title": "R1"})    # -> one delivery per matching subscription
        deliveries.wait_for_deliveries(10)               # True once every event is SUCCESS or FAILED

    Thread-safe: events are fired from the server's worker threads and from tests; the sending runs
    on the worker's own loop. Lock order (to stay deadlock-free): write lock -> store lock -> counters.
    """

    def __init__(self, store: Store, settings: DeliverySettings | None = None) -> None:
        self.store = store
        self.default_settings = settings or DeliverySettings()
        self.settings = self.default_settings
        self.faults = DeliveryFaultQueue()
        self._counts: Counter[str] = Counter()
        self._pending = 0
        self._generation = 0  # bumped by reset(): work of an older generation must not touch the store
        self._cond = threading.Condition()  # guards _pending, _counts, _generation
        self._write_lock = threading.Lock()  # a store write and its generation check are one step
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Touched only on the worker loop:
        self._sender: HttpSender | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_size = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[tuple[Job, int]] = []
        self._held_fault: DeliveryFault | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        store.add_listener(self._on_change)

    # ---- firing ---------------------------------------------------------------------------------

    def _on_change(self, resource: str, action: str, obj: dict[str, Any]) -> None:
        self.fire(resource, action, obj)

    def fire(self, resource: str, action: str, data: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Fire ``(resource, action)`` with ``data`` as the object: one event per active matching
        subscription on an active receiver. Returns the new ``WebhookEvent`` rows (``PENDING``)."""
        data = dict(data) if data is not None else {}
        events: list[dict[str, Any]] = []
        jobs: list[Job] = []
        with self.store.bulk():
            for sub in self.store.list("subscriptions"):
                # Either spelling matches (RUNS/RUN): domain changes name resources the plural way, a
                # profile's enum may spell them singular; the body carries the subscription's own value.
                if not sub["active"] or sub["action"] != action or not _same_resource(sub["resource"], resource):
                    continue
                receiver = self.store.get("receivers", sub["receiverId"])
                if receiver is None or not receiver["active"]:
                    continue
                event = self.store.add_event(sub["id"])
                body = {
                    "event_id": event["id"],
                    "subscription_id": sub["id"],
                    "resource": sub["resource"],
                    "action": action,
                    "data": data,
                    "created_at": event["createdAt"],
                }
                events.append(self.store.update_event(event["id"], payload=body))
                raw = json.dumps(body, default=str).encode()
                jobs.append(Job(event["id"], sub["id"], receiver["id"], sub["resource"], action, raw))
            self._submit(jobs)
        return events

    def _submit(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        with self._cond:
            self._pending += len(jobs)
            self._counts["events"] += len(jobs)
            generation = self._generation
        self._ensure_loop().call_soon_threadsafe(self._dispatch, jobs, generation)

    # ---- control --------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> DeliverySettings:
        """Change settings for attempts from now on (see :class:`DeliverySettings`); returns them."""
        self.settings = self.settings.with_changes(**changes)
        return self.settings

    def wait_for_deliveries(self, timeout: float = 30.0) -> bool:
        """Block until every queued event is SUCCESS or FAILED; False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    @property
    def pending(self) -> int:
        """Events not finished yet (sending, waiting for a retry, or held by a reorder fault)."""
        with self._cond:
            return self._pending

    def stats(self) -> dict[str, int]:
        """``events`` fired, ``attempts`` made, HTTP requests ``sent`` (copies and drops included),
        events ``succeeded`` / ``failed``, ``retries`` scheduled, ``pending``, and per-fault counts."""
        with self._cond:
            return {**{name: self._counts[name] for name in _STAT_NAMES}, "pending": self._pending}

    def reset(self) -> None:
        """Cancel all queued work, forget counters and faults, restore the initial settings."""
        with self._write_lock, self._cond:
            self._generation += 1
            self._pending = 0
            self._counts.clear()
            self._cond.notify_all()
        self.faults.clear()
        self.settings = self.default_settings
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_all)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything, close the HTTP client, stop the worker thread (the next event starts a
        new one, so a stopped server can be started again)."""
        self.reset()
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        except Exception as error:  # a stuck close must not hang the caller
            log.warning("Delivery worker did not shut down cleanly: %s", type(error).__name__)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    # ---- the worker loop --------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="ion-deliveries", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        self._cancel_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None
        self._semaphore = None  # bound to this loop; a restarted worker makes its own

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._held.clear()
        self._held_fault = None
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _dispatch(self, jobs: list[Job], generation: int) -> None:
        if generation != self._generation:
            return
        for job in jobs:
            fault = self.faults.take(("reorder",), job.resource, job.action, job.receiver_id)
            if fault is None:
                self._start(job, generation)
            else:
                self._hold(job, generation, fault)

    def _start(self, job: Job, generation: int) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(job, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hold(self, job: Job, generation: int, fault: DeliveryFault) -> None:
        """Collect events of a reorder fault; start them shuffled once the batch or window is full."""
        self._held.append((job, generation))
        self._held_fault = fault
        self._count("reordered")
        if len(self._held) >= fault.batch:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(fault.window, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        held, self._held = self._held, []
        seed = self._held_fault.seed if self._held_fault is not None else None
        random.Random(seed).shuffle(held)
        for job, generation in held:
            if generation == self._generation:
                self._start(job, generation)

    async def _deliver(self, job: Job, generation: int) -> None:
        """Attempt, record, wait, repeat: until success, a final refusal, or ``max_attempts``."""
        number = 0
        try:
            while True:
                number += 1
                settings = self.settings
                try:
                    result = await self._attempt(job, settings)
                except Exception as error:  # a bug here must not leave the event PENDING forever
                    log.exception("Delivery of event %s failed unexpectedly", job.event_id)
                    result = AttemptResult(False, error=f"emulator error: {type(error).__name__}")
                if result.success:
                    status = "SUCCESS"
                elif result.final or number >= settings.attempts:
                    status = "FAILED"
                else:
                    status = "RETRYING"
                if not self._record(job, generation, status, result, number) or status != "RETRYING":
                    return
                await asyncio.sleep(settings.delay_after(number))
        finally:
            self._finished(generation)

    async def _attempt(self, job: Job, settings: DeliverySettings) -> AttemptResult:
        receiver = self.store.get("receivers", job.receiver_id)
        if receiver is None:
            return AttemptResult(False, error="the receiver was deleted", final=True, requests=0)
        fault = self.faults.take(("delay", "drop", "duplicate"), job.resource, job.action, job.receiver_id)
        if fault is not None:
            name = {"delay": "delayed", "drop": "dropped", "duplicate": "duplicates_sent"}[fault.kind]
            self._count(name, fault.copies - 1 if fault.kind == "duplicate" else 1)
            if fault.delay:
                await asyncio.sleep(fault.delay)
        async with self._slots(settings):
            return await attempt(self._http(settings), job, receiver, settings, fault)

    def _record(self, job: Job, generation: int, status: str, result: AttemptResult, number: int) -> bool:
        """Write the attempt to the event; False when a reset made this work obsolete."""
        fields: dict[str, Any] = {
            "status": status,
            "attempts": number,
            "lastResponseCode": result.status_code,
            "lastError": result.error,
        }
        if result.success:
            fields["deliveredAt"] = now_iso()
        with self._write_lock:
            if generation != self._generation:
                return False
            try:
                self.store.update_event(job.event_id, **fields)
            except NotFound:
                return False
        with self._cond:
            counts = self._counts
            counts["attempts"] += 1
            counts["sent"] += result.requests
            counts[{"SUCCESS": "succeeded", "FAILED": "failed", "RETRYING": "retries"}[status]] += 1
        return True

    def _finished(self, generation: int) -> None:
        with self._cond:
            if generation == self._generation:
                self._pending -= 1
                if self._pending <= 0:
                    self._cond.notify_all()

    def _count(self, name: str, amount: int = 1) -> None:
        with self._cond:
            self._counts[name] += amount

    def _slots(self, settings: DeliverySettings) -> asyncio.Semaphore:
        if self._semaphore is None or self._semaphore_size != settings.concurrency:
            self._semaphore = asyncio.Semaphore(settings.concurrency)
            self._semaphore_size = settings.concurrency
        return self._semaphore

    def _http(self, settings: DeliverySettings) -> HttpSender:
        if self._sender is None or self._sender.verify_tls != settings.verify_tls:
            old = self._sender
            self._sender = HttpSender(settings.verify_tls)
            if old is not None:
                asyncio.get_running_loop().create_task(old.aclose())
        return self._sender


def _same_resource(a: str, b: str) -> bool:
    try:
        return a == b or canonical_resource(a) == canonical_resource(b)
    except ValueError:
        return False
