"""Ack mode for :class:`~airflow_provider_ion.triggers.webhook.IonWebhookTrigger` (Airflow 3.3+ shared streams).

Imported only by the triggerer on Airflow 3.3+ (``airflow.triggers.shared_stream`` does not exist before).

Airflow runs one producer per shared-stream group (per triggerer process, per inbox) and fans its raw
events out to every trigger of the group; it calls :meth:`IonInboxProducer.advance` with events whose
subscribers have all moved past them and whose trigger events were persisted. Airflow's model is one
broker cursor per group, but our cursor must be per trigger: triggers move between triggerers, and a
trigger that moves must resume from *its* position, not from what the rest of its old group reached.
So each trigger keeps a named consumer cursor in the inbox, and:

- the raw event is a mutable :class:`RawItem` (also the ``broker_payload``); each subscriber's filter
  records itself in ``seen_by`` when it processed the event, and in ``fired_by`` when it yielded a
  trigger event for it;
- ``advance`` moves each consumer in ``seen_by`` to the event's seq. Airflow's outcome counts failures
  per raw event, not per subscriber, so when one failed (ack timeout: a trigger event never confirmed
  persisted) each subscription that *fired* for it is put on hold at that event (its cursor stays
  before it). Airflow fails the subscriber that failed: its filter ends (it leaves the group) and it is
  frozen, so the next run of the trigger gets the event again. A held subscription that pulls a newer
  raw event after the failure was reported is alive and was not the one that failed (a failed
  subscriber's queue is drained and replaced with the failure, ``shared_stream.py``
  ``_drain_and_offer_failure``): its hold is lifted and its cursor catches up. Those that only skipped
  the event advance at once: they had nothing to persist. So one subscriber's failure never holds back
  another subscription's cursor for longer than until its next event;
- a trigger joining the group starts from its own cursor, which may be behind the group's read
  position (after a restart, or a move from another triggerer): the producer *rewinds* its read to the
  lowest cursor that joined and starts a new generation. A subscriber ignores raw events of generations
  before the one that served its join, and events at or below what it already processed, so it sees
  every event after its cursor exactly once, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

from airflow_provider_ion.triggers._reader import Waiter, get_inbox, get_reader, next_generation

if TYPE_CHECKING:
    from airflow_provider_ion.webhooks.inbox import InboxEvent

log = logging.getLogger(__name__)

#: Raw events the slowest subscriber may lag behind before the producer waits (Airflow fails a
#: subscriber whose queue exceeds ``[triggerer] shared_stream_subscriber_queue_size``, 1024 by default).
HIGH_WATER = 384

_JOIN = object()
_subscription_ids = itertools.count(1)


@dataclass(eq=False)
class Subscription:
    """One trigger's membership in a group: its consumer cursor and how far it got."""

    consumer: str
    cursor: int
    served_gen: int | None = None
    frozen: bool = False
    last_index: int = 0
    left: bool = False
    #: seq of an event whose outcome had a failure while this subscription had fired for it (see module doc)
    hold: int | None = None
    #: the producer's index when the hold was set: pulling a raw event past it proves this one is alive
    hold_mark: int = 0
    #: the highest seq this subscription is done with (saved unless held below it)
    best: int = -1
    id: int = field(default_factory=lambda: next(_subscription_ids))


@dataclass(eq=False)
class RawItem:
    """One inbox event as broadcast to the group (raw event and broker payload at once)."""

    event: InboxEvent
    gen: int
    index: int
    seen_by: set[Subscription] = field(default_factory=set)
    fired_by: set[Subscription] = field(default_factory=set)


class StreamState:
    """Per-process registry of one shared-stream key: live subscriptions and the running producer."""

    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.producer: IonInboxProducer | None = None

    def join(self, sub: Subscription) -> None:
        if self.producer is not None:
            sub.last_index = self.producer.index
        self.subscriptions.add(sub)
        if self.producer is not None:
            self.producer.notify_join()

    def leave(self, sub: Subscription) -> None:
        sub.left = True
        self.subscriptions.discard(sub)


_states: dict[Hashable, StreamState] = {}


def stream_state(key: Hashable) -> StreamState:
    state = _states.get(key)
    if state is None:
        state = _states[key] = StreamState()
    return state


class IonInboxProducer(SharedStreamProducer):
    """Reads the inbox for one group (through the process's shared reader) and advances consumer cursors."""

    def __init__(self, key: Hashable, url: str, poll_interval: float) -> None:
        self.key = key
        self.url = url
        self.poll_interval = poll_interval
        self.gen = 0
        self.index = 0
        self._waiter: Waiter | None = None
        self._unsaved: dict[str, int] = {}
        self._held: set[Subscription] = set()
        self._touched: set[Subscription] = set()

    def notify_join(self) -> None:
        if self._waiter is not None:
            self._waiter.poke(_JOIN)

    def _serve_joins(self, state: StreamState) -> None:
        waiter = self._waiter
        assert waiter is not None
        pending = [s for s in state.subscriptions if s.served_gen is None]
        if not pending:
            return
        low = min(s.cursor for s in pending)
        if waiter.position is None or low < waiter.position:
            self.gen = next_generation()
            waiter.rewind(low)
        for sub in pending:
            sub.served_gen = self.gen
            sub.last_index = max(sub.last_index, self.index)

    async def _backpressure(self, state: StreamState) -> None:
        while True:
            live = [s for s in state.subscriptions if s.served_gen is not None]
            if not live or self.index - min(s.last_index for s in live) <= HIGH_WATER:
                return
            await asyncio.sleep(0.01)

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        state = stream_state(self.key)
        state.producer = self
        self._waiter = waiter = get_reader(self.url, self.poll_interval).add_waiter(None)
        self.gen = next_generation()
        try:
            self._serve_joins(state)
            while True:
                item = await waiter.get()
                if item is _JOIN:
                    self._serve_joins(state)
                    continue
                events, _upto = item
                for event in events:
                    self.index += 1
                    raw = RawItem(event=event, gen=self.gen, index=self.index)
                    yield raw, raw
                    if self.index % 64 == 0:
                        await self._backpressure(state)
                await self._backpressure(state)
        finally:
            if state.producer is self:
                state.producer = None
            waiter.close()
            self._waiter = None

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        # Never raises: an exception here would end the whole stream group (``shared_stream.py``,
        # ``SharedStreamProducer.advance``). An inbox error keeps the updates for the next call.
        for item in batch:
            raw: RawItem = item.broker_payload
            unsafe = item.outcome.failed > 0
            for sub in raw.seen_by:
                if sub.frozen:
                    continue
                if unsafe and sub in raw.fired_by and sub.hold is None:
                    sub.hold, sub.hold_mark = raw.event.seq, self.index
                    self._held.add(sub)
                sub.best = max(sub.best, raw.event.seq)
                self._touched.add(sub)
        for sub in list(self._held):
            if sub.left:
                sub.frozen = True  # it failed (or left) with the event outstanding: its next start gets it
                self._held.discard(sub)
                log.warning(
                    "ION inbox consumer %s: trigger event for seq %s not confirmed persisted; its cursor stays "
                    "before it (redelivered on the trigger's next start)",
                    sub.consumer,
                    sub.hold,
                )
            elif sub.last_index > sub.hold_mark:
                sub.hold = None  # alive after the failure was reported: not the one that failed
                self._held.discard(sub)
        updates = self._unsaved
        for sub in list(self._touched):
            target = sub.best if sub.hold is None else min(sub.best, sub.hold - 1)
            if target >= 0:
                updates[sub.consumer] = max(updates.get(sub.consumer, -1), target)
            if sub.hold is None or sub.frozen:
                self._touched.discard(sub)
        if not updates:
            return
        pending = dict(updates)
        try:
            await asyncio.to_thread(_write_cursors, get_inbox(self.url), pending)
        except Exception as error:  # storage down: keep them, retry on the next advance
            log.warning("ION inbox: could not save consumer cursors (will retry): %s", error)
            return
        for consumer, seq in pending.items():
            if updates.get(consumer) == seq:
                del updates[consumer]


def _write_cursors(inbox: Any, updates: dict[str, int]) -> None:
    for consumer, seq in sorted(updates.items()):
        inbox.set_cursor(consumer, seq)
