"""Relay pagination over large lists (cursors, pageInfo, totalCount, caps) and ION-style filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_ion.graphql import published_document as document
from airflow_provider_ion.testing.emulator.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .conftest import GraphQL
from .helpers import data_of, error_of

RECEIVERS = """
query ($first: Int, $after: String, $last: Int, $before: String, $filters: WebhookReceiversInputFilters) {
  webhookReceivers(first: $first, after: $after, last: $last, before: $before, filters: $filters) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor totalCount }
    edges { cursor node { id name active } }
  }
}"""


def _seed_receivers(emulator: EmulatorServer, count: int) -> None:
    with emulator.store.bulk() as store:
        for i in range(1, count + 1):
            store.create_receiver(
                {"name": f"receiver-{i:04d}", "webhookUri": f"https://r{i}.example.test/", "active": i % 3 != 0}
            )


def _walk(
    gql: GraphQL, query: str, field: str, page_size: int | None, after: str | None = None, **variables: Any
) -> list[dict[str, Any]]:
    pages = []
    while True:
        connection = data_of(gql(query, {"first": page_size, "after": after, **variables}))[field]
        pages.append(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            return pages
        after = connection["pageInfo"]["endCursor"]


def test_walk_1200_receivers_in_max_pages(emulator: EmulatorServer, gql: GraphQL) -> None:
    _seed_receivers(emulator, 1200)
    pages = _walk(gql, document("ListWebhookReceivers"), "webhookReceivers", MAX_PAGE_SIZE)
    assert [len(p["edges"]) for p in pages] == [500, 500, 200]
    assert {p["pageInfo"]["totalCount"] for p in pages} == {1200}
    ids = [int(e["node"]["id"]) for p in pages for e in p["edges"]]
    assert ids == list(range(1, 1201))


def test_default_page_size_and_cursors(emulator: EmulatorServer, gql: GraphQL) -> None:
    _seed_receivers(emulator, 1200)
    pages = _walk(gql, RECEIVERS, "webhookReceivers", None)
    assert len(pages) == 1200 // DEFAULT_PAGE_SIZE
    assert pages[0]["pageInfo"]["hasPreviousPage"] is False
    assert pages[1]["pageInfo"]["hasPreviousPage"] is True
    edges = [e for p in pages for e in p["edges"]]
    assert len({e["cursor"] for e in edges}) == 1200
    assert all(p["pageInfo"]["endCursor"] == p["edges"][-1]["cursor"] for p in pages)
    assert all(p["pageInfo"]["startCursor"] == p["edges"][0]["cursor"] for p in pages)
    assert not any(e["cursor"] == e["node"]["id"] for e in edges)  # opaque, not the id


def test_last_and_before_page_backwards(emulator: EmulatorServer, gql: GraphQL) -> None:
    _seed_receivers(emulator, 1200)
    tail = data_of(gql(RECEIVERS, {"last": 10}))["webhookReceivers"]
    assert [e["node"]["id"] for e in tail["edges"]] == [str(i) for i in range(1191, 1201)]
    assert tail["pageInfo"] == {**tail["pageInfo"], "hasNextPage": False, "hasPreviousPage": True}
    before = data_of(gql(RECEIVERS, {"last": 5, "before": tail["pageInfo"]["startCursor"]}))["webhookReceivers"]
    assert [e["node"]["id"] for e in before["edges"]] == [str(i) for i in range(1186, 1191)]
    assert before["pageInfo"]["hasNextPage"] is True


def test_cursor_walk_is_stable_while_objects_are_created(emulator: EmulatorServer, gql: GraphQL) -> None:
    _seed_receivers(emulator, 120)
    first = data_of(gql(RECEIVERS, {"first": 50}))["webhookReceivers"]
    _seed_receivers(emulator, 10)
    rest = _walk(gql, RECEIVERS, "webhookReceivers", 50, after=first["pageInfo"]["endCursor"])
    ids = [int(e["node"]["id"]) for p in [first, *rest] for e in p["edges"]]
    assert ids == list(range(1, 131))
    assert first["pageInfo"]["totalCount"] == 120 and rest[0]["pageInfo"]["totalCount"] == 130


@pytest.mark.parametrize(
    "variables", [{"first": MAX_PAGE_SIZE + 1}, {"last": 1000}, {"first": -1}, {"after": "not-a-cursor"}]
)
def test_page_size_cap_and_bad_cursor_are_bad_user_input(gql: GraphQL, variables: dict[str, Any]) -> None:
    assert error_of(gql(RECEIVERS, variables))["extensions"]["code"] == "BAD_USER_INPUT"


def test_walk_1200_subscriptions_filtered_by_receiver(emulator: EmulatorServer, gql: GraphQL) -> None:
    _seed_receivers(emulator, 3)
    resources = ["RUNS", "ISSUES", "PURCHASE_ORDERS", "PART_INVENTORIES"]
    with emulator.store.bulk() as store:
        for i in range(1200):
            store.create_subscription({"receiverId": i % 3 + 1, "resource": resources[i % 4], "action": "CREATE"})
    query = document("ListWebhookSubscriptions")
    pages = _walk(gql, query, "webhookSubscriptions", 500)
    assert [len(p["edges"]) for p in pages] == [500, 500, 200]
    mine = _walk(gql, query, "webhookSubscriptions", 150, filters={"receiverId": {"eq": "2"}})
    nodes = [e["node"] for p in mine for e in p["edges"]]
    assert len(nodes) == 400 and mine[0]["pageInfo"]["totalCount"] == 400
    assert {n["receiverId"] for n in nodes} == {"2"}
    runs_of_2 = {"receiverId": {"eq": "2"}, "resource": {"in": ["RUNS", "ISSUES"]}}
    assert data_of(gql(query, {"filters": runs_of_2}))["webhookSubscriptions"]["pageInfo"]["totalCount"] == 200


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"name": {"eq": "receiver-0002"}}, [2]),
        ({"name": {"contains": "RECEIVER-000"}}, list(range(1, 10))),
        ({"name": {"in": ["receiver-0001", "receiver-0005", "nope"]}}, [1, 5]),
        ({"id": {"in": ["3", "4"]}, "name": {"neq": "receiver-0003"}}, [4]),
        ({"active": {"eq": False}}, [3, 6, 9]),
        ({"id": {"neq": "1"}, "active": {"eq": True}}, [2, 4, 5, 7, 8, 10, 11]),
        ({"name": {"eq": None}}, list(range(1, 12))),
    ],
)
def test_receiver_filters(emulator: EmulatorServer, gql: GraphQL, filters: dict[str, Any], expected: list[int]) -> None:
    _seed_receivers(emulator, 11)
    connection = data_of(gql(RECEIVERS, {"filters": filters}))["webhookReceivers"]
    assert [int(e["node"]["id"]) for e in connection["edges"]] == expected
    assert connection["pageInfo"]["totalCount"] == len(expected)


def test_event_filters_and_subscription_event_pages(emulator: EmulatorServer, gql: GraphQL) -> None:
    receiver = emulator.store.create_receiver({"name": "qa", "webhookUri": "https://qa.example.test/"})
    subs = [
        emulator.store.create_subscription({"receiverId": receiver["id"], "resource": r, "action": "UPDATE"})
        for r in ("RUNS", "ISSUES")
    ]
    with emulator.store.bulk() as store:
        for i in range(120):
            store.add_event(subs[i % 2]["id"], status="FAILED" if i % 10 == 0 else "SUCCESS")
    query = document("ListWebhookEvents")
    failed = data_of(gql(query, {"filters": {"status": {"eq": "FAILED"}}}))["webhookEvents"]
    assert failed["pageInfo"]["totalCount"] == 12
    issue_events = _walk(gql, query, "webhookEvents", 25, filters={"subscriptionId": {"eq": subs[1]["id"]}})
    nodes = [e["node"] for p in issue_events for e in p["edges"]]
    assert len(nodes) == 60 and {n["resource"] for n in nodes} == {"ISSUES"}

    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for window, count in [({"gte": past}, 120), ({"gt": future}, 0), ({"lt": future, "gt": past}, 120)]:
        events = data_of(gql(query, {"filters": {"createdAt": window}}))["webhookEvents"]
        assert events["pageInfo"]["totalCount"] == count
    bad = gql(query, {"filters": {"createdAt": {"gt": "yesterday"}}})
    assert error_of(bad)["extensions"]["code"] == "BAD_USER_INPUT"

    per_sub = """query ($id: ID!) { webhookSubscription(id: $id) { events { id status } } }"""
    events = data_of(gql(per_sub, {"id": subs[0]["id"]}))["webhookSubscription"]["events"]
    assert len(events) == 60 and {e["status"] for e in events} <= {"FAILED", "SUCCESS"}
