"""IonHook against every emulator profile: the same calls work whichever way ION turns out to be."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_ion.exceptions import IonConcurrencyError
from airflow_provider_ion.hooks.ion import IonHook
from airflow_provider_ion.hooks.schema import live_schema
from airflow_provider_ion.testing.emulator.profiles import profile_names
from airflow_provider_ion.webhook_state import set_subscription_active
from tests.conftest import define_ion_connection

# Signature profiles change deliveries only: the GraphQL side is the default one.
GRAPHQL_PROFILES = [p for p in profile_names() if not p.startswith(("signature-", "standard-"))]


@pytest.fixture(params=GRAPHQL_PROFILES)
def profiled(request, profiled_emulators, monkeypatch):
    server = profiled_emulators(request.param)
    return server, define_ion_connection(monkeypatch, server, "ion_profile")


def test_hook_calls_on_every_profile(profiled) -> None:
    server, conn_id = profiled
    with IonHook(conn_id, backoff_base=0.001, backoff_cap=0.002) as hook:
        ok, message = hook.test_connection()
        assert ok, message
        receiver = hook.create_receiver("qa", "https://qa.example.test/hook", headers={"X-A": "1"})
        assert [(h["key"], h["value"]) for h in receiver["headers"]] == [("X-A", "1")]
        assert receiver["sharedSecret"]
        subscription = hook.create_subscription(receiver["id"], "RUNS", "CREATE")
        assert subscription["resource"] == server.store.list("subscriptions")[0]["resource"]
        [listed] = hook.list_subscriptions(receiver["id"])
        assert str(listed["id"]) == str(subscription["id"])

        updated = hook.update_receiver(receiver["id"], receiver["_etag"], active=False, headers={"X-B": "2"})
        assert updated["active"] is False
        assert [(h["key"], h["value"]) for h in hook.get_receiver(receiver["id"])["headers"]] == [("X-B", "2")]
        with pytest.raises(IonConcurrencyError):
            hook.update_receiver(receiver["id"], receiver["_etag"], active=True)  # the etag read before the update
        outcome = set_subscription_active(hook, subscription["id"], False)
        assert outcome.change == "disabled"
        assert server.store.get("subscriptions", subscription["id"])["active"] is False

        event = server.store.add_event(subscription["id"], status="SUCCESS")
        [row] = hook.list_events(receiver_id=receiver["id"])
        assert (str(row["id"]), row["status"]) == (str(event["id"]), "SUCCESS")
        assert hook.get_event(event["id"])["status"] == "SUCCESS"
        assert hook.get_receiver_secret(receiver["id"]) == receiver["sharedSecret"]


def test_schema_learned_once_and_missing_introspection_logged_once(profiled, caplog, capsys) -> None:
    server, conn_id = profiled
    caplog.set_level(logging.INFO)
    for _ in range(2):
        with IonHook(conn_id) as hook:
            hook.list_receivers()
            hook.list_receivers()
    assert server.stats["graphql_operations"].get("IntrospectionQuery") == 1
    logged = caplog.text + capsys.readouterr().out  # Airflow's task loggers may print instead of propagating
    disabled = logged.count("introspection is not available")
    if server.profile.introspection:
        with IonHook(conn_id) as hook:
            assert live_schema(hook) is not None
        assert disabled == 0
    else:
        assert disabled == 1
