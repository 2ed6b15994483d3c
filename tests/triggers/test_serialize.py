"""serialize() must round-trip exactly: Airflow hashes event-trigger kwargs, and an unstable round trip
would recreate the asset watcher's trigger (and reset nothing but churn) on every DAG parse."""

from __future__ import annotations

import subprocess
import sys

import pytest
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_ion.triggers.webhook import IonWebhookTrigger, IonWebhookWaitTrigger

CASES = [
    {},
    {"resource": "RUNS", "action": "CREATE"},
    {"resource": ["runs", "ISSUES"], "action": ("update", "create"), "receiver": "factory"},
    {"match": {"data.runId": 7, "a.b": ["x", 2, None], "z": {"nested": True}}, "poll_interval": 1},
    {"consumer": "my-consumer", "inbox_url": "postgresql+psycopg://u@db/ion", "match": {"s": {"b", "a"}}},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_event_trigger_round_trip_and_hash(kwargs) -> None:
    classpath, first = IonWebhookTrigger(**kwargs).serialize()
    assert classpath == "airflow_provider_ion.triggers.webhook.IonWebhookTrigger"
    again = IonWebhookTrigger(**first).serialize()
    assert again == (classpath, first)
    assert BaseEventTrigger.hash(classpath, first) == BaseEventTrigger.hash(*again)


def test_equivalent_spellings_serialize_the_same() -> None:
    a = IonWebhookTrigger(resource=["runs", "ISSUES"], action="create", match={"b": 1, "a": 2}).serialize()
    b = IonWebhookTrigger(resource=("ISSUES", "RUNS"), action=["CREATE"], match={"a": 2, "b": 1}).serialize()
    assert a == b
    assert BaseEventTrigger.hash(*a) == BaseEventTrigger.hash(*b)


def test_consumer_name_is_stable_across_processes() -> None:
    code = ("from airflow_provider_ion.triggers.webhook import IonWebhookTrigger as T;"
            "print(T(resource='RUNS', action='CREATE', match={'data.x': 1}).consumer_name)")  # fmt: skip
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=120).stdout.split()[-1] for _ in range(2)}  # fmt: skip
    assert names == {IonWebhookTrigger(resource="RUNS", action="CREATE", match={"data.x": 1}).consumer_name}
    assert IonWebhookTrigger(consumer="mine").consumer_name == "mine"


def test_wait_trigger_round_trip() -> None:
    classpath, kwargs = IonWebhookWaitTrigger(after_seq=12, resource="issues", match={"data.runId": "7"}).serialize()
    assert kwargs["after_seq"] == 12 and kwargs["resource"] == ["ISSUES"]
    assert IonWebhookWaitTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert not isinstance(IonWebhookWaitTrigger(after_seq=0), BaseEventTrigger)  # a plain trigger


def test_asset_watcher_serializes_the_trigger_stably() -> None:
    from airflow.sdk import Asset, AssetWatcher
    from airflow.serialization.serialized_objects import BaseSerialization

    def encoded():
        trigger = IonWebhookTrigger(resource="RUNS", action="CREATE", match={"data.runId": [1, "2"]})
        asset = Asset("ion://runs/create", watchers=[AssetWatcher(name="w", trigger=trigger)])
        return BaseSerialization.serialize(asset)

    assert encoded() == encoded()
