"""Consumers (triggers, sensors) against ION's subscriptions: the pure checks, then the audit in a DAG run
against the emulator with a real SQLite inbox that a real trigger and a real sensor recorded themselves in."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_ion.operators.audit_checks import FINDING_CODES, AuditSnapshot, audit_findings, consumer_findings
from tests.operators.test_audit import audit, by_code, receiver, subscribe

RECEIVERS = [
    {"id": "1", "name": "factory", "active": True},
    {"id": "2", "name": "sleepy", "active": False},
    {"id": "3", "name": "erp", "active": True},
]


def sub(sid: str, rid: str, resource: str, action: str, active: bool = True) -> dict[str, Any]:
    return {"id": sid, "receiverId": rid, "resource": resource, "action": action, "active": active}


def consumer(name: str, receiver: str | None, resources: list[str] | None, actions: list[str] | None) -> dict:
    return {"consumer": name, "kind": "trigger", "receiver": receiver, "resources": resources, "actions": actions}


def codes(findings) -> list[tuple[str, Any]]:
    return [(f.code, f.object.get("name") or f.object.get("id")) for f in findings]


# --- the pure checks -----------------------------------------------------------------------------
def test_run_and_runs_compare_equal_both_ways() -> None:
    subs = [sub("10", "1", "RUN", "CREATE")]
    found = consumer_findings([consumer("t", "factory", ["RUNS"], ["create"])], RECEIVERS, subs, ["factory"])
    assert found == []


def test_a_consumer_no_active_subscription_feeds_is_a_warning_naming_the_missing_pairs() -> None:
    subs = [
        sub("10", "1", "RUNS", "CREATE"),
        sub("11", "1", "ISSUES", "CREATE", active=False),  # inactive: delivers nothing
        sub("12", "2", "ISSUES", "CREATE"),  # active, but on a disabled receiver
        sub("13", "3", "ISSUES", "UPDATE"),  # another receiver than the one the consumer names
    ]
    found = consumer_findings(
        [consumer("t", "factory", ["ISSUES", "RUNS"], ["CREATE", "UPDATE"])], RECEIVERS, subs, ["factory"]
    )
    assert codes(found) == [("consumer_without_subscription", "t")]
    (finding,) = found
    assert finding.severity == "warning" == FINDING_CODES[finding.code][0]
    assert finding.object["missing"] == ["ISSUES/CREATE", "ISSUES/UPDATE", "RUNS/UPDATE"]
    assert "Subscribe receiver 'factory' to ISSUES/CREATE" in finding.fix and "RUNS compare equal" in finding.fix


def test_a_consumer_without_receiver_or_resource_takes_any() -> None:
    subs = [sub("10", "3", "PARTS", "DELETE")]
    assert consumer_findings([consumer("any", None, None, None)], RECEIVERS, subs, ["erp"]) == []
    found = consumer_findings([consumer("upd", None, None, ["UPDATE"])], RECEIVERS, subs, ["erp"])
    assert [(f.code, f.object.get("missing") or f.object.get("id")) for f in found] == [
        ("consumer_without_subscription", ["*/UPDATE"]),
        ("subscription_without_consumer", "10"),
    ]


def test_a_subscription_no_consumer_takes_is_info_only_for_receivers_the_inbox_serves() -> None:
    subs = [
        sub("10", "1", "RUNS", "CREATE"),
        sub("11", "1", "ISSUES", "CREATE"),
        sub("12", "3", "PARTS", "CREATE"),  # erp: no event in this inbox and no consumer names it
        sub("13", "1", "PARTS", "CREATE", active=False),
    ]
    found = consumer_findings([consumer("t", "factory", ["RUN"], ["CREATE"])], RECEIVERS, subs, ["factory"])
    assert codes(found) == [("subscription_without_consumer", "11")]
    (finding,) = found
    assert finding.severity == "info" == FINDING_CODES[finding.code][0]
    assert finding.object["receiver_name"] == "factory" and "IonDisableWebhookSubscriptionOperator" in finding.fix
    # a receiver is served when a consumer names it, even with no event yet (names compare case-insensitively)
    found = consumer_findings([consumer("t", "ERP", ["ISSUES"], None)], RECEIVERS, subs, [])
    assert codes(found) == [("consumer_without_subscription", "t"), ("subscription_without_consumer", "12")]


def test_audit_findings_runs_the_consumer_checks_only_when_the_consumers_were_read() -> None:
    subs = [sub("10", "1", "RUNS", "CREATE")]
    inbox = {"checked": True, "by_receiver": {"factory": 3}}
    receivers = [{**RECEIVERS[0], "webhookUri": "https://airflow.example.com/hook"}]
    unread = AuditSnapshot(receivers=receivers, subscriptions=subs, failing_events=[], inbox=inbox)
    assert audit_findings(unread) == []
    read = AuditSnapshot(receivers=receivers, subscriptions=subs, failing_events=[], inbox=inbox, consumers=[])
    assert codes(audit_findings(read)) == [("subscription_without_consumer", "10")]


# --- the audit against the emulator and a real inbox ---------------------------------------------
async def _run_trigger_until_recorded(trigger, inbox, name: str) -> None:
    async def run() -> None:
        async for _ in trigger.run():
            pass

    task = asyncio.create_task(run())
    try:
        for _ in range(200):
            if any(c.consumer == name for c in inbox.consumers()):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the trigger never recorded consumer {name}")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.usefixtures("airflow_db", "ion_default_conn")
def test_audit_reports_consumers_and_subscriptions_that_do_not_meet(emulator, tmp_path) -> None:
    from airflow_provider_ion.sensors.webhook import IonWebhookSensor
    from airflow_provider_ion.triggers import _reader
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

    factory = receiver(emulator, "factory")
    runs = subscribe(emulator, factory, "RUNS/CREATE")  # the trigger and the sensor say RUN
    unread = subscribe(emulator, factory, "PARTS/UPDATE")
    subscribe(emulator, factory, "ISSUES/CREATE", active=False)
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    inbox = _reader.get_inbox(url)
    inbox.append("factory", "e1", {"event_id": "e1", "resource": "RUNS", "action": "CREATE"})

    fed = IonWebhookTrigger(resource="RUN", action="CREATE", receiver="factory", inbox_url=url, poll_interval=0.05)
    starved = IonWebhookTrigger(resource="ISSUES", action="CREATE", inbox_url=url, poll_interval=0.05)
    asyncio.run(_run_trigger_until_recorded(fed, inbox, fed.consumer_name))
    asyncio.run(_run_trigger_until_recorded(starved, inbox, starved.consumer_name))
    sensor = IonWebhookSensor(task_id="s", resource="RUN", action="CREATE", inbox_url=url, deferrable=False)
    assert sensor.execute({"dag_run": SimpleNamespace(start_date=datetime.now(UTC) - timedelta(hours=1))})
    # gone for longer than the audit's window: not a consumer any more
    inbox.record_consumer("retired", kind="trigger", receiver="factory", resources=["WIDGETS"], actions=None)
    old = datetime.now(UTC) - timedelta(days=30)
    with inbox.engine.begin() as conn:
        table = inbox.tables.consumers
        conn.execute(table.update().where(table.c.consumer == "retired").values(last_seen=old))

    recorded = {c.consumer: c for c in inbox.consumers()}
    assert recorded[fed.consumer_name].kind == "trigger" and recorded[fed.consumer_name].resources == ("RUN",)
    assert any(c.kind == "sensor" and c.resources == ("RUN",) for c in recorded.values())

    result = audit(fail_on="never", check_inbox=True, inbox_url=url, consumer_window_days=7)
    assert result["audit"].state == "success"
    report = result["audit"].xcom
    found = by_code(report)
    starving = found["consumer_without_subscription"]
    assert [(f["object"]["name"], f["object"]["missing"], f["severity"]) for f in starving] == [
        (starved.consumer_name, ["ISSUES/CREATE"], "warning")
    ]
    idle = found["subscription_without_consumer"]
    assert [(f["object"]["id"], f["severity"]) for f in idle] == [(str(unread["id"]), "info")]
    assert str(runs["id"]) not in {f["object"].get("id") for f in report["findings"]}
    assert report["inbox"]["recorded_consumers"] == 3  # fed, starved, the sensor; not "retired"
