
import os
import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

runs_created = Asset("ion://runs/create", watchers=[AssetWatcher(
    name="ion_runs_created", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE"))])

with DAG("ion_cluster_events", schedule=[runs_created], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, max_active_runs=16):

    @task(retries=3, retry_delay=timedelta(seconds=2))
    def handle(*, triggering_asset_events=None):
        time.sleep(float(os.environ.get("ION_CLUSTER_TASK_SECONDS", "0")))
        return [{"event_id": e.extra["payload"]["event_id"], "data": e.extra["payload"].get("data")}
                for events in triggering_asset_events.values() for e in events]

    handle()
