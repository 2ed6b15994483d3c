"""``IonEvent``: one ION webhook event as DAG code sees it, whichever way it arrived.

Built from an asset event fired by :class:`~airflow_provider_ion.triggers.webhook.IonWebhookTrigger`
(``IonEvent.from_asset_event``), from what :class:`~airflow_provider_ion.sensors.webhook.IonWebhookSensor`
returned (``IonEvent.from_sensor_result``) or from a trigger payload (``IonEvent.from_payload``); and for
a whole DAG run, ``IonEvent.iter_triggering(triggering_asset_events)``.

Example::

    @task
    def handle(*, triggering_asset_events=None):
        for event in IonEvent.iter_triggering(triggering_asset_events):
            print(event.event_id, event.resource, event.action, event.data["id"])

Large bodies stay out of Airflow's metadata DB: when a delivery body is larger than ``[ion_webhooks]
max_event_bytes_in_airflow``, the trigger fires the event without its body and ``IonEvent.body`` /
``IonEvent.data`` read it from the inbox (``Inbox.get(receiver, event_id)``) on first access.

Imported by DAG files at parse time: nothing heavy at import (the inbox is imported when a body is read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["IonEvent"]

#: Marks, in a trigger payload, an event whose body was left in the inbox (too large for Airflow's DB).
BODY_IN_INBOX = "body_in_inbox"
_MISSING = object()


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _extra(asset_event: Any) -> Mapping[str, Any]:
    extra = asset_event.get("extra") if isinstance(asset_event, Mapping) else getattr(asset_event, "extra", None)
    return extra if isinstance(extra, Mapping) else {}


@dataclass(frozen=True)
class IonEvent:
    """One ION webhook event.

    :ivar event_id: the id as ION sent it in the body (an integer in ION's published example).
    :ivar event_id_text: the same id as text (the inbox's key with ``receiver``).
    :ivar receiver: the receiver name the delivery arrived at.
    :ivar resource: ION's resource name (``RUNS``); ``action``: ``CREATE``, ``UPDATE``...
    :ivar subscription_id: ION's subscription id, as sent.
    :ivar created_at: the body's own timestamp (``created_at``/``createdAt``/``timestamp``) if it has one,
        else when the receiver stored the delivery (``received_at``).
    :ivar seq: the inbox sequence number.
    :ivar sweep: true for the repeat the stranded-event sweep adds to a run (``iter_triggering`` skips it).
    :ivar inbox_url: where ``body`` reads a body left in the inbox; default ``[ion_webhooks] inbox_url``.

    Example::

        event = IonEvent.from_sensor_result(ti.xcom_pull(task_ids="wait_for_issue"))
        if event.resource == "ISSUES":
            create_ncr(event.data["id"], idempotency_key=event.event_id_text)
    """

    event_id: Any
    event_id_text: str
    receiver: str
    resource: str | None
    action: str | None
    subscription_id: Any
    created_at: datetime | None
    received_at: datetime | None
    seq: int | None
    sweep: bool = False
    inbox_url: str | None = None
    _body: Any = field(default=_MISSING, repr=False, compare=False)
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # construction ----------------------------------------------------------------------------------
    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, sweep: bool = False) -> IonEvent:
        """From a trigger payload / sensor result (``InboxEvent.to_dict()`` form)."""
        if not isinstance(payload, Mapping) or "event_id" not in payload or "receiver" not in payload:
            raise ValueError(
                "not an ION event: expected the dict an IonWebhookTrigger or IonWebhookSensor produces "
                f"(with event_id and receiver), got {type(payload).__name__}"
            )
        body = payload.get("payload")
        in_inbox = bool(payload.get(BODY_IN_INBOX))
        sent = body if isinstance(body, Mapping) else {}
        as_sent = sent.get("event_id", payload["event_id"])
        stamp = None
        if isinstance(body, Mapping):
            stamp = next((body[k] for k in ("created_at", "createdAt", "timestamp") if k in body), None)
        received = _parse_time(payload.get("received_at"))
        return cls(
            event_id=as_sent,
            event_id_text=str(payload["event_id"]),
            receiver=str(payload["receiver"]),
            resource=payload.get("resource"),
            action=payload.get("action"),
            subscription_id=sent.get("subscription_id", payload.get("subscription_id")),
            created_at=_parse_time(stamp) or received,
            received_at=received,
            seq=payload.get("seq"),
            sweep=sweep,
            _body=_MISSING if in_inbox else body,
        )

    @classmethod
    def from_sensor_result(cls, result: Mapping[str, Any]) -> IonEvent:
        """From what ``IonWebhookSensor`` returned (its XCom ``return_value``)."""
        return cls.from_payload(result)

    @classmethod
    def from_asset_event(cls, asset_event: Any) -> IonEvent:
        """From an asset event fired by ``IonWebhookTrigger`` (``extra["payload"]`` is the event)."""
        extra = _extra(asset_event)
        payload = extra.get("payload")
        if not isinstance(payload, Mapping):
            raise ValueError(
                "this asset event was not fired by an IonWebhookTrigger (its extra has no 'payload' dict); "
                "use IonEvent.iter_triggering(), which skips such events"
            )
        return cls.from_payload(payload, sweep=bool(extra.get("ion_sweep")))

    @classmethod
    def iter_triggering(cls, triggering: Any, asset: Any = None) -> Iterator[IonEvent]:
        """Every distinct ION event of a DAG run, oldest first.

        ``triggering`` is the run's ``triggering_asset_events`` (or the task context holding it). Asset
        events that carry no ION event are skipped, and so are repeats of one ``(receiver, event_id)`` in
        the run (the sweep's repeat, or a redelivery after a triggerer crash). ``asset`` limits it to one asset.
        """
        # the task context is a plain dict; Airflow's accessor is a Mapping keyed by assets (a str key raises)
        if isinstance(triggering, dict) and "triggering_asset_events" in triggering:
            triggering = triggering["triggering_asset_events"]
        if triggering is None:
            return
        if asset is not None:
            groups: Iterable[Any] = [triggering[asset]]
        else:
            groups = triggering.values() if hasattr(triggering, "values") else [triggering]
        seen: set[tuple[str, str]] = set()
        events = []
        for group in groups:
            for asset_event in group:
                payload = _extra(asset_event).get("payload")
                if not isinstance(payload, Mapping) or "event_id" not in payload or "receiver" not in payload:
                    continue
                event = cls.from_asset_event(asset_event)
                key = (event.receiver, event.event_id_text)
                if key in seen:
                    continue
                seen.add(key)
                events.append(event)
        events.sort(key=lambda e: (e.seq is None, e.seq or 0))
        yield from events

    # the body --------------------------------------------------------------------------------------
    @property
    def body_in_inbox(self) -> bool:
        """The body was too large to travel through Airflow: ``body`` reads it from the inbox."""
        return self._body is _MISSING

    @property
    def body(self) -> dict[str, Any]:
        """The whole delivery body (read from the inbox on first access when it was left there)."""
        if self._body is not _MISSING:
            return self._body
        if "body" not in self._loaded:
            from airflow_provider_ion.triggers._reader import get_inbox, resolve_inbox_url

            stored = get_inbox(resolve_inbox_url(self.inbox_url)).get(self.receiver, self.event_id_text)
            if stored is None:
                raise LookupError(
                    f"ION event {self.event_id_text} of receiver {self.receiver!r} is no longer in the inbox "
                    "(purged after its retention); its body cannot be read"
                )
            self._loaded["body"] = stored.payload
        return self._loaded["body"]

    @property
    def data(self) -> Any:
        """The body's ``data`` (the ION object), or ``None``."""
        body = self.body
        return body.get("data") if isinstance(body, Mapping) else None
