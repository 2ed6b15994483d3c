"""Domain objects (runs, issues, purchase orders, part inventories): CRUD through GraphQL, and every
change reaching the store's single hook point ``on_change`` with its ResourceEnum value."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import GraphQLEnumType

from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS
from airflow_provider_ion.testing.emulator.schema import build_emulator_schema
from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .conftest import GraphQL
from .helpers import data_of, error_of

RUN_FIELDS = "id _etag title status workcenter partId createdAt updatedAt"


def _mutate(gql: GraphQL, name: str, input: dict[str, Any], selection: str) -> dict[str, Any]:
    query = f"mutation ($input: {_input_type(name)}!) {{ {name}(input: $input) {{ {selection} }} }}"
    return data_of(gql(query, {"input": input}))[name]


def _input_type(mutation: str) -> str:
    if mutation.startswith("delete"):
        return "DeleteObjectInput"
    return mutation[0].upper() + mutation[1:] + "Input"


@pytest.fixture
def calls(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every call of ``store.on_change``, recorded around the real method."""
    seen: list[tuple[str, str, dict[str, Any]]] = []
    original = emulator.store.on_change

    def spy(resource: str, action: str, obj: dict[str, Any]) -> None:
        seen.append((resource, action, obj))
        original(resource, action, obj)

    monkeypatch.setattr(emulator.store, "on_change", spy)
    return seen


def test_run_lifecycle_calls_on_change(emulator: EmulatorServer, gql: GraphQL, calls: list) -> None:
    run = _mutate(
        gql, "createRun", {"title": "Run 7", "workcenter": "WC-1", "partId": "42"}, f"run {{ {RUN_FIELDS} }}"
    )["run"]
    assert (run["id"], run["status"], run["partId"]) == ("1", "TODO", "42")
    updated = _mutate(
        gql, "updateRun", {"id": run["id"], "etag": run["_etag"], "status": "IN_PROGRESS"}, "run { _etag status }"
    )["run"]
    assert updated["status"] == "IN_PROGRESS" and updated["_etag"] != run["_etag"]
    stale = gql(
        "mutation ($i: UpdateRunInput!) { updateRun(input: $i) { run { id } } }",
        {"i": {"id": run["id"], "etag": run["_etag"], "status": "DONE"}},
    )
    assert error_of(stale, 409)["extensions"]["code"] == "CONCURRENCY_CONFLICT"
    assert _mutate(gql, "deleteRun", {"id": run["id"], "etag": updated["_etag"]}, "id") == {"id": "1"}

    assert [(resource, action) for resource, action, _ in calls] == [
        ("RUNS", "CREATE"),
        ("RUNS", "UPDATE"),
        ("RUNS", "DELETE"),
    ]
    assert calls[1][2]["status"] == "IN_PROGRESS" and calls[1][2]["id"] == 1
    assert [c["action"] for c in emulator.changes] == ["CREATE", "UPDATE", "DELETE"]
    assert data_of(gql("{ run(id: 1) { id } }")) == {"run": None}


def test_each_kind_reports_its_resource(emulator: EmulatorServer, gql: GraphQL, calls: list) -> None:
    run = _mutate(gql, "createRun", {"title": "R"}, "run { id }")["run"]
    issue = _mutate(
        gql, "createIssue", {"title": "Scratch", "runId": run["id"]}, "issue { id _etag status run { title } }"
    )["issue"]
    assert (issue["status"], issue["run"]) == ("OPEN", {"title": "R"})
    po = _mutate(gql, "createPurchaseOrder", {"supplier": "Acme", "totalCost": 12.5}, "purchaseOrder { id status }")[
        "purchaseOrder"
    ]
    inventory = _mutate(
        gql,
        "createPartInventory",
        {"partId": "9", "quantity": 3, "purchaseOrderId": po["id"]},
        "partInventory { id quantity status purchaseOrder { supplier } }",
    )["partInventory"]
    assert inventory["quantity"] == 3 and inventory["purchaseOrder"] == {"supplier": "Acme"}
    _mutate(gql, "updateIssue", {"id": issue["id"], "etag": issue["_etag"], "status": "CLOSED"}, "issue { id }")
    assert [(r, a) for r, a, _ in calls] == [
        ("RUNS", "CREATE"),
        ("ISSUES", "CREATE"),
        ("PURCHASE_ORDERS", "CREATE"),
        ("PART_INVENTORIES", "CREATE"),
        ("ISSUES", "UPDATE"),
    ]
    assert data_of(gql("{ run(id: 1) { issues { id status } } }")) == {
        "run": {"issues": [{"id": issue["id"], "status": "CLOSED"}]}
    }


def test_webhook_model_changes_are_not_domain_changes(emulator: EmulatorServer, calls: list) -> None:
    receiver = emulator.store.create_receiver({"name": "qa", "webhookUri": "https://qa.example.test/"})
    emulator.store.create_subscription({"receiverId": receiver["id"], "resource": "RUNS", "action": "CREATE"})
    assert calls == [] and emulator.changes == []


def test_domain_validation(gql: GraphQL, calls: list) -> None:
    missing_run = gql('mutation { createIssue(input: {title: "x", runId: 404}) { issue { id } } }')
    error = error_of(missing_run)
    assert (error["extensions"]["code"], error["message"]) == ("NOT_FOUND", "Run 404 not found")
    blank = error_of(gql('mutation { createRun(input: {title: " "}) { run { id } } }'))
    assert blank["extensions"]["code"] == "BAD_USER_INPUT"
    negative = error_of(
        gql("mutation { createPartInventory(input: {partId: 1, quantity: -1}) { partInventory { id } } }")
    )
    assert negative["extensions"]["code"] == "BAD_USER_INPUT"
    assert calls == []


def test_lists_and_filters(emulator: EmulatorServer, gql: GraphQL) -> None:
    with emulator.store.bulk() as store:
        for i, status in enumerate(["TODO", "IN_PROGRESS", "DONE", "DONE", "TODO"]):
            store.create_object("runs", {"title": f"Run {i}", "status": status, "workcenter": f"WC-{i % 2}"})
    query = "query ($f: RunsInputFilters) { runs(filters: $f) { totalCount edges { node { id status } } } }"
    not_done = data_of(gql(query, {"f": {"status": {"neq": "DONE"}}}))["runs"]
    assert not_done["totalCount"] == 3
    wc1 = data_of(gql(query, {"f": {"workcenter": {"eq": "WC-1"}, "status": {"in": ["DONE"]}}}))["runs"]
    assert [e["node"]["id"] for e in wc1["edges"]] == ["4"]
    assert len(emulator.changes) == 5


def test_changes_route_and_resource_enum(emulator: EmulatorServer, http: httpx.Client) -> None:
    emulator.store.create_object("purchaseOrders", {"supplier": "Acme"})
    changes = http.get(emulator.base_url + "/_emulator/changes").json()["changes"]
    assert [(c["seq"], c["resource"], c["action"], c["object"]["supplier"]) for c in changes] == [
        (1, "PURCHASE_ORDERS", "CREATE", "Acme")
    ]
    enum = build_emulator_schema().get_type("ResourceEnum")
    assert isinstance(enum, GraphQLEnumType)
    assert {kind.resource for kind in DOMAIN_KINDS.values()} <= set(enum.values)
