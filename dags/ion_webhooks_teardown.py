"""Stop ION's webhooks to this Airflow: disable the subscriptions, then the receiver."""

from __future__ import annotations

import ion_desired_state as desired
import pendulum
from airflow.sdk import DAG

from airflow_provider_ion.operators.webhooks import (
    IonDisableWebhookReceiverOperator,
    IonDisableWebhookSubscriptionOperator,
)

with DAG(
    dag_id="ion_webhooks_teardown",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ion", "example"],
    params=desired.params(),
    doc_md="""
### ION webhooks teardown

Disables the subscriptions `ion_webhooks_setup` created (the desired state in `ion_desired_state.py`),
then the receiver (disabled, not deleted:
`ion_webhooks_setup` re-enables them). Each step is a no-op when already disabled or never created.
""",
) as dag:
    disable_receiver = IonDisableWebhookReceiverOperator(
        task_id="disable_receiver", receiver="{{ params.receiver_name }}", missing_ok=True
    )
    for resource, action in desired.subscription_pairs():
        (
            IonDisableWebhookSubscriptionOperator(
                task_id=f"disable_{resource.lower()}_{action.lower()}",
                receiver="{{ params.receiver_name }}",
                resource=resource,
                action=action,
            )
            >> disable_receiver
        )
