"""Triggers that wait for ION webhook events in the inbox.

- :class:`IonWebhookTrigger` (a ``BaseEventTrigger``) for ``AssetWatcher``: fires a ``TriggerEvent``
  for every matching event, forever; Airflow turns each into an asset event whose ``extra["payload"]``
  is the event (``InboxEvent.to_dict()``: ``event_id``, ``receiver``, ``resource``, ``action``,
  ``payload``, ``seq``, ...).
- :class:`IonWebhookWaitTrigger` (a plain ``BaseTrigger``) for deferred tasks
  (:class:`~airflow_provider_ion.sensors.webhook.IonWebhookSensor`): fires once, with the first matching
  event after a given seq.

Both read through one shared inbox reader per triggerer process (``_reader``): N waiting triggers cost
one inbox query per poll, not N. Filters run in the triggerer; a task is only woken for its event.

Delivery into Airflow is at least once. An event trigger keeps a named cursor in the inbox (``consumer``;
default ``ion-trigger-<hash of the filter>-<Airflow trigger id>``, stable across DAG re-parses and
processes, its own per Airflow trigger) and resumes from it after any restart:

- Airflow 3.3+: the trigger uses Airflow's shared streams in ack mode; a cursor moves past an event
  only after Airflow persisted the trigger events derived from it (see ``_ack``).
- Airflow 3.0-3.2 (no shared streams): ``run()`` reads on its own (still through the shared reader) and
  saves its cursor ``standalone_commit_delay`` seconds (10 s) after Airflow took an event from the
  trigger: a triggerer killed within that window delivers those events again (same ``event_id``),
  it does not lose them, unless Airflow failed to persist an event it took more than 10 s earlier.

This module is imported by DAG files at parse time: it imports no SQLAlchemy, httpx or gql.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_ion.triggers.matching import EventFilter, normalize_names

__all__ = ["IonWebhookTrigger", "IonWebhookWaitTrigger", "record_consumer", "sensor_consumer_name"]

STREAM_KEY_PREFIX = "airflow_provider_ion.inbox"
#: Seconds between a running consumer's refreshes of its ``last_seen`` in the inbox's consumers record.
CONSUMER_REFRESH_SECONDS = 3600.0


#: ``(inbox, consumer name) -> time.monotonic()`` of this process's last record (see record_consumer).
_recorded: dict[tuple[str, str, str], float] = {}


def record_consumer(logger: Any, inbox: Any, name: str, kind: str, event_filter: EventFilter) -> bool:
    """Record in the inbox what consumer ``name`` consumes (for the audit); False (and a WARNING) on failure.

    At most once per :data:`CONSUMER_REFRESH_SECONDS` per process and name (a thousand deferred sensors with
    one filter cost one write). Bookkeeping only: a failure never stops a trigger or sensor from delivering.
    """
    key = (str(inbox.safe_url), str(inbox.table_prefix), name)
    last = _recorded.get(key)
    if last is not None and time.monotonic() - last < CONSUMER_REFRESH_SECONDS:
        return True
    try:
        inbox.record_consumer(
            name,
            kind=kind,
            receiver=event_filter.receiver,
            resources=event_filter.resources,
            actions=event_filter.actions,
        )
    except Exception as error:
        logger.warning("ION inbox consumer %s: could not record its filter for the audit: %s", name, error)
        return False
    _recorded[key] = time.monotonic()
    return True


def sensor_consumer_name(event_filter: EventFilter) -> str:
    """The consumers-record name of every sensor (and its wait trigger) with this filter."""
    return f"ion-sensor-{event_filter.fingerprint()}"


async def _keep_recorded(logger: Any, inbox: Any, name: str, kind: str, event_filter: EventFilter) -> None:
    """Refresh the consumer's record every :data:`CONSUMER_REFRESH_SECONDS` while it runs (recorded at start)."""
    while True:
        await asyncio.sleep(CONSUMER_REFRESH_SECONDS)
        await asyncio.to_thread(record_consumer, logger, inbox, name, kind, event_filter)


def _plain(value: Any) -> Any:
    """JSON-shaped copy with stable ordering: what serialize() stores (Airflow hashes it)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, set | frozenset):
        return [_plain(v) for v in sorted(value, key=repr)]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _FilterKwargs:
    """The constructor arguments both triggers share, normalized so serialize() round-trips exactly."""

    def _init_filter(
        self,
        receiver: str | None,
        resource: str | Iterable[str] | None,
        action: str | Iterable[str] | None,
        match: Mapping[str, Any] | None,
        inbox_url: str | None,
        poll_interval: float | None,
    ) -> None:
        self.receiver = receiver or None
        self.resource = normalize_names(resource)
        self.action = normalize_names(action)
        self.match = _plain(dict(match or {}))
        self.inbox_url = inbox_url or None
        self.poll_interval = None if poll_interval is None else float(poll_interval)
        self.event_filter = EventFilter.build(
            receiver=self.receiver, resource=self.resource, action=self.action, match=self.match
        )

    def _filter_kwargs(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "resource": self.resource,
            "action": self.action,
            "match": self.match,
            "inbox_url": self.inbox_url,
            "poll_interval": self.poll_interval,
        }

    def _resolved(self) -> tuple[str, float]:
        from airflow_provider_ion.triggers._reader import resolve_inbox_url, resolve_poll_interval

        return resolve_inbox_url(self.inbox_url), resolve_poll_interval(self.poll_interval)


def _require_partitioned_assets() -> None:
    """``per_event=True`` posts events with a ``partition_key``: partitioned assets came in Airflow 3.3
    (``airflow.sdk.PartitionedAssetTimetable``). Older releases would accept the trigger and never start a
    run, so refuse it where the DAG is parsed, saying what to do."""
    import airflow.sdk

    if not hasattr(airflow.sdk, "PartitionedAssetTimetable"):
        from airflow import __version__

        raise ValueError(
            f"IonWebhookTrigger(per_event=True) needs Airflow 3.3 or later (partitioned assets); this is "
            f"Airflow {__version__}. Upgrade Airflow, or drop per_event: the default mode runs the DAG for "
            "each batch of events, every event in some run."
        )


class IonWebhookTrigger(_FilterKwargs, BaseEventTrigger):
    """Fires for every ION webhook event in the inbox that matches; for ``AssetWatcher``.

    Example::

        runs_created = Asset("ion://runs/create", watchers=[AssetWatcher(
            name="ion_runs_created", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE"))])

        with DAG("on_new_run", schedule=[runs_created]):
            @task
            def handle(*, triggering_asset_events):
                for event in IonEvent.iter_triggering(triggering_asset_events):
                    print(event.event_id, event.data)

    A DAG run gets every asset event written up to when its asset's queue entry was created, so one run
    may carry several events: iterate them (``IonEvent.iter_triggering``). On Airflow < 3.4 an event written
    while that entry existed would wait for the next event; the trigger's stranded-event sweep (``_sweep``)
    re-queues the DAG after a burst. Use ``event_id`` to be idempotent (delivery is at least once).

    :param resource: ION resource name(s) (``RUNS``; a list means any), case-insensitive.
    :param action: ION action name(s) (``CREATE``, ``UPDATE``...), case-insensitive.
    :param receiver: only deliveries to this receiver (its name in the URL).
    :param match: ``{"data.runId": 7}``: dotted paths into the delivery body; see ``triggers.matching``.
    :param consumer: name of this trigger's cursor in the inbox. Default: ``ion-trigger-<hash of the filter>-<the
        Airflow trigger id>``: its own per Airflow trigger (two DAGs whose watchers have equal filters can be two
        Airflow triggers, and one's acknowledgement must not move the other's position), stable across
        re-parses, restarts and moves between triggerers. A default cursor seen for the first time starts
        where the filter-only cursor of earlier versions (``ion-trigger-<hash>``) stood, if there is one.
        Set ``consumer`` to keep the position when you change the filter.
    :param start_from: where a consumer seen for the first time starts: ``"latest"`` (default: only events
        that arrive from now on), ``"earliest"`` (everything still in the inbox), a ``datetime`` (events
        received from then) or a ``timedelta`` (received within that long before the first start). Ignored
        once the cursor exists (a pause or a restart resumes from the cursor). See the README.
    :param per_event: one DAG run per ION event (opt-in): instead of firing, the trigger posts each event to
        its asset through Airflow's REST API with ``partition_key`` = the ``event_id``; schedule the DAG with
        ``PartitionedAssetTimetable(assets=...)``. Airflow 3.3+: on an older release the trigger raises
        ``ValueError`` where the DAG is parsed. See the README ("One DAG run per ION event").
    :param inbox_url: default ``[ion_webhooks] inbox_url``, else
        ``$AIRFLOW_HOME/ion_inbox.db``. Resolved in the triggerer, never at parse time.
    :param poll_interval: seconds between inbox reads (SQLite; PostgreSQL is woken by NOTIFY). Default
        ``[ion_webhooks] poll_interval`` or 0.2.
    """

    #: Airflow < 3.3 (no ack mode): seconds between handing an event to Airflow and saving the cursor.
    standalone_commit_delay: float = 10.0

    def __init__(
        self,
        *,
        resource: str | Iterable[str] | None = None,
        action: str | Iterable[str] | None = None,
        receiver: str | None = None,
        match: Mapping[str, Any] | None = None,
        consumer: str | None = None,
        start_from: str | datetime.datetime | datetime.timedelta | float | None = None,
        per_event: bool = False,
        inbox_url: str | None = None,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self._init_filter(receiver, resource, action, match, inbox_url, poll_interval)
        self.consumer = consumer or None
        self.start_from = _normalize_start_from(start_from)
        self.per_event = bool(per_event)
        if self.per_event:
            _require_partitioned_assets()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs = {**self._filter_kwargs(), "consumer": self.consumer}
        if self.start_from != "latest":  # only when set: the serialized form of existing triggers is unchanged
            kwargs["start_from"] = self.start_from
        if self.per_event:
            kwargs["per_event"] = True
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    @property
    def filter_consumer_name(self) -> str:
        """The filter-only default cursor name of earlier versions (the base of :attr:`consumer_name`)."""
        return f"ion-trigger-{self.event_filter.fingerprint()}"

    @property
    def consumer_name(self) -> str:
        """The inbox cursor this trigger reads from and advances (see ``consumer``)."""
        if self.consumer:
            return self.consumer
        trigger_id = getattr(self, "trigger_id", None)  # set by the triggerer; None when run() is called directly
        return self.filter_consumer_name if trigger_id is None else f"{self.filter_consumer_name}-{trigger_id}"

    def _open_cursor(self, inbox: Any) -> int:
        """This trigger's cursor; a new one starts per ``start_from`` (or where the filter-only cursor stood)."""
        name = self.consumer_name
        existing = inbox.list_cursors()
        if name in existing:
            return existing[name]
        start: int | None
        if name != self.filter_consumer_name and self.filter_consumer_name in existing and not self.consumer:
            start = existing[self.filter_consumer_name]
        else:
            start = _start_seq(inbox, self.start_from)
            self.log.info(
                "ION inbox consumer %s is new: start_from=%r, starts after inbox seq %d (newest: %d); events up to "
                "it are not delivered to this trigger",
                name, self.start_from, start, inbox.latest_seq(),
            )  # fmt: skip
        return inbox.open_cursor(name, start)

    def _open_and_record(self, inbox: Any) -> int:
        """:meth:`_open_cursor`, then record this consumer's filter in the inbox (for the audit)."""
        cursor = self._open_cursor(inbox)
        record_consumer(self.log, inbox, self.consumer_name, "trigger", self.event_filter)
        return cursor

    # Airflow 3.3+ shared streams ----------------------------------------------------------------
    def shared_stream_key(self) -> Hashable | None:
        url, poll_interval = self._resolved()
        return (STREAM_KEY_PREFIX, url, poll_interval)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        from airflow_provider_ion.triggers._ack import IonInboxProducer

        trigger = cls(**kwargs)
        key = trigger.shared_stream_key()
        assert key is not None
        url, poll_interval = trigger._resolved()  # the key's parts
        return IonInboxProducer(key, url, poll_interval)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_ion.triggers._ack import Subscription, stream_state
        from airflow_provider_ion.triggers._reader import get_inbox

        key = self.shared_stream_key()
        url, _ = self._resolved()
        cursor = await _retrying(self._open_and_record, get_inbox(url))
        self.log.info("ION inbox consumer %s resumes after seq %d (%s)", self.consumer_name, cursor, url)
        sub = Subscription(consumer=self.consumer_name, cursor=cursor)
        state = stream_state(key)
        state.join(sub)
        delivery = _Delivery(self)
        delivery.check_names(f"IonWebhookTrigger {self.consumer_name}", get_inbox(url))
        delivery.keep_recorded(get_inbox(url), self.consumer_name)
        try:
            last = cursor
            async for raw in shared_stream:
                sub.last_index = raw.index
                if sub.served_gen is None or raw.gen < sub.served_gen:
                    continue  # read before our join was served: it comes again, in order
                event = raw.event
                if event.seq <= last:
                    continue
                last = event.seq
                raw.seen_by.add(sub)
                if delivery.matches(event):
                    if delivery.relay is not None:  # per-event: stored through the REST API before moving on
                        await delivery.relay_event(event)
                        continue
                    raw.fired_by.add(sub)
                    yield delivery.fire(event)
        finally:
            state.leave(sub)
            await delivery.close()

    # Standalone (Airflow < 3.3, or run() called directly) ----------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_ion.triggers._reader import get_inbox, get_reader

        url, poll_interval = self._resolved()
        inbox = get_inbox(url)
        consumer = self.consumer_name
        cursor = await _retrying(self._open_and_record, inbox)
        delivery = _Delivery(self)
        delivery.check_names(f"IonWebhookTrigger {consumer}", inbox)
        delivery.keep_recorded(inbox, consumer)
        waiter = get_reader(url, poll_interval).add_waiter(cursor, accept=delivery.matches)
        taken: list[tuple[float, int]] = []  # (monotonic time Airflow took it, seq up to which it is done)
        saved = cursor
        try:
            while True:
                item = await waiter.get(timeout=self.standalone_commit_delay)
                if item is not None:
                    events, upto = item
                    for event in events:
                        if delivery.relay is not None:
                            await delivery.relay_event(event)
                        else:
                            yield delivery.fire(event)
                        taken.append((time.monotonic(), event.seq))
                    taken.append((time.monotonic(), upto))
                due = time.monotonic() - self.standalone_commit_delay
                ready = [seq for at, seq in taken if at <= due]
                if ready and max(ready) > saved:
                    saved = max(ready)
                    await _retrying(inbox.set_cursor, consumer, saved)
                taken = [(at, seq) for at, seq in taken if at > due]
        finally:
            waiter.close()
            await delivery.close()


class _Delivery:
    """The one path from a matching inbox event to a TriggerEvent, driven by both the shared stream
    and ``run()``: the filter, the payload, and the stranded-event sweep (``_sweep``) that follows it."""

    def __init__(self, trigger: IonWebhookTrigger) -> None:
        from airflow_provider_ion import config

        self.event_filter = trigger.event_filter
        self.logger = trigger.log
        self._check: asyncio.Task | None = None
        self._record: asyncio.Task | None = None
        self.max_body_bytes = config.get_int("max_event_bytes_in_airflow")
        self.sweeper: Any = None
        self.relay: Any = None
        from airflow_provider_ion.triggers._sweep import PartitionRelay, StrandedEventSweeper, sweep_enabled

        trigger_id = getattr(trigger, "trigger_id", None)
        if trigger.per_event:
            self.relay = PartitionRelay(trigger_id)
        elif trigger_id is not None and sweep_enabled():  # no trigger id: run() outside a triggerer (tests)
            self.sweeper = StrandedEventSweeper(trigger_id, config.get_float("sweep_quiet_period"))
            self.sweeper.start()

    def check_names(self, who: str, inbox: Any) -> None:
        """In the background: a WARNING for each resource/action ION does not know (``triggers.names``)."""
        from airflow_provider_ion.triggers.names import warn_unknown

        async def check() -> None:
            try:
                await asyncio.to_thread(
                    warn_unknown, self.logger, who, self.event_filter.resources, self.event_filter.actions, inbox
                )
            except Exception as error:  # a check that cannot run is not the trigger's failure
                self.logger.debug("resource/action check skipped: %s", error)

        self._check = asyncio.get_running_loop().create_task(check())

    def keep_recorded(self, inbox: Any, consumer: str) -> None:
        """In the background: refresh this consumer's record in the inbox hourly (for the audit)."""
        task = _keep_recorded(self.logger, inbox, consumer, "trigger", self.event_filter)
        self._record = asyncio.get_running_loop().create_task(task)

    def matches(self, event: Any) -> bool:
        return self.event_filter.matches(event)

    async def relay_event(self, event: Any) -> None:
        await self.relay.relay(event_payload(event, self.max_body_bytes))

    def fire(self, event: Any) -> TriggerEvent:
        payload = event_payload(event, self.max_body_bytes)
        if self.sweeper is not None:
            self.sweeper.fired(payload)
        return TriggerEvent(payload)

    async def close(self) -> None:
        for task in (self._check, self._record):
            if task is not None and not task.done():
                task.cancel()
        if self.sweeper is not None:
            await self.sweeper.close()
        if self.relay is not None:
            await self.relay.close()


def _normalize_start_from(value: Any) -> Any:
    """``start_from`` in its serialized form: ``"latest"``, ``"earliest"``, an ISO datetime, or seconds (float)."""
    if value is None:
        return "latest"
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, datetime.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=datetime.UTC)).isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("latest", "earliest"):
            return text
        try:
            return _normalize_start_from(datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ValueError(f"start_from must be 'latest', 'earliest', a datetime or a timedelta, got {value!r}")


def _start_seq(inbox: Any, start_from: Any) -> int:
    """The seq after which a new consumer starts."""
    if start_from == "latest":
        return inbox.latest_seq()
    if start_from == "earliest":
        return 0
    if isinstance(start_from, float):
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=start_from)
    else:
        since = datetime.datetime.fromisoformat(start_from)
    return inbox.seq_at_or_after(since) - 1


def event_payload(event: Any, max_body_bytes: int) -> dict[str, Any]:
    """What a trigger fires for an inbox event (``InboxEvent.to_dict()``), without the body when the body is
    larger than ``max_body_bytes`` as JSON: it stays in the inbox (``IonEvent.body`` reads it there), so
    Airflow's metadata DB (``asset_event.extra``, which has no size limit) and the triggerer's log stay small."""
    import json

    from airflow_provider_ion.events import BODY_IN_INBOX

    payload = event.to_dict()
    size = len(json.dumps(payload["payload"], separators=(",", ":"), default=str))
    if max_body_bytes >= 0 and size > max_body_bytes:
        payload["payload"] = None
        payload[BODY_IN_INBOX] = True
        payload["body_bytes"] = size
    return payload


async def _retrying(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a thread; retried with back-off while the inbox is unavailable (``InboxUnavailable``:
    storage down delays a trigger, never fails it). Any other error is a bug or bad input and propagates."""
    from airflow_provider_ion.triggers._reader import ERROR_BACKOFF, log
    from airflow_provider_ion.webhooks.inbox import InboxUnavailable

    failures = 0
    while True:
        try:
            return await asyncio.to_thread(fn, *args)
        except InboxUnavailable as error:
            delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
            failures += 1
            log.warning("ION inbox unavailable (retrying in %.1fs): %s", delay, error)
            await asyncio.sleep(delay)


class IonWebhookWaitTrigger(_FilterKwargs, BaseTrigger):
    """Fires once, with the first matching event whose seq is greater than ``after_seq``; for deferred tasks.

    Not an event trigger: it holds no cursor. Restarted by a triggerer restart, it reads again from
    ``after_seq`` and finds the same first event, so the task always resumes with the first match.

    Example (what :class:`~airflow_provider_ion.sensors.webhook.IonWebhookSensor` does)::

        self.defer(trigger=IonWebhookWaitTrigger(resource="ISSUES", action="CREATE",
                                                 match={"data.runId": "7"}, after_seq=1234),
                   method_name="execute_complete")
    """

    def __init__(
        self,
        *,
        after_seq: int,
        resource: str | Iterable[str] | None = None,
        action: str | Iterable[str] | None = None,
        receiver: str | None = None,
        match: Mapping[str, Any] | None = None,
        inbox_url: str | None = None,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self._init_filter(receiver, resource, action, match, inbox_url, poll_interval)
        self.after_seq = int(after_seq)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            **self._filter_kwargs(),
            "after_seq": self.after_seq,
        }

    @property
    def consumer_name(self) -> str:
        """The name this wait records in the inbox's consumers record (it holds no cursor)."""
        return sensor_consumer_name(self.event_filter)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_ion.triggers._reader import get_inbox, get_reader

        url, poll_interval = self._resolved()
        inbox = get_inbox(url)
        await asyncio.to_thread(record_consumer, self.log, inbox, self.consumer_name, "sensor", self.event_filter)
        waiter = get_reader(url, poll_interval).add_waiter(self.after_seq, accept=self.event_filter.matches)
        recording = asyncio.get_running_loop().create_task(
            _keep_recorded(self.log, inbox, self.consumer_name, "sensor", self.event_filter)
        )
        try:
            while True:
                events, _upto = await waiter.get()
                if events:
                    from airflow_provider_ion import config

                    yield TriggerEvent(event_payload(events[0], config.get_int("max_event_bytes_in_airflow")))
                    return
        finally:
            recording.cancel()
            waiter.close()
