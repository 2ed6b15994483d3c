"""Assertions shared by the emulator's tests."""

from __future__ import annotations

from typing import Any

import httpx

from airflow_provider_ion.testing.emulator.server import EmulatorServer


def fetch_token(server: EmulatorServer, http: httpx.Client) -> str:
    response = http.post(
        server.token_url,
        data={"grant_type": "client_credentials", "client_id": server.client_id, "client_secret": server.client_secret},
    )
    response.raise_for_status()
    return response.json()["access_token"]


def data_of(response: httpx.Response) -> dict[str, Any]:
    """The ``data`` of a successful GraphQL response (fails the test on any error)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def error_of(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The single GraphQL error of a response, checking the HTTP status."""
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    return errors[0]
