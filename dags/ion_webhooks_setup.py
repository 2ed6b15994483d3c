"""Make sure ION sends this Airflow the webhooks the other example DAGs wait for."""

from __future__ import annotations

import ion_desired_state as desired
import pendulum
from airflow.sdk import DAG

from airflow_provider_ion.operators.webhooks import IonEnsureWebhooksOperator

with DAG(
    dag_id="ion_webhooks_setup",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ion", "example"],
    params=desired.params(),
    doc_md="""
### ION webhooks setup

Ensures that ION has the desired state of `ion_desired_state.py` (shared with the teardown and audit
DAGs): a receiver pointing at this Airflow's webhook route
(`<airflow_url>/ion-webhooks/v1/receivers/<receiver_name>`), subscribed to the events the example DAGs
wait for: **RUNS/CREATE** (`ion_run_created`), **ISSUES/CREATE** (`ion_issue_to_quality`) and
**PURCHASE_ORDERS/CREATE** (`ion_purchase_order_to_erp`).

Manual trigger; safe to run any number of times: it creates what is missing, re-enables what was
disabled, and stores the receiver's shared secret in the Variable `ion_webhook_secret_<receiver_name>`
where the receiver finds it. Uses the `ion_default` connection.
""",
) as dag:
    IonEnsureWebhooksOperator(
        task_id="ensure_webhooks",
        receiver=desired.receiver_spec(),
        subscriptions=list(desired.SUBSCRIPTIONS),
    )
