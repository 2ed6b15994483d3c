"""IonWebhookSensor in real DAG runs (``dag.test()``: deferred triggers run inline) on a real SQLite inbox."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from airflow_provider_ion.sensors.webhook import IonWebhookSensor
from airflow_provider_ion.triggers.webhook import IonWebhookWaitTrigger
from airflow_provider_ion.webhooks.inbox import Inbox
from tests.dag_runner import run_dag_source

IMPORTS = "from airflow_provider_ion.sensors.webhook import IonWebhookSensor"


@pytest.fixture
def inbox(tmp_path):
    inbox = Inbox(f"sqlite:///{tmp_path}/inbox.db")
    inbox.latest_seq()
    yield inbox
    inbox.close()


def _url(inbox: Inbox) -> str:
    return inbox.engine.url.render_as_string(hide_password=False)


def append(inbox: Inbox, event_id: str, resource: str = "ISSUES", action: str = "CREATE", **data) -> int:
    body = {"event_id": event_id, "resource": resource, "action": action, "data": data}
    return inbox.append("factory", event_id, body).seq


def later(delay: float, fn, *args, **kwargs) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread


def sensor_body(inbox: Inbox, **kwargs) -> str:
    settings = {"inbox_url": _url(inbox), "poll_interval": 0.05, "deferrable": True, **kwargs}
    args = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return f"    IonWebhookSensor(task_id='wait', {args})\n"


def test_deferred_sensor_returns_the_first_matching_event_and_ignores_others(airflow_db, inbox) -> None:
    def produce() -> None:
        append(inbox, "other-run", runId=8)
        append(inbox, "other-action", action="UPDATE", runId=7)
        append(inbox, "other-resource", resource="RUNS", runId=7)
        append(inbox, "mine", runId=7, title="scratch")
        append(inbox, "mine-too-late", runId=7)

    thread = later(2.0, produce)
    body = sensor_body(inbox, resource="issues", action="CREATE", match={"data.runId": "{{ dag_run.conf['run_id'] }}"},
                       timeout=60)  # fmt: skip
    result = run_dag_source(body, imports=IMPORTS, conf={"run_id": "7"})
    thread.join()
    assert result["wait"].state == "success"
    event = result["wait"].xcom
    assert event["event_id"] == "mine"
    assert event["payload"]["data"] == {"runId": 7, "title": "scratch"}
    assert (event["receiver"], event["resource"], event["action"]) == ("factory", "ISSUES", "CREATE")


def test_event_between_the_runs_trigger_and_its_start_is_found(airflow_db, inbox) -> None:
    """A run triggered (run_after) before the event but started after it, e.g. queued behind others."""
    triggered = datetime.now(UTC) - timedelta(seconds=30)
    append(inbox, "while-queued", runId=3)
    body = sensor_body(inbox, resource="ISSUES", match={"data.runId": 3}, timeout=30)
    result = run_dag_source(body, imports=IMPORTS, run_after=triggered)
    assert result["wait"].state == "success"
    assert result["wait"].xcom["event_id"] == "while-queued"


def test_event_that_arrived_after_the_run_started_is_found_without_deferring(airflow_db, inbox) -> None:
    append(inbox, "before-the-run", runId=1)  # older than the DAG run: not wanted
    body = ("    from airflow.sdk import task\n"
            "    @task\n"
            "    def produce():\n"
            f"        from airflow_provider_ion.webhooks.inbox import Inbox\n"
            f"        Inbox({_url(inbox)!r}).append('factory', 'during-the-run', "
            "{'resource': 'ISSUES', 'action': 'CREATE', 'data': {'runId': 1}})\n"
            "    produce() >> " + sensor_body(inbox, resource="ISSUES", match={"data.runId": 1}, timeout=30).strip()
            + "\n")  # fmt: skip
    result = run_dag_source(body, imports=IMPORTS)
    assert result["wait"].state == "success"
    assert result["wait"].xcom["event_id"] == "during-the-run"


def test_poke_mode_reads_the_inbox_and_returns_the_event(airflow_db, inbox) -> None:
    thread = later(1.0, append, inbox, "poked", runId=3)
    body = sensor_body(inbox, resource="ISSUES", match={"data.runId": 3}, deferrable=False, poke_interval=0.2,
                       timeout=30)  # fmt: skip
    result = run_dag_source(body, imports=IMPORTS)
    thread.join()
    assert result["wait"].state == "success"
    assert result["wait"].xcom["event_id"] == "poked"


@pytest.mark.parametrize(("setting", "expected"), [(None, "False"), ("True", "True"), ("false", "False")])
def test_deferrable_default_follows_airflows_operators_default_deferrable(setting, expected) -> None:
    """Like the official providers' sensors: ``[operators] default_deferrable`` (read when the module is imported)."""
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"}
    if setting is not None:
        env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = setting
    code = (
        "from airflow_provider_ion.sensors.webhook import IonWebhookSensor\n"
        "print('DEFERRABLE', IonWebhookSensor(task_id='s', resource='ISSUES').deferrable)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line for line in out.stdout.splitlines() if line.startswith("DEFERRABLE")] == [f"DEFERRABLE {expected}"]


def test_the_default_sensor_pokes_and_records_itself_as_a_consumer(airflow_db, inbox) -> None:
    thread = later(1.0, append, inbox, "poked-by-default", runId=4)
    args = ", ".join(
        f"{k}={v!r}"
        for k, v in {"inbox_url": _url(inbox), "resource": "ISSUES", "match": {"data.runId": 4}, "poke_interval": 0.2,
                     "timeout": 30}.items()
    )  # fmt: skip
    result = run_dag_source(f"    IonWebhookSensor(task_id='wait', {args})\n", imports=IMPORTS)
    thread.join()
    assert result["wait"].state == "success" and result["wait"].xcom["event_id"] == "poked-by-default"
    (recorded,) = inbox.consumers()
    assert (recorded.kind, recorded.resources, recorded.actions) == ("sensor", ("ISSUES",), None)


def test_timeout_with_soft_fail_skips(airflow_db, inbox) -> None:
    body = sensor_body(inbox, resource="ISSUES", match={"data.runId": "never"}, deferrable=False,
                       poke_interval=0.2, timeout=1, soft_fail=True)  # fmt: skip
    assert run_dag_source(body, imports=IMPORTS)["wait"].state == "skipped"
    body = sensor_body(inbox, resource="ISSUES", match={"data.runId": "never"}, deferrable=False,
                       poke_interval=0.2, timeout=1)  # fmt: skip
    assert run_dag_source(body, imports=IMPORTS)["wait"].state == "failed"


def test_since_variants(inbox) -> None:
    first = append(inbox, "a")
    second = append(inbox, "b")
    start = datetime.now(UTC)
    time.sleep(0.05)
    third = append(inbox, "c")
    context = {"dag_run": SimpleNamespace(start_date=start, logical_date=None)}

    def start_seq(since):
        return IonWebhookSensor(task_id="s", inbox_url=_url(inbox), since=since).start_seq(context)

    assert start_seq(None) == second  # from the DAG run's start: third is after
    assert start_seq("now") == third
    assert start_seq(first) == first
    assert start_seq(str(first)) == first
    assert start_seq(start.isoformat()) == second
    assert start_seq(timedelta(days=1)) == 0
    assert start_seq(datetime.now(UTC) + timedelta(hours=1)) == third


def test_sensor_defers_with_a_plain_trigger_carrying_the_filter_and_timeout(inbox) -> None:
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.0-3.1
        from airflow.exceptions import TaskDeferred

    sensor = IonWebhookSensor(task_id="s", inbox_url=_url(inbox), resource="ISSUES", match={"data.runId": 9},
                              timeout=120, deferrable=True)  # fmt: skip
    context = {"dag_run": SimpleNamespace(start_date=datetime.now(UTC))}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, IonWebhookWaitTrigger)
    assert trigger.serialize()[1]["match"] == {"data.runId": 9}
    assert deferred.value.timeout == timedelta(seconds=120)
    assert sensor.execute_complete(context, {"event_id": "x"}) == {"event_id": "x"}
