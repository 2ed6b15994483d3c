"""`airflow-ion dev` without starting Airflow: its refusals, the wiring it prepares, the text it prints.
(The whole command runs for real in tests/e2e/test_dev.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_ion.testing.dev import LocalIon, dag_files, ready_text


def test_refuses_to_wipe_a_folder_it_did_not_make(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious.txt").write_text("keep me")
    (tmp_path / "dags").mkdir()
    with pytest.raises(SystemExit, match="is not empty and was not made by airflow-ion"):
        LocalIon(home, tmp_path / "dags").prepare()
    assert (home / "precious.txt").read_text() == "keep me"


def test_missing_dags_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no DAGs folder at .*nowhere; give --dags-folder DIR"):
        LocalIon(tmp_path / "home", tmp_path / "nowhere").prepare()


def test_real_ion_needs_the_connection_in_the_environment(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "dags").mkdir()
    monkeypatch.delenv("AIRFLOW_CONN_ION_SANDBOX", raising=False)
    with pytest.raises(SystemExit, match="export AIRFLOW_CONN_ION_SANDBOX="):
        LocalIon(tmp_path / "home", tmp_path / "dags", conn_id="ion_sandbox", real_ion=True).prepare()


def test_prepare_wires_connection_receiver_secret_ports_and_inbox(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    local = LocalIon(tmp_path / "home", tmp_path / "dags", subscribe_all=True)
    try:
        local.prepare()
        env = local.stack.env
        connection = json.loads(env["AIRFLOW_CONN_ION_DEFAULT"])
        assert connection["host"] == local.emulator.base_url and connection["conn_type"] == "ion"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{local.stack.base_url}/execution/"
        ports = {env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]}
        assert len(ports) == 2 and "8793" not in ports
        assert env["AIRFLOW__ION_WEBHOOKS__INBOX_URL"] == local.inbox_url
        (receiver,) = local.emulator.store.list("receivers")
        assert receiver["webhookUri"] == local.receiver_url
        assert env["AIRFLOW_VAR_ION_WEBHOOK_SECRET_AIRFLOW"] == receiver["sharedSecret"]
        subscribed = {(s["resource"], s["action"]) for s in local.emulator.store.list("subscriptions")}
        assert ("ISSUES", "DELETE") in subscribed and ("RUN_STEPS", "UPDATE") in subscribed
        text = ready_text(local, 12.3)
        assert f"export ION_EMULATOR_URL={local.emulator.base_url}" in text
        assert "airflow-ion emulator create issue" in text and "Ctrl-C stops everything" in text
    finally:
        local.stop()


def test_dag_files_follows_airflows_safe_mode_heuristic(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from airflow.sdk import DAG")
    (tmp_path / "b.py").write_text("import airflow  # Asset watcher")
    (tmp_path / "helpers.py").write_text("RECEIVER = 'airflow'")
    assert [p.name for p in dag_files(tmp_path)] == ["a.py", "b.py"]
