"""pytest plugin for testing your ION DAGs: the emulator, an inbox, and ``dag.test()`` against an event.

Installed with the provider (entry point ``pytest11``: ``ion``), it only adds fixtures; nothing runs
unless a test asks for a fixture by name (no autouse fixtures, no Airflow import when pytest starts).

A whole test of an event-driven DAG::

    from pathlib import Path

    DAG_FILE = Path(__file__).parents[1] / "dags" / "my_issue_dag.py"

    def test_issue_on_a_run_files_a_nonconformance(ion_inbox, run_ion_dag):
        event = ion_inbox.deliver("ISSUES", "CREATE", {"id": 7, "runId": 42, "title": "Scratch"})
        result = run_ion_dag(DAG_FILE, event=event)
        assert result.state == "success"
        assert result["file_nonconformance"].xcom["run_id"] == 42

Fixtures:

- ``ion_emulator``: a real ION emulator (HTTP on 127.0.0.1, one per session, reset for each test);
  ``ion_emulator.store`` seeds and inspects objects, receivers and subscriptions.
- ``ion_connection``: the connection ``ion_default`` pointing at the emulator, as
  ``AIRFLOW_CONN_ION_DEFAULT`` for this test; returns the conn id.
- ``ion_inbox``: an empty inbox (SQLite in the test's tmp_path) that triggers and sensors read
  (``AIRFLOW__ION_WEBHOOKS__INBOX_URL`` for this test); ``deliver(resource, action, data)`` stores a
  delivery as the receiver would and returns the ``InboxEvent``.
- ``run_ion_dag(dag_or_path, event=..., conf=...)``: runs the DAG once with ``dag.test()`` in this
  process, the event as a triggering asset event of each matching ``IonWebhookTrigger`` watcher, or
  for a sensor already waiting in the inbox; returns a ``DagRunResult`` (see
  :mod:`airflow_provider_ion.testing.dag_test`). It needs a migrated Airflow metadata DB: the
  ``ion_airflow_db`` fixture runs ``airflow db migrate`` once per session.

Airflow reads ``AIRFLOW_HOME`` once, when first imported. To run against a throwaway home (SQLite DB,
empty DAGs folder) instead of ``~/airflow``, set ``ion_airflow_home = auto`` in your pytest ini options:
the plugin then sets ``AIRFLOW_HOME`` and friends to a temporary folder before tests are collected
(unless Airflow was already imported).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

_AUTO_HOME: list[Path] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "ion_airflow_home",
        "'auto': run the tests on a temporary AIRFLOW_HOME with a SQLite DB (airflow-provider-ion plugin)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    if str(config.getini("ion_airflow_home")).strip().lower() != "auto":
        return
    if "airflow" in sys.modules:
        raise pytest.UsageError(
            "ion_airflow_home = auto: Airflow was imported before the plugin could set AIRFLOW_HOME; "
            "set AIRFLOW_HOME yourself instead"
        )
    home = Path(tempfile.mkdtemp(prefix="ion-dag-tests-"))
    (home / "dags").mkdir()
    _AUTO_HOME.append(home)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    while _AUTO_HOME:
        shutil.rmtree(_AUTO_HOME.pop(), ignore_errors=True)


# ---- the emulator and the connection ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ion_emulator_server() -> Iterator[Any]:
    """One ION emulator for the session (uvicorn in a thread, free 127.0.0.1 port); prefer ``ion_emulator``."""
    from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings
    from airflow_provider_ion.testing.emulator.server import EmulatorServer

    # Webhooks only to loopback receivers, retried quickly: a test never reaches a real host.
    with EmulatorServer(delivery=DeliverySettings(retry_schedule=(0.1, 0.5, 1), loopback_only=True)) as server:
        yield server


@pytest.fixture
def ion_emulator(ion_emulator_server: Any) -> Any:
    """The session's ION emulator, reset: no objects, receivers, faults or valid tokens."""
    ion_emulator_server.reset()
    return ion_emulator_server


@pytest.fixture
def ion_connection(ion_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Connection ``ion_default`` -> the emulator (``AIRFLOW_CONN_ION_DEFAULT``, this test only); its id."""
    from airflow_provider_ion.testing.local_airflow import connection_env, emulator_connection

    for name, value in connection_env("ion_default", emulator_connection(ion_emulator)).items():
        monkeypatch.setenv(name, value)
    return "ion_default"


# ---- the inbox -------------------------------------------------------------------------------------


class IonTestInbox:
    """The inbox a test's triggers and sensors read, with a way to put deliveries in it.

    Example::

        event = ion_inbox.deliver("RUNS", "CREATE", {"id": 1, "workcenter": "WC-1"})
        assert ion_inbox.inbox.get("airflow", event.event_id) is not None
    """

    def __init__(self, url: str) -> None:
        from airflow_provider_ion.webhooks.inbox import Inbox

        self.url = url
        self.inbox = Inbox(url)

    def deliver(
        self,
        resource: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_id: str | int | None = None,
        subscription_id: int = 1,
        receiver: str = "airflow",
    ) -> Any:
        """Store a delivery with the emulator's body layout (``event_id``, ``subscription_id``, ``resource``,
        ``action``, ``data``, ``created_at``) as receiver ``receiver`` accepts it; returns the ``InboxEvent``."""
        body = {
            "event_id": event_id if event_id is not None else uuid.uuid4().int % 10**9,
            "subscription_id": subscription_id,
            "resource": resource,
            "action": action,
            "data": dict(data or {}),
            "created_at": datetime.now(UTC).isoformat(),
        }
        return self.deliver_body(body, receiver=receiver)

    def deliver_body(self, body: Mapping[str, Any], *, receiver: str = "airflow") -> Any:
        """Store a delivery body as given (e.g. one the emulator sent: ``/_emulator/events``)."""
        if "event_id" not in body:
            raise ValueError("a delivery body needs an event_id")
        self.inbox.append(receiver, body["event_id"], json.dumps(dict(body)).encode())
        event = self.inbox.get(receiver, body["event_id"])
        assert event is not None
        return event

    def close(self) -> None:
        self.inbox.close()


@pytest.fixture
def ion_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IonTestInbox]:
    """An empty inbox for this test; triggers and sensors read it (``[ion_webhooks] inbox_url``)."""
    url = f"sqlite:///{tmp_path / 'ion_inbox.db'}"
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", url)
    inbox = IonTestInbox(url)
    try:
        yield inbox
    finally:
        inbox.close()


# ---- running DAGs ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ion_airflow_db() -> str:
    """Airflow's metadata DB, migrated once per session (``airflow db migrate``); its URL."""
    from airflow.configuration import conf

    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return conf.get("database", "sql_alchemy_conn")


@pytest.fixture
def run_ion_dag(ion_airflow_db: str) -> Callable[..., Any]:
    """``run_ion_dag(dag_or_path, *, event=None, conf=None, dag_id=None) -> DagRunResult``: one
    ``dag.test()`` run in this process (see :func:`airflow_provider_ion.testing.dag_test.run_dag`)."""
    from airflow_provider_ion.testing.dag_test import run_dag

    return run_dag
