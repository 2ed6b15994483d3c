"""The example DAG dags/ion_webhooks_audit.py: parses cleanly and runs for real (dag.test()) on the emulator."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.dag_runner import DagRunResult, dag_bag, run_dag_file, xcom

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "ion_webhooks_audit.py"
AIRFLOW_URL = "https://airflow.example.com"
URI = f"{AIRFLOW_URL}/ion-webhooks/v1/receivers/airflow"  # what dags/ion_desired_state.py renders to

pytestmark = pytest.mark.usefixtures("airflow_db", "ion_default_conn")


@pytest.fixture
def inbox_env(tmp_path, monkeypatch) -> str:
    """A fresh inbox for the DAG's auto-detection (the session's AIRFLOW_HOME may hold another test's)."""
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", url)
    return url


def run_example_dag(conf: dict[str, Any] | None = None) -> DagRunResult:
    return run_dag_file(DAG_FILE, conf={"airflow_url": AIRFLOW_URL, **(conf or {})})


def asset_events(result: DagRunResult) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "ion://webhooks/audit", AssetEvent.source_run_id == result.run_id)
        ).all()
        return [dict(row.extra or {}) for row in rows]


def seed_expected(emulator, *, drop: str | None = None) -> dict[str, Any]:
    receiver = emulator.store.create_receiver({"name": "airflow", "webhookUri": URI})
    for pair in ("RUNS/CREATE", "ISSUES/CREATE", "PURCHASE_ORDERS/CREATE"):
        if pair != drop:
            resource, action = pair.split("/")
            emulator.store.create_subscription({"receiverId": receiver["id"], "resource": resource, "action": action})
    return receiver


def test_dag_parses_without_errors_or_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = dag_bag(DAG_FILE)
    assert bag.import_errors == {}
    # Ours only: Airflow 3.1.8 warns from its own modules (providers/common/compat) while @task DAGs parse.
    ours = (str(DAG_FILE.parent), str(DAG_FILE.parents[1] / "airflow_provider_ion"))  # not .venv*/ beside them
    assert [str(w.message) for w in caught if w.filename.startswith(ours)] == []
    dag = bag.dags["ion_webhooks_audit"]
    assert dag.doc_md and {t.task_id for t in dag.tasks} == {"audit", "notify", "fail_run_if_audit_failed"}
    # 3.3 (airflow.sdk) names it expression; 3.1 (airflow.timetables) shows it as the summary
    assert (getattr(dag.timetable, "expression", None) or dag.timetable.summary) == "0 6 * * *"


def test_first_unpause_makes_no_catch_up_run() -> None:
    """A fresh deployment (or `make demo`) has not run the setup yet: an audit run at once would fail."""
    from datetime import UTC, datetime

    from airflow.timetables.base import TimeRestriction

    try:
        from airflow.serialization.encoders import coerce_to_core_timetable
    except ImportError:  # Airflow 3.1: the DAG's timetable is already the core one
        coerce_to_core_timetable = None

    dag = dag_bag(DAG_FILE).dags["ion_webhooks_audit"]
    core = coerce_to_core_timetable(dag.timetable) if coerce_to_core_timetable else dag.timetable
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)
    first = core.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert first is not None and first.run_after > datetime.now(UTC)


def test_clean_run_reports_to_xcom_asset_event_and_notify(emulator, inbox_env) -> None:
    seed_expected(emulator)
    result = run_example_dag()
    assert result.state == "success", result.tasks
    assert result["audit"].state == "success" and result["notify"].state == "success"
    assert result["fail_run_if_audit_failed"].state == "skipped"
    report = xcom(result, "audit", "report")
    assert report["findings"] == [] and report["inbox"]["checked"] is True
    assert report["expected"][0]["subscriptions"] == ["RUNS/CREATE", "ISSUES/CREATE", "PURCHASE_ORDERS/CREATE"]
    assert report["expected"][0]["receiver"]["webhook_uri"] == URI
    assert "0 error(s), 0 warning(s)" in result["notify"].xcom
    [extra] = asset_events(result)
    assert extra["summary"] == {"error": 0, "warning": 0, "info": 0} and extra["counts"]["subscriptions"] == 3


def test_drift_fails_the_run_but_notifies_then_fix_repairs_it(emulator, inbox_env) -> None:
    seed_expected(emulator, drop="PURCHASE_ORDERS/CREATE")
    failed = run_example_dag()
    assert failed.state == "failed"
    assert failed["audit"].state == "failed" and failed["notify"].state == "success"
    assert failed["fail_run_if_audit_failed"].state == "failed"
    assert "subscription_missing" in failed["notify"].xcom and "PURCHASE_ORDERS/CREATE" in failed["notify"].xcom
    assert asset_events(failed) == []  # no asset event from a failed task

    fixed = run_example_dag({"fix": True})
    assert fixed.state == "success"
    assert [c["change"] for c in xcom(fixed, "audit", "report")["fixed"]] == ["created"]
    assert "1 change(s) applied" in fixed["notify"].xcom
    again = run_example_dag()
    assert again.state == "success" and xcom(again, "audit", "report")["findings"] == []
