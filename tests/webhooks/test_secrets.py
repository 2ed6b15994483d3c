"""Secret resolution for the receiver: Airflow Variable, Airflow Connection, then ION; cached."""

from __future__ import annotations

import json

import pytest

from airflow_provider_ion.webhooks.secrets import (
    LookupDeferred,
    ReceiverSecrets,
    SecretResolver,
    airflow_connection_source,
    airflow_variable_source,
    parse_secret_value,
    remote,
    variable_name,
)


def test_parse_secret_value_single_and_rotation_list() -> None:
    assert parse_secret_value("  abc  ") == ("abc",)
    assert parse_secret_value('["new", "old"]') == ("new", "old")
    assert parse_secret_value('["new", 3, ""]') == ("new",)
    assert parse_secret_value("[not json") == ("[not json",)
    assert parse_secret_value("") == ()


def test_variable_source_reads_airflow_variables(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_" + variable_name("factory").upper(), json.dumps(["new-secret", "old-secret"]))
    found = airflow_variable_source("factory")
    assert found is not None
    assert found.secrets == ("new-secret", "old-secret")
    assert found.source == "variable"
    assert airflow_variable_source("nobody-by-that-name") is None


def test_connection_source_reads_the_password(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ION_WEBHOOK_FACTORY", json.dumps({"conn_type": "generic", "password": "conn-secret"})
    )
    found = airflow_connection_source("factory")
    assert found is not None and found.secrets == ("conn-secret",)
    assert airflow_connection_source("nobody-by-that-name") is None


def test_repr_never_shows_secrets() -> None:
    value = ReceiverSecrets(("very-secret-value",), source="variable")
    assert "very-secret-value" not in repr(value)
    assert "very-secret-value" not in str(value)


def test_first_source_that_knows_the_receiver_wins_and_failures_are_skipped(caplog) -> None:
    def broken(name: str) -> ReceiverSecrets | None:
        raise RuntimeError("database is down; password=hunter2")

    def first(name: str) -> ReceiverSecrets | None:
        return None

    def second(name: str) -> ReceiverSecrets | None:
        return ReceiverSecrets(("s2",), source="second")

    resolver = SecretResolver([broken, first, second])
    assert resolver.resolve("factory").source == "second"
    assert "hunter2" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_unknown_receivers_are_cached_for_the_refresh_interval() -> None:
    calls: list[str] = []
    now = [0.0]

    def source(name: str) -> ReceiverSecrets | None:
        calls.append(name)
        return None

    resolver = SecretResolver([source], refresh_interval=60, clock=lambda: now[0])
    assert resolver.resolve("ghost") is None
    assert resolver.resolve("ghost") is None
    assert resolver.refresh("ghost") is None
    assert calls == ["ghost"]
    now[0] = 61
    assert resolver.resolve("ghost") is None
    assert calls == ["ghost", "ghost"]


def test_remote_lookups_of_new_names_have_a_global_budget_and_then_defer() -> None:
    calls: list[str] = []
    now = [0.0]
    resolver = SecretResolver([remote(lambda n: calls.append(n))], max_lookups=5, clock=lambda: now[0])
    for i in range(5):
        assert resolver.resolve(f"forged-{i}") is None
    with pytest.raises(LookupDeferred) as deferred:
        resolver.resolve("forged-5")
    assert deferred.value.retry_after == 60
    assert len(calls) == 5
    now[0] = 30
    with pytest.raises(LookupDeferred) as deferred:
        resolver.resolve("forged-6")
    assert deferred.value.retry_after == 30
    now[0] = 60
    assert resolver.resolve("forged-6") is None
    assert len(calls) == 6


def test_local_sources_are_always_consulted_and_known_names_have_their_own_budget() -> None:
    local_calls: list[str] = []
    remote_calls: list[str] = []
    now = [0.0]

    def variable(name: str) -> ReceiverSecrets | None:
        local_calls.append(name)
        return ReceiverSecrets(("v",)) if name == "configured" else None

    def ion(name: str) -> ReceiverSecrets | None:
        remote_calls.append(name)
        return ReceiverSecrets(("i",)) if name == "in-ion" else None

    resolver = SecretResolver([variable, remote(ion)], max_lookups=2, clock=lambda: now[0])
    assert resolver.resolve("in-ion").secrets == ("i",)
    assert resolver.resolve("stranger") is None  # the budget is now spent
    with pytest.raises(LookupDeferred):
        resolver.resolve("another-stranger")
    assert resolver.resolve("configured").secrets == ("v",)  # never needs the budget
    now[0] = 61
    assert resolver.refresh("in-ion").secrets == ("i",)  # a known name's refresh is not charged
    assert remote_calls == ["in-ion", "stranger", "in-ion"]


def test_unknown_names_live_in_a_bounded_lru() -> None:
    resolver = SecretResolver([lambda n: None], max_unknown=3, clock=lambda: 0.0)
    for name in ("a", "b", "c", "d"):
        resolver.resolve(name)
    assert resolver.unknown_cached == 3


def test_a_failing_refresh_keeps_a_known_receivers_secrets() -> None:
    state = {"up": True}
    now = [0.0]

    def ion(name: str) -> ReceiverSecrets | None:
        if not state["up"]:
            raise ConnectionError("ION is down")
        return ReceiverSecrets(("s",))

    resolver = SecretResolver([remote(ion)], clock=lambda: now[0])
    assert resolver.resolve("factory").secrets == ("s",)
    state["up"], now[0] = False, 61
    assert resolver.refresh("factory").secrets == ("s",)
    assert resolver.peek("factory").secrets == ("s",)


def test_names_are_canonical_lower_case_in_variable_and_connection_ids() -> None:
    assert variable_name("Factory-Events") == "ion_webhook_secret_factory-events"


@pytest.mark.parametrize("known", [True, False])
def test_forget_drops_the_cache(known: bool) -> None:
    calls: list[str] = []

    def source(name: str) -> ReceiverSecrets | None:
        calls.append(name)
        return ReceiverSecrets(("s",)) if known else None

    resolver = SecretResolver([source])
    resolver.resolve("factory")
    resolver.forget("factory")
    resolver.resolve("factory")
    assert calls == ["factory", "factory"]
