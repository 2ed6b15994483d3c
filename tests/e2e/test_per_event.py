"""One DAG run per ION event (per_event=True, PartitionedAssetTimetable), with real Airflow on PostgreSQL.

A burst of 20 events 50 ms apart goes to two DAGs at once: one in per-event mode, one in the default mode.
Per-event: 20 runs, each with exactly its event and partition key = event_id. Both: every event reaches a
task; the figures compare event accepted -> task start (median, p95). Run with -s for the figures.
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from typing import Any

import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
from airflow_provider_ion.webhooks.inbox import Inbox
from tests.e2e.ion_events_helpers import env_for, percentile, post_event, wait_for_consumer

pytestmark = pytest.mark.e2e
psycopg = pytest.importorskip("psycopg")

DAGS = textwrap.dedent(
    """
    import time
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, PartitionedAssetTimetable, task
    from airflow_provider_ion.events import IonEvent
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

    START = pendulum.datetime(2026, 1, 1, tz="UTC")
    per_event = Asset("ion://runs/create/per-event", watchers=[AssetWatcher(
        name="runs_per_event", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE", per_event=True))])
    default = Asset("ion://runs/create/default", watchers=[AssetWatcher(
        name="runs_default", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE"))])

    @task
    def handle(*, triggering_asset_events=None, dag_run=None):
        return {"started": time.time(), "partition": getattr(dag_run, "partition_key", None),
                "events": [e.event_id_text for e in IonEvent.iter_triggering(triggering_asset_events)]}

    with DAG("ion_per_event", schedule=PartitionedAssetTimetable(assets=per_event), start_date=START,
             catchup=False, max_active_runs=32):
        handle()

    with DAG("ion_default_mode", schedule=[default], start_date=START, catchup=False, max_active_runs=32):
        handle()
    """
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    admin_url = os.environ.get("ION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        admin = psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True,
                                connect_timeout=3)  # fmt: skip
    except psycopg.OperationalError as error:
        pytest.skip(f"no local PostgreSQL: {error}")
    name = f"af_per_event_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    home = tmp_path_factory.mktemp("airflow-per-event")
    dags = home / "dags"
    dags.mkdir()
    (dags / "per_event.py").write_text(DAGS)
    env = env_for(db_url)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = db_url
    try:
        with AirflowStack(home, dags_folder=dags, env=env, db_url=db_url) as stack:
            inbox = Inbox(db_url)
            for dag_id in ("ion_per_event", "ion_default_mode"):
                stack.wait_for_dag(dag_id)
            for per_event in (True, False):
                trigger = IonWebhookTrigger(resource="RUNS", action="CREATE", per_event=per_event)
                wait_for_consumer(inbox, trigger.consumer_name)
            time.sleep(2)  # both triggers running (each has its cursor)
            yield stack
            inbox.close()
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def _results(stack: Any, dag_id: str, cache: dict[str, dict]) -> dict[str, dict]:
    for run in stack.dag_runs(dag_id):
        if run["state"] == "success" and run["dag_run_id"] not in cache:
            cache[run["dag_run_id"]] = {**stack.xcom(dag_id, run["dag_run_id"], "handle"),
                                        "partition_key": run.get("partition_key")}  # fmt: skip
    return cache


def test_a_burst_gives_one_run_per_event_with_its_own_event(stack) -> None:
    accepted: dict[str, float] = {}
    for i in range(20):
        event_id, at = post_event(stack.base_url, "RUNS", "CREATE", {"n": i})
        accepted[event_id] = at
        time.sleep(0.05)
    per_event: dict[str, dict] = {}
    default: dict[str, dict] = {}
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        _results(stack, "ion_per_event", per_event)
        _results(stack, "ion_default_mode", default)
        seen_pe = {e for r in per_event.values() for e in r["events"]}
        seen_d = {e for r in default.values() for e in r["events"]}
        if set(accepted) <= seen_pe and set(accepted) <= seen_d:
            break
        time.sleep(1)
    ours = set(accepted)
    pe_runs = [r for r in per_event.values() if ours & set(r["events"])]
    assert {e for r in pe_runs for e in r["events"]} == ours, "an event reached no per-event run"
    assert all(len(r["events"]) == 1 for r in pe_runs), [r["events"] for r in pe_runs]
    assert len(pe_runs) == len(ours)  # one run per event
    assert all(r["partition_key"] == r["events"][0] for r in pe_runs)  # partition key = event_id
    d_runs = [r for r in default.values() if ours & set(r["events"])]

    def latency(runs: list[dict]) -> list[float]:
        return [r["started"] - accepted[e] for r in runs for e in r["events"] if e in accepted]

    lat_pe, lat_d = latency(pe_runs), latency(d_runs)
    print(
        f"\n[per-event postgres] {len(ours)} events in a burst: per-event mode {len(pe_runs)} runs "
        f"({len(pe_runs) / len(ours):.2f} per event), event -> task start median "
        f"{sorted(lat_pe)[len(lat_pe) // 2]:.2f} s p95 {percentile(lat_pe, 0.95):.2f} s; default mode "
        f"{len(d_runs)} runs, reached a task: {len({e for r in d_runs for e in r['events']} & ours)}/{len(ours)}"
        + (f", median {sorted(lat_d)[len(lat_d) // 2]:.2f} s p95 {percentile(lat_d, 0.95):.2f} s" if lat_d else "")
    )
