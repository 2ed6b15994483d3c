"""Wait in a task for an ION webhook event (deferred or poking, per ``[operators] default_deferrable``) and return it.

Imported by DAG files at parse time: no SQLAlchemy, httpx or gql at import (the inbox is imported when
the task runs).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from airflow_provider_ion.config import airflow_conf
from airflow_provider_ion.triggers.matching import EventFilter
from airflow_provider_ion.triggers.webhook import IonWebhookWaitTrigger, record_consumer, sensor_consumer_name

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["IonWebhookSensor"]

#: Events read per inbox query when looking for a match.
_PAGE = 500


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` (False when unset), as Airflow's own deferrable operators default."""
    conf = airflow_conf()
    return bool(conf is not None and conf.getboolean("operators", "default_deferrable", fallback=False))


class IonWebhookSensor(BaseSensorOperator):
    """Wait for an ION webhook event that matches; return it (XCom ``return_value``).

    The returned value is ``InboxEvent.to_dict()``: ``event_id``, ``receiver``, ``resource``,
    ``action``, ``payload`` (the delivery body), ``seq``, ``subscription_id``, ``received_at``.

    Example::

        IonWebhookSensor(task_id="wait_for_issue", resource="ISSUES", action="CREATE",
                         match={"data.runId": "{{ params.run_id }}"}, timeout=3600)

    Events are looked for from the DAG run's start (the earlier of its ``run_after``, when it was
    triggered or became due, and its ``start_date``), so an event that arrived after the run was
    triggered but before this task ran is not missed. ``since`` changes
    that: a datetime (or ISO 8601 string), a ``timedelta`` back from now, an ``int`` inbox seq (events
    after it), or ``"now"`` (only events from the moment the task starts).

    Deferrable or not per Airflow's ``[operators] default_deferrable`` (False unless set), as the official
    providers' sensors are. Deferred, the task frees its worker slot and a trigger in the triggerer waits (one
    shared inbox reader per triggerer, filters applied there). With ``deferrable=False`` it pokes the
    inbox every ``poke_interval`` (one read per poke, from where the previous poke stopped).
    ``timeout``, ``soft_fail``, ``mode`` behave as for any Airflow sensor.

    :param resource: ION resource name(s) (``ISSUES``; a list means any), case-insensitive.
    :param action: ION action name(s), case-insensitive.
    :param receiver: only deliveries to this receiver.
    :param match: ``{"data.runId": "{{ params.run_id }}"}``: dotted paths into the delivery body,
        equality, a list means any of; ``"7"`` matches ``7`` (see ``airflow_provider_ion.triggers.matching``).
    :param since: where to start looking (see above); templated.
    :param inbox_url: default ``[ion_webhooks] inbox_url``, else
        ``$AIRFLOW_HOME/ion_inbox.db``.
    :param poll_interval: the trigger's inbox read interval (default ``[ion_webhooks] poll_interval``/0.2 s).
    :param deferrable: wait in the triggerer rather than in a worker slot (default: ``[operators]
        default_deferrable``).
    """

    template_fields: Sequence[str] = ("receiver", "resource", "action", "match", "since", "inbox_url")
    ui_color = "#d9f0ff"

    def __init__(
        self,
        *,
        resource: str | Iterable[str] | None = None,
        action: str | Iterable[str] | None = None,
        receiver: str | None = None,
        match: Mapping[str, Any] | None = None,
        since: datetime.datetime | datetime.timedelta | str | int | None = None,
        inbox_url: str | None = None,
        poll_interval: float | None = None,
        # The official providers' convention (e.g. airflow/providers/http/sensors/http.py): the sensor has a
        # working poke path (poke() below), so Airflow's setting decides.
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resource = resource
        self.action = action
        self.receiver = receiver
        self.match = dict(match or {})
        self.since = since
        self.inbox_url = inbox_url
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._position: int | None = None

    # helpers --------------------------------------------------------------------------------------
    def _filter(self) -> EventFilter:
        return EventFilter.build(receiver=self.receiver, resource=self.resource, action=self.action, match=self.match)

    def _inbox(self) -> Any:
        from airflow_provider_ion.triggers._reader import get_inbox, resolve_inbox_url

        return get_inbox(resolve_inbox_url(self.inbox_url))

    def start_seq(self, context: Context) -> int:
        """The seq after which events count (see ``since``)."""
        inbox = self._inbox()
        since = self.since
        if isinstance(since, bool):
            raise TypeError("since must be a datetime, timedelta, ISO string, int seq or 'now'")
        if isinstance(since, int):
            return since
        if isinstance(since, str):
            text = since.strip()
            if text.lower() == "now":
                return inbox.latest_seq()
            if text.lstrip("-").isdigit():
                return int(text)
            since = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if isinstance(since, datetime.timedelta):
            since = datetime.datetime.now(datetime.UTC) - since
        if since is None:
            # When the run was created or became due (run_after), or started, whichever came first: a run
            # queued behind others starts later, and an event in between must still count.
            dag_run = context.get("dag_run")
            moments = [m for m in (getattr(dag_run, n, None) for n in ("run_after", "start_date")) if m is not None]
            since = min(moments) if moments else datetime.datetime.now(datetime.UTC)
        return inbox.seq_at_or_after(since) - 1

    def _find(self, after: int) -> tuple[dict[str, Any] | None, int]:
        """First match after ``after`` (paging through the inbox) and the seq read up to.

        Only the receiver is filtered in SQL: the inbox compares names exactly while ``EventFilter`` compares
        resource and action case-insensitively (a body's ``runs`` must match ``RUNS``), so those are
        filtered here, with the rest of the filter.
        """
        from airflow_provider_ion import config
        from airflow_provider_ion.triggers.webhook import event_payload

        inbox, event_filter = self._inbox(), self._filter()
        while True:
            events = inbox.read_after(after, limit=_PAGE, receiver=event_filter.receiver)
            for event in events:
                if event_filter.matches(event):
                    return event_payload(event, config.get_int("max_event_bytes_in_airflow")), event.seq
            if events:
                after = events[-1].seq
            if len(events) < _PAGE:
                return None, after

    def _trigger(self, after: int) -> IonWebhookWaitTrigger:
        return IonWebhookWaitTrigger(
            after_seq=after,
            receiver=self.receiver,
            resource=self.resource,
            action=self.action,
            match=self.match,
            inbox_url=self.inbox_url,
            poll_interval=self.poll_interval,
        )

    # execution ------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        from airflow_provider_ion.triggers.names import warn_unknown

        event_filter = self._filter()  # a bad match path fails now, not in the triggerer
        try:
            warn_unknown(self.log, self.task_id, event_filter.resources, event_filter.actions, self._inbox())
        except Exception as error:  # a check that cannot run is not the task's failure
            self.log.debug("resource/action check skipped: %s", error)
        record_consumer(self.log, self._inbox(), sensor_consumer_name(event_filter), "sensor", event_filter)
        after = self.start_seq(context)
        if not self.deferrable:
            self._position = after
            return super().execute(context)
        found, _ = self._find(after)  # already there? no need to defer
        if found is not None:
            self.log.info("ION event %s already in the inbox", found["event_id"])
            return found
        self.log.info("Deferring: waiting for an ION event after inbox seq %d", after)
        self.defer(
            trigger=self._trigger(after),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume from the trigger: the event is the task's return value.

        Resumed without an event (Airflow's convention for a trigger that ended without one): raises, so the
        task fails (or is retried) instead of succeeding with nothing.
        """
        if not event:
            raise AirflowException(
                f"{self.task_id}: resumed from the trigger without an ION event; nothing to return (retry the task)"
            )
        self.log.info("ION event %s (%s/%s)", event.get("event_id"), event.get("resource"), event.get("action"))
        return event

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self._position is None:
            self._position = self.start_seq(context)
        found, self._position = self._find(self._position)
        if found is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=found)
