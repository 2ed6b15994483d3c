"""Every example DAG in dags/ parses with no errors and no warnings and documents itself; the setup and
teardown DAGs run for real (dag.test()) against the emulator. The event-driven ones run end to end in
tests/e2e (they need a triggerer) and in the `make demo` test."""

from __future__ import annotations

import warnings
from pathlib import Path

import airflow.sdk
import pytest

from tests.dag_runner import dag_bag, run_dag_file

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXAMPLES = {
    "ion_webhooks_setup",
    "ion_run_created",
    "ion_issue_per_event",
    "ion_issue_to_quality",
    "ion_purchase_order_to_erp",
    "ion_webhooks_teardown",
    "ion_webhooks_audit",
}
#: Partitioned assets (one run per ION event) need Airflow 3.3; on 3.1 that example refuses to import.
PER_EVENT_FILE = "ion_issue_per_event.py"
PARTITIONS = hasattr(airflow.sdk, "PartitionedAssetTimetable")
PARSED = EXAMPLES if PARTITIONS else EXAMPLES - {"ion_issue_per_event"}


@pytest.fixture(scope="module")
def bag():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = dag_bag(DAGS)  # safe mode, as the dag-processor parses
    # Warnings attributed to our files (DAGs, provider); Airflow 3.1.8 warns from its own modules while
    # any @task DAG is parsed (airflow/providers/common/compat/_compat_utils.py, BaseBranchOperator).
    ours = (str(DAGS), str(DAGS.parent / "airflow_provider_ion"))  # not .venv*/ beside them
    bag.caught_warnings = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if w.filename.startswith(ours)]
    return bag


def test_example_dags_parse_without_errors_or_warnings(bag) -> None:
    if PARTITIONS:
        assert bag.import_errors == {}
    else:  # a clear error naming the release it needs, nothing else
        assert {Path(f).name for f in bag.import_errors} == {PER_EVENT_FILE}
        assert "needs Airflow 3.3 or later" in next(iter(bag.import_errors.values()))
    assert bag.caught_warnings == []
    assert set(bag.dag_ids) == PARSED


@pytest.mark.parametrize("dag_id", sorted(EXAMPLES))
def test_example_dag_is_documented_and_tagged(bag, dag_id: str) -> None:
    if dag_id not in PARSED:
        pytest.skip(f"{dag_id} needs Airflow 3.3 (partitioned assets)")
    dag = bag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md.strip()) > 80
    assert "ion" in dag.tags


def test_event_driven_dags_are_scheduled_on_ion_assets(bag) -> None:
    for dag_id, uri in [
        ("ion_run_created", "ion://runs/create"),
        ("ion_purchase_order_to_erp", "ion://purchase_orders/create"),
    ]:
        condition = bag.dags[dag_id].timetable.asset_condition
        assert uri in repr(condition)
        watchers = [w for asset in condition.objects for w in getattr(asset, "watchers", [])]
        assert [type(w.trigger).__name__ for w in watchers] == ["IonWebhookTrigger"]


@pytest.mark.usefixtures("airflow_db", "ion_default_conn")
def test_setup_is_safe_to_run_twice_and_teardown_disables(emulator) -> None:
    _setup_twice_then_teardown(emulator)


@pytest.mark.usefixtures("airflow_db")
def test_setup_and_teardown_on_singular_resource_names(profiled_emulators, monkeypatch) -> None:
    """The DAGs say RUNS/ISSUES/PURCHASE_ORDERS; an ION whose enum is singular gets RUN/ISSUE/PURCHASE_ORDER."""
    from tests.conftest import define_ion_connection

    server = profiled_emulators("singular-resources")
    define_ion_connection(monkeypatch, server)
    _setup_twice_then_teardown(server)
    assert {s["resource"] for s in server.store.list("subscriptions")} == {"RUN", "ISSUE", "PURCHASE_ORDER"}


def _setup_twice_then_teardown(emulator) -> None:
    base = "https://airflow.example.com"
    first = run_dag_file(DAGS / "ion_webhooks_setup.py", conf={"airflow_url": base})
    assert first.state == "success"
    summary = first["ensure_webhooks"].xcom
    assert len(summary["created"]) == 4  # the receiver and three subscriptions
    (receiver,) = emulator.store.list("receivers")
    assert receiver["name"] == "airflow" and receiver["webhookUri"] == f"{base}/ion-webhooks/v1/receivers/airflow"
    second = run_dag_file(DAGS / "ion_webhooks_setup.py", conf={"airflow_url": base})
    assert second.state == "success" and second["ensure_webhooks"].xcom["created"] == []
    assert len(emulator.store.list("subscriptions")) == 3

    down = run_dag_file(DAGS / "ion_webhooks_teardown.py")
    assert down.state == "success", down.tasks
    assert emulator.store.list("receivers")[0]["active"] is False
    assert not any(s["active"] for s in emulator.store.list("subscriptions"))
    again = run_dag_file(DAGS / "ion_webhooks_setup.py", conf={"airflow_url": base})
    assert again.state == "success" and len(again["ensure_webhooks"].xcom["enabled"]) == 4
