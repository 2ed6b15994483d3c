"""POST /graphql: both auth header styles, 401s, request-shape errors, error codes, exact counters."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_ion.graphql import document_names, published_document
from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .conftest import GraphQL
from .helpers import data_of, error_of

PING = published_document("Ping")


@pytest.mark.parametrize("template", ["Bearer {}", "bearer {}", "{}"])
def test_bearer_and_raw_token_are_accepted(
    emulator: EmulatorServer, http: httpx.Client, token: str, template: str
) -> None:
    response = http.post(emulator.graphql_url, json={"query": PING}, headers={"Authorization": template.format(token)})
    assert data_of(response) == {"webhookReceivers": {"pageInfo": {"hasNextPage": False, "totalCount": 0}}}


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer not-a-token", "not-a-token", "Basic abc"])
def test_missing_or_unknown_token_is_401(emulator: EmulatorServer, http: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = http.post(emulator.graphql_url, json={"query": PING}, headers=headers)
    error = error_of(response, 401)
    assert error["message"] == "Unauthorized"
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert emulator.stats["unauthorized"] == 1


def test_counters_are_exact_per_operation(emulator: EmulatorServer, gql: GraphQL) -> None:
    for _ in range(3):
        data_of(gql(PING))
    data_of(gql("{ webhookReceivers { pageInfo { totalCount } } }"))
    error_of(gql("{ noSuchField }"))
    stats = emulator.stats
    assert stats["token_requests"] == 1
    assert stats["graphql_requests"] == 5
    assert stats["graphql_operations"] == {"Ping": 3, "<anonymous>": 2}


def test_operation_name_selects_the_operation(emulator: EmulatorServer, http: httpx.Client, token: str) -> None:
    body = {"query": PING + "\nquery Other { webhookEvents { pageInfo { totalCount } } }", "operationName": "Other"}
    response = http.post(emulator.graphql_url, json=body, headers={"Authorization": token})
    assert data_of(response) == {"webhookEvents": {"pageInfo": {"totalCount": 0}}}
    assert emulator.stats["graphql_operations"] == {"Other": 1}


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"query": ""}', b'{"query": "{ a }", "variables": [1]}'])
def test_malformed_request_is_400(emulator: EmulatorServer, http: httpx.Client, token: str, content: bytes) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    response = http.post(emulator.graphql_url, content=content, headers=headers)
    assert error_of(response, 400)["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ webhookReceivers {", None, "GRAPHQL_PARSE_FAILED"),
        ("{ noSuchField }", None, "GRAPHQL_VALIDATION_FAILED"),
        ("query Q($id: ID!) { webhookReceiver(id: $id) { id } }", {}, "BAD_USER_INPUT"),
        ('{ webhookReceiver(id: "abc") { id } }', None, "BAD_USER_INPUT"),
        (
            "mutation { createWebhookSubscription(input: {receiverId: 99, resource: RUNS, action: CREATE})"
            " { webhookSubscription { id } } }",
            None,
            "NOT_FOUND",
        ),
    ],
)
def test_graphql_errors_are_200_with_codes(
    gql: GraphQL, query: str, variables: dict[str, object] | None, code: str
) -> None:
    error = error_of(gql(query, variables))
    assert error["extensions"]["code"] == code
    assert error["message"]


def test_unknown_id_reads_as_null(gql: GraphQL) -> None:
    assert data_of(gql(published_document("GetWebhookReceiver"), {"id": "12345"})) == {"webhookReceiver": None}


def test_every_provider_document_runs_against_the_emulator(emulator: EmulatorServer, gql: GraphQL) -> None:
    """The hook's documents execute without errors, so the emulator serves the whole contract."""
    receiver = emulator.store.create_receiver({"name": "qa", "webhookUri": "https://qa.example.test/hook"})
    subscription = emulator.store.create_subscription(
        {"receiverId": receiver["id"], "resource": "RUNS", "action": "CREATE"}
    )
    event = emulator.store.add_event(subscription["id"], status="SUCCESS", payload={"id": 1})
    variables = {
        "CreateWebhookReceiver": {"input": {"name": "n", "webhookUri": "https://n.example.test/"}},
        "CreateWebhookSubscription": {
            "input": {"receiverId": receiver["id"], "resource": "ISSUES", "action": "UPDATE"}
        },
        "EnumValues": {"name": "ResourceEnum"},
        "GetWebhookEvent": {"id": event["id"]},
        "GetWebhookReceiver": {"id": receiver["id"]},
        "GetWebhookReceiverSecret": {"id": receiver["id"]},
        "GetWebhookSubscription": {"id": subscription["id"]},
        "UpdateWebhookReceiver": {"input": {"id": receiver["id"], "etag": receiver["_etag"], "active": False}},
        "UpdateWebhookSubscription": {
            "input": {"id": subscription["id"], "etag": subscription["_etag"], "active": False}
        },
    }
    # The header mutations exist only in the header-mutations profile (tests/emulator/test_profiles.py).
    for name in set(document_names()) - {"AddHeaderToWebhookReceiver", "RemoveHeaderFromWebhookReceiver"}:
        data = data_of(gql(published_document(name), variables.get(name)))
        assert all(value is not None for value in data.values()), (name, data)
