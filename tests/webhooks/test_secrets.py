"""Secret resolution for the receiver: Airflow Variable, Airflow Connection, then ION; cached."""

from __future__ import annotations

import json

import pytest

from airflow_provider_ion.webhooks.secrets import (
    ReceiverSecrets,
    SecretResolver,
    airflow_connection_source,
    airflow_variable_source,
    parse_secret_value,
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


def test_lookup_budget_caps_lookups_of_new_names() -> None:
    calls: list[str] = []
    resolver = SecretResolver([lambda n: calls.append(n)], max_lookups=5, clock=lambda: 0.0)
    for i in range(50):
        resolver.resolve(f"forged-{i}")
    assert len(calls) == 5


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
