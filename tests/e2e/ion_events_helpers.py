"""Shared pieces of the ION event e2e tests: the DAGs, signed deliveries, reading results back."""

from __future__ import annotations

import json
import statistics
import textwrap
import time
import uuid
from typing import Any

import httpx

from airflow_provider_ion.webhooks.signature import sign

SECRET = "factory-secret-0123456789-abcdefghijklmnop"
RECEIVER = "factory"

WATCH_DAG = textwrap.dedent(
    """
    import time
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, task
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

    runs_created = Asset("ion://runs/create", watchers=[AssetWatcher(
        name="ion_runs_created", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE"))])

    with DAG("ion_on_run", schedule=[runs_created], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             catchup=False, max_active_runs=32):
        @task
        def handle(*, triggering_asset_events=None):
            started = time.time()
            events = [e.extra["payload"] for evs in triggering_asset_events.values() for e in evs
                      if not e.extra.get("ion_sweep")]  # the stranded-event sweep's repeat
            return {"started": started, "events": events}

        handle()
    """
)

WAIT_DAG = textwrap.dedent(
    """
    import time
    import pendulum
    from airflow.sdk import DAG, task
    from airflow_provider_ion.sensors.webhook import IonWebhookSensor

    with DAG("ion_wait", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
             params={"run_id": "0", "delay": 0}):
        @task
        def before(params=None):
            time.sleep(float(params["delay"]))

        before() >> IonWebhookSensor(task_id="wait_for_issue", resource="ISSUES", action="CREATE",
                                     match={"data.runId": "{{ params.run_id }}"}, timeout=300,
                                     deferrable=True)
    """
)


def env_for(inbox_url: str) -> dict[str, str]:
    return {
        "AIRFLOW__ION_WEBHOOKS__INBOX_URL": inbox_url,
        "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
        f"AIRFLOW_VAR_ION_WEBHOOK_SECRET_{RECEIVER.upper()}": SECRET,
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
    }


def post_event(base_url: str, resource: str, action: str, data: dict[str, Any] | None = None,
               event_id: str | None = None) -> tuple[str, float]:  # fmt: skip
    """POST one signed delivery to the receiver in the API server; (event_id, time it was accepted)."""
    event_id = event_id or uuid.uuid4().hex
    body = json.dumps({"event_id": event_id, "subscription_id": 1, "resource": resource, "action": action,
                       "data": data or {}}).encode()  # fmt: skip
    headers = {"content-type": "application/json", "x-ion-signature": sign(body, SECRET)}
    response = httpx.post(f"{base_url}/ion-webhooks/v1/receivers/{RECEIVER}", content=body, headers=headers,
                          timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return event_id, time.time()


def watch_results(stack: Any) -> list[dict[str, Any]]:
    """XCom of every finished ion_on_run run: {"started": t, "events": [event dicts]}."""
    results = []
    for run in stack.dag_runs("ion_on_run"):
        if run["state"] == "success":
            results.append(stack.xcom("ion_on_run", run["dag_run_id"], "handle"))
    return results


def asset_events(stack: Any) -> list[dict[str, Any]]:
    """Every asset event Airflow stored (what the trigger delivered into Airflow)."""
    events, offset = [], 0
    while True:
        page = stack.api("GET", "/assets/events", params={"limit": 100, "offset": offset})["asset_events"]
        events.extend(page)
        if len(page) < 100:
            return events
        offset += 100


def delivered_into_airflow(stack: Any, event_ids: set[str], timeout: float = 120) -> None:
    """Our contract: every event became an asset event (at least once)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = {(e.get("extra") or {}).get("payload", {}).get("event_id") for e in asset_events(stack)}
        if event_ids <= stored or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert event_ids <= stored, f"never delivered into Airflow: {sorted(event_ids - stored)}"


def flush(stack: Any) -> str:
    """One more event after a burst.

    Airflow 3.3.2's scheduler strands an asset event registered while its DAG's AssetDagRunQueue row
    already exists and is about to be consumed: the run's window ends at the row's created_at, and the
    row is deleted, so that event waits for the next event of the asset. Tests that end on a burst post
    this so "every event reached a DAG run" tests our delivery, not that race.
    """
    time.sleep(3)
    return post_event(stack.base_url, "RUNS", "CREATE", {"flush": True})[0]


def wait_for_events(stack: Any, event_ids: set[str], timeout: float = 120) -> list[dict[str, Any]]:
    """Wait until every event reached a DAG run's task; return the runs' results."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        results = watch_results(stack)
        seen = {e["event_id"] for r in results for e in r["events"]}
        if event_ids <= seen:
            return results
        time.sleep(1)
    stored = {
        (e.get("extra") or {}).get("payload", {}).get("event_id"): e.get("timestamp") for e in asset_events(stack)
    }
    missing = sorted(event_ids - seen)
    raise AssertionError(
        f"events never reached a DAG run: {missing}; of them, stored as asset events (delivered into Airflow, "
        f"not consumed by a run): {[(m, stored[m]) for m in missing if m in stored]}; runs: "
        f"{[(r['dag_run_id'], r['run_after'], r['state']) for r in stack.dag_runs('ion_on_run')]}"
    )


def wait_for_consumer(inbox: Any, consumer: str, timeout: float = 90) -> None:
    """The asset watcher's trigger is running once it has created its inbox cursor."""
    deadline = time.monotonic() + timeout
    # the default cursor is "<filter name>-<Airflow trigger id>"
    while not any(name == consumer or name.startswith(f"{consumer}-") for name in inbox.list_cursors()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"trigger never started (no cursor {consumer})")
        time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float]) -> str:
    return (f"n={len(latencies)} median={statistics.median(latencies) * 1000:.0f} ms "
            f"p95={percentile(latencies, 0.95) * 1000:.0f} ms max={max(latencies) * 1000:.0f} ms")  # fmt: skip
