"""When ION creates a run, turn on environment monitoring at the run's workcenter."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

runs_created = Asset(
    "ion://runs/create",
    watchers=[AssetWatcher(name="ion_runs_created", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE"))],
)

with DAG(
    dag_id="ion_run_created",
    schedule=[runs_created],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ion", "example"],
    doc_md="""
### A run was created in ION

Event-driven: an `AssetWatcher` with `IonWebhookTrigger(resource="RUNS", action="CREATE")` starts
DAG runs for ION webhooks; a run may carry several events (`ion_issue_per_event` shows one run per
event). The task reads each run's events with `IonEvent.iter_triggering` and turns on environment
monitoring for each run's workcenter (here: a record in the `environment_monitoring` stand-in system,
written once per ION `event_id`).

Needs `ion_webhooks_setup` to have run once.
""",
) as dag:

    @task
    def start_environment_monitoring(*, triggering_asset_events=None) -> list[dict]:
        from factory_systems import record_once

        from airflow_provider_ion.events import IonEvent

        started = []
        for event in IonEvent.iter_triggering(triggering_asset_events, runs_created):
            run = event.data or {}
            record = {"run_id": run.get("id"), "workcenter": run.get("workcenter"), "monitoring": "on"}
            record_once("environment_monitoring", event.event_id_text, record)
            started.append({"event_id": event.event_id_text, **record})
        return started

    start_environment_monitoring()
