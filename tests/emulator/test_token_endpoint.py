"""The Keycloak-style client-credentials endpoint: credentials, errors, lifetime and expiry."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .helpers import fetch_token

PING = "query Ping { webhookReceivers(first: 1) { pageInfo { totalCount } } }"


def _form(server: EmulatorServer, **overrides: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": server.client_id, "client_secret": server.client_secret}
    form.update(overrides)
    return {k: v for k, v in form.items() if v != ""}


def test_good_credentials_get_a_bearer_token(emulator: EmulatorServer, http: httpx.Client) -> None:
    response = http.post(emulator.token_url, data=_form(emulator, audience="https://api.example.test"))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert len(body["access_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"
    assert emulator.stats["token_requests"] == 1
    assert emulator.stats["tokens_issued"] == 1


def test_legacy_auth_prefix_and_basic_auth_are_accepted(emulator: EmulatorServer, http: httpx.Client) -> None:
    legacy = emulator.base_url + "/auth/realms/api-keys/protocol/openid-connect/token"
    assert http.post(legacy, data=_form(emulator)).status_code == 200
    basic = base64.b64encode(f"{emulator.client_id}:{emulator.client_secret}".encode()).decode()
    response = http.post(
        emulator.token_url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200
    assert emulator.stats["token_requests"] == 2


@pytest.mark.parametrize(
    "overrides", [{"client_secret": "wrong"}, {"client_id": "someone-else"}, {"client_secret": ""}]
)
def test_wrong_credentials_are_401_invalid_client(
    emulator: EmulatorServer, http: httpx.Client, overrides: dict[str, str]
) -> None:
    response = http.post(emulator.token_url, data=_form(emulator, **overrides))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert emulator.stats["token_requests"] == 1
    assert emulator.stats["tokens_issued"] == 0


@pytest.mark.parametrize(("grant_type", "error"), [("password", "unsupported_grant_type"), ("", "invalid_request")])
def test_wrong_grant_type_is_400(emulator: EmulatorServer, http: httpx.Client, grant_type: str, error: str) -> None:
    response = http.post(emulator.token_url, data=_form(emulator, grant_type=grant_type))
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_token_expires_after_its_lifetime(emulator: EmulatorServer, http: httpx.Client) -> None:
    emulator.token_lifetime = 1
    response = http.post(emulator.token_url, data=_form(emulator))
    assert response.json()["expires_in"] == 1
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert http.post(emulator.graphql_url, json={"query": PING}, headers=headers).status_code == 200
    time.sleep(1.1)
    expired = http.post(emulator.graphql_url, json={"query": PING}, headers=headers)
    assert expired.status_code == 401
    assert expired.json()["errors"][0]["message"] == "Unauthorized"


def test_expire_tokens_and_reset_restore_defaults(emulator: EmulatorServer, http: httpx.Client) -> None:
    token = fetch_token(emulator, http)
    emulator.expire_tokens()
    response = http.post(emulator.graphql_url, json={"query": PING}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    emulator.token_lifetime = 5
    emulator.reset()
    assert emulator.token_lifetime == 300
    assert emulator.stats["token_requests"] == 0
