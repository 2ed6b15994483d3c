"""Fixtures for the webhook building blocks: an inbox on a SQLite file and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("ION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_unreachable_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(conninfo, connect_timeout=2):
            return None
    except Exception as error:
        return f"PostgreSQL at {PG_URL} is unreachable: {type(error).__name__}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test server's URL; skips (saying why) when the server cannot be reached."""
    reason = _pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def unique_prefix() -> str:
    """A table prefix (and NOTIFY channel) of its own, so concurrent test runs never collide."""
    return f"t{uuid.uuid4().hex[:12]}_inbox"


def _drop(inbox) -> None:
    inbox.close()
    if inbox.backend == "postgresql":
        import sqlalchemy as sa

        engine = sa.create_engine(inbox._url)
        with engine.begin() as conn:
            inbox.metadata.drop_all(conn, checkfirst=True)
        engine.dispose()


@pytest.fixture
def make_inbox(request, tmp_path, unique_prefix) -> Iterator:
    """``make_inbox(backend, **settings)``: inboxes that are dropped (PostgreSQL tables) afterwards."""
    from airflow_provider_ion.webhooks.inbox import Inbox

    made = []

    def make(backend: str, **settings):
        url = f"sqlite:///{tmp_path / 'inbox.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
        settings.setdefault("table_prefix", unique_prefix)
        inbox = Inbox.from_url(url, **settings)
        made.append(inbox)
        return inbox

    yield make
    for inbox in made:
        _drop(inbox)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def inbox(make_inbox, backend):
    """An empty inbox on each backend."""
    return make_inbox(backend)
