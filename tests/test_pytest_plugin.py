"""The pytest plugin is installed (entry point) and inert until a test names a fixture: no Airflow import
when pytest starts, no autouse fixture, AIRFLOW_HOME untouched without ``ion_airflow_home = auto``."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

from airflow_provider_ion.testing import pytest_plugin


def test_registered_as_a_pytest11_entry_point(request: pytest.FixtureRequest) -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "ion"]
    assert entry.value == "airflow_provider_ion.testing.pytest_plugin"
    assert request.config.pluginmanager.get_plugin("ion") is not None


def test_no_autouse_fixtures() -> None:
    markers = {
        name: value._fixture_function_marker
        for name, value in vars(pytest_plugin).items()
        if hasattr(value, "_fixture_function_marker")
    }
    assert {"ion_emulator", "ion_connection", "ion_inbox", "run_ion_dag", "ion_airflow_db"} <= set(markers)
    assert [name for name, marker in markers.items() if marker.autouse] == []


def test_importing_the_plugin_imports_no_airflow() -> None:
    code = "import sys, airflow_provider_ion.testing.pytest_plugin; print('airflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_this_session_keeps_its_own_airflow_home() -> None:
    # tests/conftest.py chose it; the plugin changes it only with `ion_airflow_home = auto`.
    assert os.environ["AIRFLOW_HOME"].rsplit("/", 1)[-1].startswith("ion-provider-tests-")


def test_inbox_fixture_stores_deliveries_the_triggers_read(ion_inbox) -> None:
    from airflow_provider_ion import config

    event = ion_inbox.deliver("ISSUES", "CREATE", {"id": 3, "runId": 9}, event_id=77)
    assert config.inbox_url() == ion_inbox.url
    assert (event.event_id, event.resource, event.action) == ("77", "ISSUES", "CREATE")
    assert event.to_dict()["payload"]["data"] == {"id": 3, "runId": 9}


def test_connection_fixture_points_ion_default_at_the_emulator(ion_connection, ion_emulator) -> None:
    from airflow_provider_ion.hooks.ion import IonHook

    assert ion_connection == "ion_default"
    with IonHook(ion_connection) as hook:
        assert hook.graphql_url == ion_emulator.graphql_url
        assert hook.list_receivers() == []
