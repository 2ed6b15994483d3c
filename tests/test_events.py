"""IonEvent from trigger payloads, asset events and sensor results; large bodies stay in the inbox."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from airflow_provider_ion.events import IonEvent
from airflow_provider_ion.triggers import _sweep
from airflow_provider_ion.triggers.webhook import event_payload
from airflow_provider_ion.webhooks.inbox import Inbox


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/inbox.db"
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", url)
    with Inbox(url) as inbox:
        yield inbox


def _store(inbox: Inbox, event_id, data, **extra) -> object:
    body = {"event_id": event_id, "subscription_id": 42, "resource": "RUNS", "action": "CREATE", "data": data, **extra}
    inbox.append("factory", str(event_id), body, resource="RUNS", action="CREATE", subscription_id=42)
    return inbox.get("factory", str(event_id))


def test_from_an_asset_event_the_dag_reads_fields_not_nested_dicts(inbox) -> None:
    stored = _store(inbox, 123456, {"id": 7, "serial": "SN-1"}, created_at="2026-05-01T10:00:00Z")
    asset_event = SimpleNamespace(extra={"from_trigger": True, "payload": event_payload(stored, 16384)})
    event = IonEvent.from_asset_event(asset_event)
    assert event.event_id == 123456 and event.event_id_text == "123456"  # as ION sent it, and as text
    assert (event.receiver, event.resource, event.action, event.subscription_id) == ("factory", "RUNS", "CREATE", 42)
    assert event.data == {"id": 7, "serial": "SN-1"}
    assert event.body["event_id"] == 123456
    assert event.created_at.isoformat() == "2026-05-01T10:00:00+00:00"
    assert event.seq == stored.seq and not event.body_in_inbox and not event.sweep


def test_a_large_body_stays_in_the_inbox_and_is_read_when_asked(inbox) -> None:
    stored = _store(inbox, "big-1", {"blob": "x" * 5000})
    payload = event_payload(stored, 1000)
    assert payload["payload"] is None and payload["body_in_inbox"] is True
    assert len(json.dumps(payload)) < 1000  # what Airflow would store in asset_event.extra
    event = IonEvent.from_payload(payload)
    assert event.body_in_inbox
    assert event.data == {"blob": "x" * 5000}  # read from the inbox
    assert event_payload(stored, -1)["payload"]["data"] == {"blob": "x" * 5000}  # -1: no limit


def test_iter_triggering_dedups_repeats_and_skips_foreign_asset_events(inbox) -> None:
    a = event_payload(_store(inbox, 1, {"n": 1}), 16384)
    b = event_payload(_store(inbox, 2, {"n": 2}), 16384)
    events = {
        "ion://runs": [
            SimpleNamespace(extra={"payload": b}),
            SimpleNamespace(extra={"payload": a}),
            SimpleNamespace(extra={"payload": b, "ion_sweep": {"stranded": ["d"]}}),  # the sweep's repeat
            SimpleNamespace(extra={"from_rest_api": True}),  # not an ION event
        ]
    }
    got = list(IonEvent.iter_triggering(events))
    assert [e.event_id for e in got] == [1, 2]
    assert [e.event_id for e in IonEvent.iter_triggering({"triggering_asset_events": events})] == [1, 2]
    assert list(IonEvent.iter_triggering(None)) == []


def test_from_sensor_result_and_bad_input(inbox) -> None:
    result = event_payload(_store(inbox, 9, {"runId": 3}), 16384)
    assert IonEvent.from_sensor_result(result).data == {"runId": 3}
    with pytest.raises(ValueError, match="not an ION event"):
        IonEvent.from_payload({"foo": 1})
    with pytest.raises(ValueError, match="not fired by an IonWebhookTrigger"):
        IonEvent.from_asset_event({"extra": {"from_rest_api": True}})


def test_a_purged_body_is_a_clear_error(inbox) -> None:
    payload = event_payload(_store(inbox, "gone", {"blob": "y" * 3000}), 100)
    payload["event_id"] = "never-stored"
    with pytest.raises(LookupError, match="no longer in the inbox"):
        _ = IonEvent.from_payload(payload).body


def test_sweep_switches_itself_off_on_a_fixed_airflow(monkeypatch) -> None:
    import airflow

    monkeypatch.setattr(airflow, "__version__", "3.3.2")
    assert _sweep.sweep_enabled()
    monkeypatch.setattr(airflow, "__version__", "3.4.0")
    assert not _sweep.sweep_enabled()
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__STRANDED_EVENT_SWEEP", "on")
    assert _sweep.sweep_enabled()
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__STRANDED_EVENT_SWEEP", "sometimes")
    with pytest.raises(ValueError, match="auto, on or off"):
        _sweep.sweep_enabled()


def test_iter_triggering_takes_airflows_accessor(inbox) -> None:
    """What a task really gets: ``TriggeringAssetEventsAccessor`` (keyed by assets; a str key raises)."""
    from datetime import UTC, datetime

    from airflow.sdk import Asset
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    payload = event_payload(_store(inbox, 5, {"n": 5}), 16384)
    asset = Asset("ion://runs/create")
    fields = dict(
        asset={"name": asset.name, "uri": asset.uri, "extra": {}},
        extra={"from_trigger": True, "payload": payload},
        source_task_id=None, source_dag_id=None, source_run_id=None, source_map_index=-1,
        source_aliases=[], timestamp=datetime.now(UTC), partition_key=None,
    )  # fmt: skip
    # partition_key exists from Airflow 3.3 (partitioned assets); 3.1's model forbids unknown fields.
    known = AssetEventDagRunReferenceResult.model_fields
    ref = AssetEventDagRunReferenceResult(**{k: v for k, v in fields.items() if k in known})
    accessor = TriggeringAssetEventsAccessor.build([ref])
    assert [e.event_id for e in IonEvent.iter_triggering(accessor)] == [5]
    assert [e.event_id for e in IonEvent.iter_triggering(accessor, asset)] == [5]
    assert [e.event_id for e in IonEvent.iter_triggering({"triggering_asset_events": accessor})] == [5]
