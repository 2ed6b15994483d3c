"""The event-driven example DAGs, each run in-process against an ION event with the pytest plugin's
``run_ion_dag`` (dag.test()): the way a DAG author tests their own DAGs (see README "Your own DAGs")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def outbox(tmp_path, monkeypatch) -> Path:
    """Where the example DAGs' stand-in factory systems write (dags/factory_systems.py)."""
    monkeypatch.setenv("ION_DEMO_OUTBOX", str(tmp_path / "outbox"))
    return tmp_path / "outbox"


def records(outbox: Path, system: str) -> list[dict]:
    path = outbox / f"{system}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_created_turns_on_monitoring_at_its_workcenter(ion_inbox, run_ion_dag, outbox) -> None:
    event = ion_inbox.deliver("RUNS", "CREATE", {"id": 7, "title": "Run 7", "workcenter": "WC-3"})
    result = run_ion_dag(DAGS / "ion_run_created.py", event=event)
    assert result.state == "success", result.tasks
    started = {"event_id": event.event_id, "run_id": 7, "workcenter": "WC-3", "monitoring": "on"}
    assert result["start_environment_monitoring"].xcom == [started]
    assert records(outbox, "environment_monitoring") == [{k: v for k, v in started.items()}]


def test_purchase_order_alerts_the_erp(ion_inbox, run_ion_dag, outbox) -> None:
    event = ion_inbox.deliver("PURCHASE_ORDERS", "CREATE", {"id": 3, "supplier": "Acme", "status": "PLACED"})
    result = run_ion_dag(DAGS / "ion_purchase_order_to_erp.py", event=event)
    assert result.state == "success", result.tasks
    assert [r["purchase_order_id"] for r in records(outbox, "erp_alerts")] == [3]


def test_an_event_no_watcher_matches_is_an_error_not_a_silent_run(ion_inbox, run_ion_dag) -> None:
    event = ion_inbox.deliver("ISSUES", "CREATE", {"id": 1})
    with pytest.raises(AssertionError, match="no ION asset watcher of DAG 'ion_run_created' matches"):
        run_ion_dag(DAGS / "ion_run_created.py", event=event)


def test_issue_on_the_watched_run_files_a_nonconformance(ion_inbox, run_ion_dag, outbox) -> None:
    ion_inbox.deliver("ISSUES", "CREATE", {"id": 1, "runId": 41, "title": "Other run"})
    event = ion_inbox.deliver("ISSUES", "CREATE", {"id": 2, "runId": 42, "title": "Torque out of spec"})
    result = run_ion_dag(DAGS / "ion_issue_to_quality.py", event=event, conf={"run_id": "42"})
    assert result.state == "success", result.tasks
    assert result["wait_for_issue"].xcom["event_id"] == event.event_id
    assert result["file_nonconformance"].xcom == {"run_id": 42, "issue_id": 2, "title": "Torque out of spec"}
    assert [r["issue_id"] for r in records(outbox, "qa_nonconformances")] == [2]
