"""Receivers and subscriptions through GraphQL: create, read, update with etags, validation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_provider_ion.graphql import published_document as document
from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .conftest import GraphQL
from .helpers import data_of, error_of

URI = "https://qa.example.test/ion"


def _create_receiver(gql: GraphQL, **fields: Any) -> dict[str, Any]:
    payload = data_of(gql(document("CreateWebhookReceiver"), {"input": {"name": "qa", "webhookUri": URI, **fields}}))
    return payload["createWebhookReceiver"]["webhookReceiver"]


def _create_subscription(gql: GraphQL, receiver_id: str, **fields: Any) -> dict[str, Any]:
    variables = {"input": {"receiverId": receiver_id, "resource": "RUNS", "action": "CREATE", **fields}}
    return data_of(gql(document("CreateWebhookSubscription"), variables))["createWebhookSubscription"][
        "webhookSubscription"
    ]


def test_create_receiver_fills_defaults_and_generates_secret(gql: GraphQL) -> None:
    receiver = _create_receiver(gql, headers=[{"key": "X-Team", "value": "qa"}])
    assert receiver["id"] == "1"
    assert receiver["name"] == "qa"
    assert receiver["webhookUri"] == URI
    assert receiver["contentType"] == "application/json"
    assert receiver["expectedResponseCode"] == 200
    assert receiver["active"] is True
    assert len(receiver["sharedSecret"]) >= 43  # token_urlsafe(32)
    assert receiver["headers"] == [{"id": "1", "key": "X-Team", "value": "qa"}]
    assert receiver["createdAt"] == receiver["updatedAt"]
    assert receiver["_etag"]


def test_ids_increase_names_need_not_be_unique_and_secrets_are_kept(gql: GraphQL) -> None:
    first = _create_receiver(gql)
    second = _create_receiver(gql, sharedSecret="s3cret")
    assert (first["id"], second["id"]) == ("1", "2")
    assert first["name"] == second["name"]
    assert second["sharedSecret"] == "s3cret"
    assert first["sharedSecret"] != second["sharedSecret"]


def test_update_receiver_needs_current_etag_and_changes_it(emulator: EmulatorServer, gql: GraphQL) -> None:
    receiver = _create_receiver(gql)
    update = document("UpdateWebhookReceiver")
    changes = {"active": False, "description": "paused", "headers": [{"key": "A", "value": "1"}]}
    variables = {"input": {"id": receiver["id"], "etag": receiver["_etag"], **changes}}
    updated = data_of(gql(update, variables))["updateWebhookReceiver"]["webhookReceiver"]
    assert updated["active"] is False
    assert updated["description"] == "paused"
    assert [(h["key"], h["value"]) for h in updated["headers"]] == [("A", "1")]
    assert updated["_etag"] != receiver["_etag"]
    assert updated["updatedAt"] > receiver["updatedAt"]

    stale = gql(update, {"input": {"id": receiver["id"], "etag": receiver["_etag"], "active": True}})
    error = error_of(stale, 409)
    assert error["extensions"]["code"] == "CONCURRENCY_CONFLICT"
    assert "WebhookReceiver 1" in error["message"]
    assert stale.json()["data"] is None
    assert emulator.store.get("receivers", 1)["active"] is False


def test_receiver_validation_errors(gql: GraphQL) -> None:
    create = document("CreateWebhookReceiver")
    for bad, field in [
        ({"name": "  ", "webhookUri": URI}, "name"),
        ({"name": "qa", "webhookUri": "ftp://example.test/x"}, "webhookUri"),
        ({"name": "qa", "webhookUri": "not a url"}, "webhookUri"),
        ({"name": "qa", "webhookUri": URI, "expectedResponseCode": 42}, "expectedResponseCode"),
    ]:
        error = error_of(gql(create, {"input": bad}))
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert field in error["message"]
    receiver = _create_receiver(gql)
    update = document("UpdateWebhookReceiver")
    error = error_of(gql(update, {"input": {"id": receiver["id"], "etag": receiver["_etag"], "name": None}}))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    missing = error_of(gql(update, {"input": {"id": "404", "etag": "x", "active": False}}))
    assert missing["extensions"]["code"] == "NOT_FOUND"
    assert missing["message"] == "WebhookReceiver 404 not found"


def test_subscriptions_link_receivers_both_ways(emulator: EmulatorServer, gql: GraphQL) -> None:
    receiver = _create_receiver(gql)
    subscription = _create_subscription(gql, receiver["id"], active=False)
    assert subscription["receiverId"] == receiver["id"]
    assert subscription["active"] is False
    assert subscription["createdBy"] == {"id": emulator.client_id}  # an object, as in ION's manual
    event = emulator.store.add_event(subscription["id"], status="SUCCESS")
    query = """
      query ($id: ID!) {
        webhookReceiver(id: $id) { subscriptions { id resource action receiver { id }
          events { id status receiverId } } }
      }"""
    (sub,) = data_of(gql(query, {"id": receiver["id"]}))["webhookReceiver"]["subscriptions"]
    assert sub["id"] == subscription["id"]
    assert (sub["resource"], sub["action"], sub["receiver"]["id"]) == ("RUNS", "CREATE", receiver["id"])
    assert sub["events"] == [{"id": str(event["id"]), "status": "SUCCESS", "receiverId": receiver["id"]}]


def test_update_subscription_and_unknown_receiver(gql: GraphQL) -> None:
    receiver = _create_receiver(gql)
    subscription = _create_subscription(gql, receiver["id"])
    update = document("UpdateWebhookSubscription")
    variables = {"input": {"id": subscription["id"], "etag": subscription["_etag"], "active": False}}
    updated = data_of(gql(update, variables))["updateWebhookSubscription"]["webhookSubscription"]
    assert updated["active"] is False
    assert updated["_etag"] != subscription["_etag"]
    assert error_of(gql(update, variables), 409)["extensions"]["code"] == "CONCURRENCY_CONFLICT"

    create = document("CreateWebhookSubscription")
    error = error_of(gql(create, {"input": {"receiverId": "77", "resource": "RUNS", "action": "CREATE"}}))
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["message"] == "WebhookReceiver 77 not found"
    bad_enum = error_of(gql(create, {"input": {"receiverId": receiver["id"], "resource": "NOPE", "action": "CREATE"}}))
    assert bad_enum["extensions"]["code"] == "BAD_USER_INPUT"


def test_get_queries_read_back_what_was_written(gql: GraphQL) -> None:
    receiver = _create_receiver(gql)
    read = data_of(gql(document("GetWebhookReceiver"), {"id": receiver["id"]}))["webhookReceiver"]
    assert read == {k: v for k, v in receiver.items() if k != "sharedSecret"}
    secret = data_of(gql(document("GetWebhookReceiverSecret"), {"id": receiver["id"]}))["webhookReceiver"]
    assert secret["sharedSecret"] == receiver["sharedSecret"]


def test_concurrent_creates_get_distinct_increasing_ids(emulator: EmulatorServer, gql: GraphQL) -> None:
    """Writes from many threads at once (the server runs resolvers in worker threads) stay consistent."""

    def create(n: int) -> str:
        return _create_receiver(gql, name=f"r{n}")["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, range(40)))
    assert sorted(int(i) for i in ids) == list(range(1, 41))
    assert emulator.stats["graphql_operations"] == {"CreateWebhookReceiver": 40}
