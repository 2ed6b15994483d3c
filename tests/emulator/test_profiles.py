"""Emulator profiles: each one changes one thing ION has not published (see testing/emulator/profiles.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest

from airflow_provider_ion.graphql import published_document
from airflow_provider_ion.testing.emulator.profiles import LEGACY_TOKEN_PATH, TOKEN_PATH, get_profile, profile_names
from airflow_provider_ion.testing.emulator.server import EmulatorServer
from airflow_provider_ion.webhooks.signature import SignatureScheme, verify
from tests.servers import serve

from .helpers import data_of, error_of, fetch_token
from .test_delivery import Recorder


def _gql(server: EmulatorServer, http: httpx.Client, query: str, variables: dict | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {fetch_token(server, http)}"}
    return http.post(server.graphql_url, json={"query": query, "variables": variables or {}}, headers=headers)


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="int-ids"):
        get_profile("nope")


@pytest.mark.parametrize("profile", profile_names())
def test_every_profile_serves_ping_with_its_token_path(profiled_emulators, http: httpx.Client, profile: str) -> None:
    server = profiled_emulators(profile)
    assert server.profile.name == profile
    response = _gql(server, http, published_document("Ping"))
    data = response.json()
    if get_profile(profile).total_count == "connection":
        assert "Cannot query field 'totalCount' on type 'PageInfo'" in data["errors"][0]["message"]
    else:
        assert data_of(response) == {"webhookReceivers": {"pageInfo": {"hasNextPage": False, "totalCount": 0}}}


def test_legacy_token_path_serves_only_the_old_path(profiled_emulators, http: httpx.Client) -> None:
    server = profiled_emulators("legacy-token-path")
    assert server.token_url.endswith(LEGACY_TOKEN_PATH)
    form = {"grant_type": "client_credentials", "client_id": server.client_id, "client_secret": server.client_secret}
    assert http.post(server.base_url + TOKEN_PATH, data=form).status_code == 404
    assert http.post(server.base_url + LEGACY_TOKEN_PATH, data=form).status_code == 200


def test_singular_resources(profiled_emulators, http: httpx.Client) -> None:
    server = profiled_emulators("singular-resources")
    values = data_of(_gql(server, http, published_document("EnumValues"), {"name": "ResourceEnum"}))
    names = [v["name"] for v in values["__type"]["enumValues"]]
    assert "RUN" in names and "RUNS" not in names and "PURCHASE_ORDER" in names
    receiver = server.store.create_receiver({"name": "r", "webhookUri": "https://r.example.test/"})
    bad = _gql(server, http, published_document("CreateWebhookSubscription"),
               {"input": {"receiverId": receiver["id"], "resource": "RUNS", "action": "CREATE"}})  # fmt: skip
    assert "RUNS" in error_of(bad)["message"]


def test_int_ids_reject_string_ids(profiled_emulators, http: httpx.Client) -> None:
    server = profiled_emulators("int-ids")
    receiver = server.store.create_receiver({"name": "r", "webhookUri": "https://r.example.test/"})
    as_id = _gql(server, http, published_document("GetWebhookReceiver"), {"id": receiver["id"]})
    assert "Unknown type 'ID'" in error_of(as_id)["message"]  # the published $id: ID! is refused
    ok = _gql(server, http, "query ($id: Int!) { webhookReceiver(id: $id) { id name } }", {"id": receiver["id"]})
    assert data_of(ok) == {"webhookReceiver": {"id": receiver["id"], "name": "r"}}
    assert isinstance(receiver["id"], int)
    wrong = _gql(server, http, "query ($id: Int!) { webhookReceiver(id: $id) { id } }", {"id": str(receiver["id"])})
    assert wrong.json()["errors"]


def test_header_mutations(profiled_emulators, http: httpx.Client) -> None:
    server = profiled_emulators("header-mutations")
    receiver = server.store.create_receiver({"name": "r", "webhookUri": "https://r.example.test/"})
    inline = _gql(server, http, published_document("CreateWebhookReceiver"),
                  {"input": {"name": "x", "webhookUri": "https://x.example.test/", "headers": []}})  # fmt: skip
    assert "headers" in inline.json()["errors"][0]["message"]
    added = data_of(_gql(server, http, published_document("AddHeaderToWebhookReceiver"),
                         {"input": {"receiverId": receiver["id"], "key": "X-A", "value": "1"}}))  # fmt: skip
    [header] = added["addHeaderToWebhookReceiver"]["webhookReceiver"]["headers"]
    removed = data_of(_gql(server, http, published_document("RemoveHeaderFromWebhookReceiver"),
                           {"input": {"receiverId": receiver["id"], "headerId": header["id"]}}))  # fmt: skip
    assert removed["removeHeaderFromWebhookReceiver"]["webhookReceiver"]["headers"] == []


def test_no_introspection(profiled_emulators, http: httpx.Client) -> None:
    server = profiled_emulators("no-introspection")
    for query in ("{ __schema { queryType { name } } }", '{ __type(name: "ResourceEnum") { name } }'):
        response = _gql(server, http, query)
        assert response.status_code == 200 and "introspection" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("profile", "status", "code"), [("default", 409, "CONCURRENCY_CONFLICT"), ("etag-in-200", 200, "CONFLICT")]
)
def test_stale_etag(profiled_emulators, http: httpx.Client, profile: str, status: int, code: str) -> None:
    server = profiled_emulators(profile)
    receiver = server.store.create_receiver({"name": "r", "webhookUri": "https://r.example.test/"})
    stale = {"input": {"id": receiver["id"], "etag": "stale", "active": False}}
    error = error_of(_gql(server, http, published_document("UpdateWebhookReceiver"), stale), status)
    assert error["extensions"]["code"] == code and "etag" in error["message"]


def test_event_ids_stay_unique_across_restarts() -> None:
    seen: list[int] = []
    for _ in range(2):
        with EmulatorServer() as server:
            receiver = server.store.create_receiver({"name": "r", "webhookUri": "https://r.example.test/"})
            sub = server.store.create_subscription(
                {"receiverId": receiver["id"], "resource": "RUNS", "action": "CREATE"}
            )
            seen += [server.store.add_event(sub["id"])["id"] for _ in range(3)]
    assert len(set(seen)) == 6 and seen == sorted(seen)


@pytest.mark.parametrize("profile", ["signature-base64", "standard-webhooks", "singular-resources"])
def test_deliveries_sign_and_name_resources_the_profile_way(profiled_emulators, profile: str) -> None:
    recorder = Recorder()
    from starlette.applications import Starlette
    from starlette.routing import Route

    server = profiled_emulators(profile)
    server.configure_deliveries(retry_schedule=(0.05,), max_attempts=2, timeout=5)
    with serve(Starlette(routes=[Route("/hooks/{name}", recorder.handle, methods=["POST"])])) as url:
        receiver = server.store.create_receiver({"name": "r", "webhookUri": url + "/hooks/r", "sharedSecret": "k3y"})
        spelled = "RUN" if profile == "singular-resources" else "RUNS"
        server.store.create_subscription({"receiverId": receiver["id"], "resource": spelled, "action": "CREATE"})
        server.store.create_object("runs", {"title": "R-1"})  # domain changes name the resource RUNS
        assert server.wait_for_deliveries(10)
    [seen] = recorder.requests
    body = json.loads(seen.body)
    assert body["resource"] == spelled
    headers = seen.headers
    if profile == "signature-base64":
        assert verify(seen.body, headers["x-ion-signature"], ["k3y"], SignatureScheme(encoding="base64", prefix=""))
        assert not verify(seen.body, headers["x-ion-signature"], ["k3y"])  # not the default scheme
    elif profile == "standard-webhooks":
        assert "x-ion-signature" not in headers
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + seen.body
        expected = base64.b64encode(hmac.new(b"k3y", signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == "v1," + expected
    else:
        assert verify(seen.body, headers["x-ion-signature"], ["k3y"])
