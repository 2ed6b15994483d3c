"""Fault injection, seen from a plain httpx client: statuses, delays and dropped connections,
before or after the mutation takes effect, plus the HTTP control API."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from airflow_provider_ion.graphql import published_document as document
from airflow_provider_ion.testing.emulator.app import create_app
from airflow_provider_ion.testing.emulator.core import Emulator
from airflow_provider_ion.testing.emulator.faults import make_fault
from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .helpers import data_of

CREATE = document("CreateWebhookReceiver")
PING = document("Ping")


def _create_body(name: str = "qa") -> dict[str, Any]:
    return {"query": CREATE, "variables": {"input": {"name": name, "webhookUri": "https://qa.example.test/"}}}


@pytest.fixture
def client(emulator: EmulatorServer, token: str) -> Any:
    with httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=5.0) as client:
        yield client


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_status_before_changes_nothing(emulator: EmulatorServer, client: httpx.Client, status: int) -> None:
    emulator.add_fault("status", status=status, query_contains="createWebhookReceiver")
    response = client.post("/graphql", json=_create_body())
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert emulator.store.count("receivers") == 0
    data_of(client.post("/graphql", json=_create_body()))  # consumed: the next one goes through
    assert emulator.store.count("receivers") == 1
    assert emulator.stats["faults_applied"] == 1


def test_429_carries_retry_after(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.add_fault("status", status=429, operation="Ping")
    emulator.add_fault("status", status=429, operation="Ping", retry_after=7)
    first, second = client.post("/graphql", json={"query": PING}), client.post("/graphql", json={"query": PING})
    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert (second.status_code, second.headers["retry-after"]) == (429, "7")
    assert first.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_status_after_means_the_create_happened(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.add_fault("status", status=502, when="after", operation="CreateWebhookReceiver")
    assert client.post("/graphql", json=_create_body()).status_code == 502
    assert [r["name"] for r in emulator.store.list("receivers")] == ["qa"]


def test_faults_match_operation_and_count_down(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.add_fault("status", status=503, operation="ListWebhookReceivers", times=2)
    assert client.post("/graphql", json={"query": PING}).status_code == 200  # other operation: untouched
    assert len(emulator.faults) == 1
    emulator.add_fault("status", status=503, query_contains="webhookReceivers(first: 1)", times=2)
    codes = [client.post("/graphql", json={"query": PING}).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert emulator.clear_faults() == 1
    assert emulator.stats["graphql_requests"] == 4


def test_delay_after_lets_the_client_time_out_after_the_mutation(
    emulator: EmulatorServer, client: httpx.Client
) -> None:
    emulator.add_fault("delay", delay=0.6, operation="CreateWebhookReceiver")
    with pytest.raises(httpx.ReadTimeout):
        client.post("/graphql", json=_create_body(), timeout=0.2)
    assert emulator.store.count("receivers") == 1


def test_delay_before_slows_a_normal_answer(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.add_fault("delay", delay=0.3, when="before")
    started = time.monotonic()
    data_of(client.post("/graphql", json={"query": PING}))
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(("when", "created"), [("after", 1), ("before", 0)])
def test_drop_closes_the_connection_without_a_response(
    emulator: EmulatorServer, client: httpx.Client, when: str, created: int
) -> None:
    emulator.add_fault("drop", when=when, operation="CreateWebhookReceiver")  # type: ignore[arg-type]
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post("/graphql", json=_create_body())
    assert emulator.store.count("receivers") == created
    data_of(client.post("/graphql", json={"query": PING}))  # the server is fine afterwards


def test_token_endpoint_faults(emulator: EmulatorServer, http: httpx.Client) -> None:
    emulator.add_fault("status", status=503, endpoint="token")
    form = {"grant_type": "client_credentials", "client_id": emulator.client_id, "client_secret": "x"}
    assert http.post(emulator.token_url, data=form).status_code == 503
    assert http.post(emulator.token_url, data=form).status_code == 401
    assert emulator.stats["token_requests"] == 2


def test_control_routes_over_http(emulator: EmulatorServer, http: httpx.Client, token: str) -> None:
    base = emulator.base_url + "/_emulator"
    assert http.get(base + "/health").json() == {"status": "ok"}
    created = http.post(base + "/faults", json={"kind": "status", "status": 504, "operation": "Ping", "times": 2})
    assert created.status_code == 201
    assert created.json()["fault"]["remaining"] == 2
    assert [f["status"] for f in http.get(base + "/faults").json()["faults"]] == [504]
    graphql = {"json": {"query": PING}, "headers": {"Authorization": token}}
    assert http.post(emulator.graphql_url, **graphql).status_code == 504
    stats = http.get(base + "/stats").json()
    assert (stats["token_requests"], stats["graphql_requests"], stats["graphql_operations"]) == (1, 1, {"Ping": 1})
    assert http.delete(base + "/faults").json() == {"cleared": 1}
    assert http.post(base + "/faults", json={"kind": "status", "status": 200}).status_code == 400
    assert http.post(base + "/faults", json={"kind": "teleport"}).status_code == 400
    assert http.post(base + "/faults", json={"kind": "drop", "bogus": 1}).status_code == 400
    assert http.post(base + "/tokens/expire").status_code == 200
    assert http.post(emulator.graphql_url, **graphql).status_code == 401
    assert http.post(base + "/reset").json() == {"reset": True}
    assert http.get(base + "/stats").json()["graphql_requests"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "status"},
        {"kind": "status", "status": 302},
        {"kind": "delay"},
        {"kind": "drop", "times": 0},
        {"kind": "drop", "when": "during"},
        {"kind": "delay", "delay": 1, "status": 500},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_fault(**kwargs)


async def test_control_routes_refuse_remote_clients() -> None:
    app = create_app(Emulator())
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as remote:
        assert (await remote.get("/_emulator/health")).status_code == 200
        assert (await remote.get("/_emulator/stats")).status_code == 403
        assert (await remote.post("/_emulator/reset")).status_code == 403
    app = create_app(Emulator(allow_remote_control=True))
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as remote:
        assert (await remote.get("/_emulator/stats")).status_code == 200
