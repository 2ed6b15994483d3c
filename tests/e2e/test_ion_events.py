"""End to end in a real Airflow (SQLite): signed deliveries -> receiver in the API server -> inbox ->
triggerer -> an asset-watcher DAG run per event / a deferred sensor resumed with its event.

One Airflow (api-server, scheduler, dag-processor, triggerer) for the module; run with -s for figures.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
from airflow_provider_ion.webhooks.inbox import Inbox
from tests.e2e.ion_events_helpers import (
    WAIT_DAG,
    WATCH_DAG,
    delivered_into_airflow,
    env_for,
    flush,
    post_event,
    summary,
    wait_for_consumer,
    wait_for_events,
)

pytestmark = pytest.mark.e2e

CONSUMER = IonWebhookTrigger(resource="RUNS", action="CREATE").consumer_name


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-events")
    dags = home / "dags"
    dags.mkdir()
    (dags / "ion_on_run.py").write_text(WATCH_DAG)
    (dags / "ion_wait.py").write_text(WAIT_DAG)
    inbox_url = f"sqlite:///{home}/ion_inbox.db"
    with AirflowStack(home, dags_folder=dags, env=env_for(inbox_url)) as stack:
        inbox = Inbox(inbox_url)
        stack.inbox = inbox  # type: ignore[attr-defined]
        stack.wait_for_dag("ion_on_run")
        wait_for_consumer(inbox, CONSUMER)
        yield stack
        inbox.close()


def _wait_state(stack, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (current := stack.task_states(dag_id, run_id).get(task_id)) != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{task_id} is {current}, not {state}")
        time.sleep(0.3)


def test_deferred_sensor_resumes_with_the_matching_event_and_ignores_others(stack) -> None:
    run_id = stack.trigger("ion_wait", conf={"run_id": "7"})
    _wait_state(stack, "ion_wait", run_id, "wait_for_issue", "deferred")
    post_event(stack.base_url, "ISSUES", "CREATE", {"runId": 8})  # other run
    post_event(stack.base_url, "ISSUES", "UPDATE", {"runId": 7})  # other action
    post_event(stack.base_url, "RUNS", "CREATE", {"runId": 7})  # other resource
    time.sleep(2)
    assert stack.task_states("ion_wait", run_id)["wait_for_issue"] == "deferred"
    event_id, _ = post_event(stack.base_url, "ISSUES", "CREATE", {"runId": 7, "title": "scratch"})  # 7 == "7"
    run = stack.wait_for_run("ion_wait", run_id, timeout=60)
    assert run["state"] == "success", stack.task_states("ion_wait", run_id)
    event = stack.xcom("ion_wait", run_id, "wait_for_issue")
    assert event["event_id"] == event_id
    assert (event["receiver"], event["resource"], event["action"]) == ("factory", "ISSUES", "CREATE")
    assert event["payload"]["data"] == {"runId": 7, "title": "scratch"}


def test_sensor_finds_an_event_that_arrived_after_the_run_started_but_before_it_ran(stack) -> None:
    run_id = stack.trigger("ion_wait", conf={"run_id": "early-42", "delay": 8})
    _wait_state(stack, "ion_wait", run_id, "before", "running")
    event_id, _ = post_event(stack.base_url, "ISSUES", "CREATE", {"runId": "early-42"})
    assert stack.task_states("ion_wait", run_id)["wait_for_issue"] in (None, "none", "scheduled", "queued")
    run = stack.wait_for_run("ion_wait", run_id, timeout=90)
    assert run["state"] == "success", stack.task_states("ion_wait", run_id)
    assert stack.xcom("ion_wait", run_id, "wait_for_issue")["event_id"] == event_id


def test_asset_watcher_runs_the_dag_per_event_and_the_task_reads_it_latency(stack) -> None:
    accepted: dict[str, float] = {}
    for i in range(20):
        event_id, at = post_event(stack.base_url, "RUNS", "CREATE", {"runId": 1000 + i, "serial": f"SN-{i}"})
        accepted[event_id] = at
        time.sleep(1.5)
    results = wait_for_events(stack, set(accepted))
    latencies, runs_for = [], {}
    for result in results:
        for event in result["events"]:
            if event["event_id"] in accepted:
                runs_for.setdefault(event["event_id"], 0)
                runs_for[event["event_id"]] += 1
                latencies.append(result["started"] - accepted[event["event_id"]])
                assert event["payload"]["data"]["serial"].startswith("SN-")  # the whole event reached the task
                assert (event["resource"], event["action"], event["receiver"]) == ("RUNS", "CREATE", "factory")
    assert set(runs_for) == set(accepted)
    runs = [r for r in results if any(e["event_id"] in accepted for e in r["events"])]
    print(f"\n[e2e sqlite] {len(accepted)} events -> {len(runs)} DAG runs; "
          f"event accepted -> downstream task running: {summary(latencies)}")  # fmt: skip
    assert max(runs_for.values()) == 1  # no duplicate without a crash


def test_kill_9_of_the_triggerer_loses_no_event(stack) -> None:
    accepted: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        for i in range(24):
            if stop.is_set():
                return
            accepted.append(post_event(stack.base_url, "RUNS", "CREATE", {"n": i, "batch": uuid.uuid4().hex})[0])
            time.sleep(0.4)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(3)
    stack.stop_component("triggerer", signal.SIGKILL)
    time.sleep(1)
    stack.start_component("triggerer")
    producer.join(timeout=60)
    stop.set()
    delivered_into_airflow(stack, set(accepted), timeout=150)
    flush(stack)
    results = wait_for_events(stack, set(accepted), timeout=150)
    counts: dict[str, int] = {}
    for result in results:
        for event in result["events"]:
            counts[event["event_id"]] = counts.get(event["event_id"], 0) + 1
    duplicates = sum(counts[e] - 1 for e in accepted)
    print(f"\n[e2e sqlite restart] {len(accepted)} events during a kill -9 of the triggerer: all reached a "
          f"DAG run; {duplicates} delivered twice (at least once)")  # fmt: skip
    assert all(counts.get(e, 0) >= 1 for e in accepted)
