"""When a purchase order is placed in ION, alert the ERP."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

purchase_orders_created = Asset(
    "ion://purchase_orders/create",
    watchers=[
        AssetWatcher(
            name="ion_purchase_orders_created",
            trigger=IonWebhookTrigger(resource="PURCHASE_ORDERS", action="CREATE"),
        )
    ],
)

with DAG(
    dag_id="ion_purchase_order_to_erp",
    schedule=[purchase_orders_created],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["ion", "example"],
    doc_md="""
### A purchase order was placed in ION

Event-driven on **PURCHASE_ORDERS/CREATE**: each placed order becomes an alert in the ERP (here the
`erp_alerts` stand-in system), once per ION `event_id`, so a redelivered webhook alerts once.
""",
) as dag:

    @task
    def alert_erp(*, triggering_asset_events=None) -> list[dict]:
        from factory_systems import record_once

        from airflow_provider_ion.events import IonEvent

        alerts = []
        for event in IonEvent.iter_triggering(triggering_asset_events, purchase_orders_created):
            order = event.data or {}
            alert = {"purchase_order_id": order.get("id"), "supplier": order.get("supplier"), "status": "placed"}
            record_once("erp_alerts", event.event_id_text, alert)
            alerts.append({"event_id": event.event_id_text, **alert})
        return alerts

    alert_erp()
