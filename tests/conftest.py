"""Shared fixtures.

Airflow reads its configuration when first imported, so the test session's Airflow home (a fresh
temporary folder with its own SQLite metadata DB and DAGs folder) is set here, before any test
module imports Airflow. ``airflow_db`` migrates that DB once per session; ``run_operator`` runs one
operator in a real DAG run (``dag.test()``), against whatever the test set up (usually the emulator).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="ion-provider-tests-"))
(_HOME / "dags").mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
)
# Imported only now, after AIRFLOW_HOME is set (it does not import Airflow today; keep it that way).
from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings  # noqa: E402
from airflow_provider_ion.testing.emulator.server import EmulatorServer  # noqa: E402

#: End-to-end tests start real Airflow processes on a shared 2-core machine; a failed one is run once more
#: (pytest-rerunfailures; the run's summary counts it as "rerun", so a flaky test stays visible). A test that
#: fails twice fails the run. ION_E2E_RERUNS=0 turns this off.
E2E_RERUNS = int(os.environ.get("ION_E2E_RERUNS", "1"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if E2E_RERUNS <= 0 or not config.pluginmanager.hasplugin("rerunfailures"):
        return
    for item in items:
        if item.get_closest_marker("e2e") is not None and item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=E2E_RERUNS, reruns_delay=2))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_schema_cache() -> Iterator[None]:
    """The hook learns ION's schema once per connection and process: every test starts without it."""
    from airflow_provider_ion.hooks.schema import clear_schema_cache

    clear_schema_cache()
    yield
    clear_schema_cache()


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One real ION emulator (uvicorn in a thread on a free 127.0.0.1 port) for the whole session."""
    # loopback_only: a test's receiver at https://*.example.com must never cause a real connection.
    with EmulatorServer(delivery=DeliverySettings(loopback_only=True)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The session's emulator, reset: empty store, no faults, zero stats, no valid tokens."""
    emulator_server.reset()
    return emulator_server


@pytest.fixture(scope="session")
def profiled_emulators() -> Iterator[Callable[[str], EmulatorServer]]:
    """``get(profile)``: one emulator per profile for the session, started on first use, reset."""
    servers: dict[str, EmulatorServer] = {}

    def get(profile: str) -> EmulatorServer:
        if profile not in servers:
            servers[profile] = EmulatorServer(profile=profile, delivery=DeliverySettings(loopback_only=True)).start()
        servers[profile].reset()
        return servers[profile]

    yield get
    for server in servers.values():
        server.stop()


def connection_json(server: EmulatorServer) -> str:
    """An ``ion`` connection to ``server`` in Airflow's JSON form."""
    import json

    body = {
        "conn_type": "ion",
        "login": server.client_id,
        "password": server.client_secret,
        "host": server.base_url,
        "extra": {"auth_url": server.token_url},
    }
    return json.dumps(body)


def define_ion_connection(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, conn_id: str = "ion_default") -> str:
    """Point the ``AIRFLOW_CONN_<ID>`` connection ``conn_id`` at ``server``; returns ``conn_id``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(server))
    return conn_id


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's Airflow metadata DB, migrated once (a real ``airflow db migrate``)."""
    import subprocess
    import sys

    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)
    return _HOME


@pytest.fixture
def ion_default_conn(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Connection ``ion_default`` pointing at the emulator, as an ``AIRFLOW_CONN_`` JSON variable."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_ION_DEFAULT",
        json.dumps(
            {
                "conn_type": "ion",
                "login": emulator.client_id,
                "password": emulator.client_secret,
                "host": emulator.base_url,
                "extra": {"token_url": emulator.token_url},
            }
        ),
    )
    return "ion_default"
