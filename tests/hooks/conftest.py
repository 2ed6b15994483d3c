"""Fixtures for the hook tests: connections as ``AIRFLOW_CONN_<ID>`` JSON and a clean token cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_ion.hooks.ion import clear_token_cache

CLIENT_SECRET = "s3cr3t-client-Secret-value"
SHARED_SECRET = "whsec-Shared-Secret-0123456789"


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    """The token cache is process-wide by design; every test starts (and ends) without tokens."""
    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture
def ion_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define an ``ion`` connection through the environment (the way Airflow resolves it outside a
    task); returns the connection id."""

    def define(
        conn_id: str = "ion_test",
        *,
        login: str | None = "client-id",
        password: str | None = CLIENT_SECRET,
        host: str | None = None,
        **extra: Any,
    ) -> str:
        body: dict[str, Any] = {"conn_type": "ion", "login": login, "password": password, "extra": extra}
        if host is not None:
            body["host"] = host
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
        return conn_id

    return define
