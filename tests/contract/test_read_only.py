"""Read-only contract: token, schema, every document, enums, pagination. Safe on any tenant."""

from __future__ import annotations

from airflow_provider_ion.graphql import total_count
from airflow_provider_ion.hooks.doctor import run_checks
from airflow_provider_ion.hooks.ion import IonHook
from airflow_provider_ion.hooks.schema import live_schema


def test_doctor_finds_nothing_to_fix(contract_target) -> None:
    with IonHook(contract_target.conn_id) as hook:
        checks = run_checks(hook)
    failed = [f"{c.name}: {c.detail} -> {c.fix}" for c in checks if c.status == "fail"]
    assert failed == [], f"{contract_target.label}: " + "\n".join(failed)


def test_test_button(contract_target) -> None:
    with IonHook(contract_target.conn_id) as hook:
        ok, message = hook.test_connection()
    assert ok, message


def test_lists_page_and_count(contract_target) -> None:
    with IonHook(contract_target.conn_id) as hook:
        data = hook.execute("ListWebhookReceivers", {"first": 1, "filters": None})["webhookReceivers"]
        count = total_count(data)
        assert count is None or count >= len(data["edges"])
        receivers = list(hook.paginate("ListWebhookReceivers", {"filters": None}, page_size=50))
        assert count is None or len(receivers) == count
        for node in receivers:
            assert "sharedSecret" not in node and node["id"] is not None and "_etag" in node
        hook.execute("ListWebhookSubscriptions", {"first": 5, "filters": None})
        hook.execute("ListWebhookEvents", {"first": 5, "filters": None})


def test_enums_hold_what_subscriptions_need(contract_target) -> None:
    with IonHook(contract_target.conn_id) as hook:
        live = live_schema(hook)
        resources = hook.enum_values("ResourceEnum")
        actions = hook.enum_values("WebhookSubscriptionActions")
    if live is None:  # introspection refused: nothing to compare against
        assert resources is None
        return
    assert resources, "ResourceEnum has no values"
    assert {"CREATE", "UPDATE", "DELETE"} <= set(actions or [])
