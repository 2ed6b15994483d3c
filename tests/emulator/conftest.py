"""Helpers for the emulator's own tests: a plain httpx client, a token, and a GraphQL caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_ion.testing.emulator.server import EmulatorServer

from .helpers import fetch_token

GraphQL = Callable[..., httpx.Response]


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """One keep-alive client for the session (building a client costs ~0.1 s of TLS setup)."""
    with httpx.Client(timeout=10.0) as client:
        yield client


@pytest.fixture
def token(emulator: EmulatorServer, http: httpx.Client) -> str:
    return fetch_token(emulator, http)


@pytest.fixture
def gql(emulator: EmulatorServer, http: httpx.Client, token: str) -> GraphQL:
    """``gql(query, variables=None, **httpx_kwargs)`` -> the raw response (POST /graphql with a Bearer token)."""

    def call(query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        body: dict[str, Any] = {"query": query, "variables": variables or {}}
        return http.post(emulator.graphql_url, json=body, headers={"Authorization": f"Bearer {token}"}, **kwargs)

    return call
