"""Fixtures for emulator -> HTTP -> receiver -> inbox tests: inbox URLs on SQLite and on PostgreSQL.

The receiver's settings have no table prefix (``ReceiverSettings`` passes none to the inbox), so each
PostgreSQL test gets a database of its own, dropped afterwards; concurrent runs never share tables,
NOTIFY channels or advisory locks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_provider_ion.testing.emulator.server import EmulatorServer

PG_URL = os.environ.get("ION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "integration-secret-0123456789abcdef"


def _admin_conninfo() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The SQLAlchemy URL of a fresh PostgreSQL database (skips when the server is unreachable)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"ion_it_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=3)
    except Exception as error:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {type(error).__name__}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def inbox_url(request, tmp_path: Path) -> str:
    """``sqlite`` (a file) or ``postgresql`` (a database of its own), by the test's ``backend`` param."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def ion(emulator: EmulatorServer) -> EmulatorServer:
    """The session emulator, retrying on a short schedule (its reset restores the defaults)."""
    emulator.configure_deliveries(retry_schedule=(0.05, 0.1, 0.2, 0.4, 0.8, 1.0), max_attempts=60, timeout=5)
    return emulator


@pytest.fixture
def subscribe(ion: EmulatorServer) -> Callable[..., dict]:
    """``subscribe(url, "RUNS/CREATE", ..., name="factory")``: a receiver with the test secret."""

    def make(url: str, *pairs: str, name: str = "factory") -> dict:
        receiver = ion.store.create_receiver({"name": name, "webhookUri": url, "sharedSecret": SECRET})
        for pair in pairs:
            resource, action = pair.split("/")
            ion.store.create_subscription({"receiverId": receiver["id"], "resource": resource, "action": action})
        return receiver

    return make
