"""With a state file, a restarted emulator keeps its objects, etags, secrets and id sequences."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from airflow_provider_ion.graphql import published_document as document
from airflow_provider_ion.testing.emulator.server import EmulatorServer
from airflow_provider_ion.testing.emulator.store import Store

from .helpers import data_of, fetch_token


def _gql(server: EmulatorServer, http: httpx.Client, query: str, variables: dict) -> dict:
    headers = {"Authorization": fetch_token(server, http)}
    return data_of(http.post(server.graphql_url, json={"query": query, "variables": variables}, headers=headers))


def test_restart_keeps_state(tmp_path: Path, http: httpx.Client) -> None:
    state = tmp_path / "ion.sqlite"
    with EmulatorServer(state_file=state) as first:
        created = _gql(
            first,
            http,
            document("CreateWebhookReceiver"),
            {"input": {"name": "demo", "webhookUri": "http://127.0.0.1:9/hook"}},
        )["createWebhookReceiver"]["webhookReceiver"]
        first.store.create_subscription({"receiverId": created["id"], "resource": "RUNS", "action": "CREATE"})
        first.store.create_object("runs", {"title": "Run 1"})
        before = first.store.get("receivers", created["id"])

    with EmulatorServer(state_file=state) as second:
        assert second.store.get("receivers", created["id"]) == before
        assert before["sharedSecret"] == created["sharedSecret"]
        assert second.store.count("subscriptions") == 1
        assert [r["title"] for r in second.store.list("runs")] == ["Run 1"]
        again = _gql(
            second,
            http,
            document("CreateWebhookReceiver"),
            {"input": {"name": "demo-2", "webhookUri": "http://127.0.0.1:9/hook"}},
        )["createWebhookReceiver"]["webhookReceiver"]
        assert again["id"] == "2"  # ids continue, never reused
        second.reset()

    with EmulatorServer(state_file=state) as third:
        assert third.store.count("receivers") == 0


def test_bulk_writes_once_and_reopens(tmp_path: Path) -> None:
    state = tmp_path / "bulk.sqlite"
    store = Store(state)
    with store.bulk():
        for i in range(300):
            store.create_receiver({"name": f"r{i}", "webhookUri": "https://r.example.test/"})
    store.close()
    reopened = Store(state)
    assert reopened.count("receivers") == 300
    assert reopened.create_receiver({"name": "next", "webhookUri": "https://r.example.test/"})["id"] == 301
    reopened.close()


def test_in_memory_store_has_no_file() -> None:
    assert Store().state_file is None


def test_state_file_of_another_version_is_refused(tmp_path: Path) -> None:
    import sqlite3

    state = tmp_path / "old.sqlite"
    Store(state).close()
    with sqlite3.connect(state) as db:
        db.execute("INSERT INTO emulator_snapshot VALUES (1, 99, 'x', '{}')")
    with pytest.raises(RuntimeError, match="version 99"):
        Store(state)
