"""``/v1/stats`` inside Airflow: the guard asks Airflow's auth manager for the caller, then the permission.

A real SimpleAuthManager (Airflow 3's default) on the session's migrated metadata DB (token revocation is
checked there), real JWTs it signed, the receiver app under uvicorn.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_ion.webhooks.app import ReceiverApp, ReceiverSettings, airflow_auth_guard
from airflow_provider_ion.webhooks.inbox import Inbox
from tests.servers import serve


@pytest.fixture
def auth_manager(airflow_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "jwt-secret-for-the-stats-guard-test-0123456789")
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()


@pytest.fixture
def stats_url(auth_manager, tmp_path) -> Iterator[str]:
    inbox = Inbox(f"sqlite:///{tmp_path}/inbox.db")
    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[], authorize_admin=airflow_auth_guard)
    with serve(app.asgi) as base:
        yield base + "/ion-webhooks/v1/stats"
    inbox.close()


def _token(auth_manager, role: str | None) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))


def test_stats_guard_checks_the_token_then_the_permission(auth_manager, stats_url) -> None:
    def get(token: str | None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(stats_url, headers=headers, timeout=10)

    assert get(None).status_code == 401  # not authenticated
    bad = get("not-a-jwt")
    assert (bad.status_code, bad.json()) == (401, {"error": "unauthorized"})  # Airflow's own API: 403
    assert bad.headers["www-authenticate"] == "Bearer"
    assert get(_token(auth_manager, "admin")).status_code == 200
    assert get(_token(auth_manager, "viewer")).status_code == 200  # SimpleAuthManager: views need VIEWER
    no_role = get(_token(auth_manager, None))  # authenticated, but no permission
    assert (no_role.status_code, no_role.json()) == (403, {"error": "forbidden"})
