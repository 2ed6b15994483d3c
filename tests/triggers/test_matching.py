from __future__ import annotations

import pytest

from airflow_provider_ion.triggers.matching import EventFilter, get_path, normalize_names, values_equal

EVENT = {
    "receiver": "factory",
    "resource": "ISSUES",
    "action": "CREATE",
    "payload": {"event_id": 9, "data": {"runId": 7, "price": 7.5, "open": True, "tags": ["a", "b"],
                                        "parts": [{"sn": "X1"}], "owner": None, "code": "07"}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        (7, "7", True),
        (7, 7.0, True),
        (7.5, "7.50", True),
        ("7", 7, True),
        ("07", "7", False),  # two strings: as strings
        ("07", 7, True),  # one number: as numbers
        (True, "true", True),
        (True, "True", True),
        (False, "false", True),
        (True, 1, False),
        (1, True, False),
        (None, None, True),
        (None, "None", True),
        ("x", None, False),
        ("abc", "abc", True),
        ("abc", "ABC", False),
        ({"a": 1}, {"a": 1}, True),
        (7, "seven", False),
    ],
)
def test_values_equal(actual, expected, equal) -> None:
    assert values_equal(actual, expected) is equal


def test_paths() -> None:
    body = EVENT["payload"]
    assert get_path(body, "data.runId") == 7
    assert get_path(body, "data.parts.0.sn") == "X1"
    assert values_equal(get_path(body, "data.missing"), None)  # missing matches None
    assert not values_equal(get_path(body, "data.missing"), "x")
    assert not values_equal(get_path(body, "data.runId.deeper"), 7)
    assert not values_equal(get_path(body, "data.parts.5.sn"), "X1")


@pytest.mark.parametrize(
    ("kwargs", "matches"),
    [
        ({}, True),
        ({"resource": "issues"}, True),
        ({"resource": ["RUNS", "ISSUES"], "action": "create"}, True),
        ({"resource": "RUNS"}, False),
        ({"action": ["UPDATE"]}, False),
        ({"receiver": "factory"}, True),
        ({"receiver": "qa"}, False),
        ({"match": {"data.runId": "7"}}, True),  # a rendered template
        ({"match": {"data.runId": ["5", "7"]}}, True),  # any of
        ({"match": {"data.runId": ["5", "6"]}}, False),
        ({"match": {"data.runId": 7, "data.open": "True", "data.code": "07"}}, True),
        ({"match": {"data.runId": 7, "data.code": "7"}}, False),
        ({"match": {"data.owner": None}}, True),
        ({"match": {"event_id": "9"}}, True),
    ],
)
def test_event_filter(kwargs, matches) -> None:
    assert EventFilter.build(**kwargs).matches(EVENT) is matches


def test_filter_on_inbox_events_and_bad_paths() -> None:
    from datetime import UTC, datetime

    from airflow_provider_ion.webhooks.inbox import InboxEvent

    event = InboxEvent(1, "factory", "9", None, "ISSUES", "CREATE", EVENT["payload"], datetime.now(UTC))
    assert EventFilter.build(resource="ISSUES", match={"data.runId": "7"}).matches(event)
    with pytest.raises(ValueError, match="dotted"):
        EventFilter.build(match={"data..runId": 1})


def test_names_and_fingerprint_are_order_insensitive() -> None:
    assert normalize_names(["create", " UPDATE", "CREATE"]) == ["CREATE", "UPDATE"]
    assert normalize_names(None) is None and normalize_names([]) is None
    a = EventFilter.build(resource=["RUNS", "issues"], match={"b": 1, "a": [1, 2]})
    b = EventFilter.build(resource=["ISSUES", "runs"], match={"a": [1, 2], "b": 1})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != EventFilter.build(resource="RUNS").fingerprint()
