"""One DAG run per ION issue: opt-in per-event mode (partitioned assets, partition key = event_id)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

try:
    from airflow.sdk import PartitionedAssetTimetable
except ImportError as missing:  # partitioned assets arrived in Airflow 3.3
    raise ImportError("ion_issue_per_event needs Airflow 3.3 or later (PartitionedAssetTimetable)") from missing

from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

issues_created = Asset(
    "ion://issues/create/per-event",
    watchers=[
        AssetWatcher(
            name="ion_issues_per_event",
            trigger=IonWebhookTrigger(resource="ISSUES", action="CREATE", per_event=True),
        )
    ],
)

with DAG(
    dag_id="ion_issue_per_event",
    schedule=PartitionedAssetTimetable(assets=issues_created),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ion", "example"],
    doc_md="""
### One DAG run per ION issue

`IonWebhookTrigger(..., per_event=True)` posts each matching ION event to its asset with the event's
`event_id` as the partition key, and `PartitionedAssetTimetable` makes one DAG run per key: each issue gets
its own run (`dag_run.partition_key` is the `event_id`), its task gets exactly that event, and clearing
the run re-processes that one issue. Here each issue is acknowledged in the `qa_triage`
stand-in system, once per `event_id`.

Needs `ion_webhooks_setup` to have run once, and the triggerer to reach Airflow's REST API (README: "One DAG
run per ION event").
""",
) as dag:

    @task
    def triage(*, triggering_asset_events=None, dag_run=None) -> dict:
        from factory_systems import record_once

        from airflow_provider_ion.events import IonEvent

        (event,) = IonEvent.iter_triggering(triggering_asset_events, issues_created)  # exactly one per run
        issue = event.data or {}
        record = {
            "issue_id": issue.get("id"),
            "title": issue.get("title"),
            "partition": getattr(dag_run, "partition_key", None),
        }
        record_once("qa_triage", event.event_id_text, record)
        return {"event_id": event.event_id_text, **record}

    triage()
