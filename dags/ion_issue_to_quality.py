"""Wait for an issue to be raised on a given ION run, then file a non-conformance in the QA system."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_ion.sensors.webhook import IonWebhookSensor

with DAG(
    dag_id="ion_issue_to_quality",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ion", "example"],
    params={"run_id": Param("1", type="string", description="The ION run to watch for issues")},
    doc_md="""
### Non-conformance when a run has a problem

Trigger it with the ION run to watch (`{"run_id": "42"}`). The deferrable `IonWebhookSensor` waits in
the triggerer (no worker slot held) for an **ISSUES/CREATE** webhook whose `data.runId` matches, then
the next task files a non-conformance in the QA system (the `qa_nonconformances` stand-in). Issues on
other runs are ignored. An issue raised after the DAG run started but before the sensor deferred is
not missed.
""",
) as dag:
    wait_for_issue = IonWebhookSensor(
        task_id="wait_for_issue",
        resource="ISSUES",
        action="CREATE",
        match={"data.runId": "{{ params.run_id }}"},
        timeout=3600,
        deferrable=True,  # the default follows [operators] default_deferrable (False unless set)
    )

    @task
    def file_nonconformance(result: dict) -> dict:
        from factory_systems import record_once

        from airflow_provider_ion.events import IonEvent

        event = IonEvent.from_sensor_result(result)
        issue = event.data or {}
        record = {"run_id": issue.get("runId"), "issue_id": issue.get("id"), "title": issue.get("title")}
        record_once("qa_nonconformances", event.event_id_text, record)
        return record

    file_nonconformance(wait_for_issue.output)
