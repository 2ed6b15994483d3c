"""Run a DAG in-process with ``dag.test()`` against an ION event, and read back what its tasks did.

The engine behind the pytest plugin's ``run_ion_dag`` fixture (:mod:`.pytest_plugin`); usable without
pytest too. Needs a migrated Airflow metadata DB (``airflow db migrate``) and the DAG's file inside the
configured DAGs folder, because ``dag.test()`` syncs that folder to the DB before it runs (a file outside
it is copied in for the run and removed afterwards).

How an event reaches the DAG, with nothing but Airflow's own ``dag.test()`` (``airflow/sdk/definitions/
dag.py``), which creates a manual DAG run and runs its tasks in this process:

- a DAG scheduled on assets watched by ``IonWebhookTrigger``: for every watcher whose filter matches
  the event, an asset event is recorded with the ``extra`` the triggerer gives it
  (``{"from_trigger": True, "payload": <event>}``, ``airflow/models/trigger.py`` ``submit_event``) and
  linked to the DAG run as it is created, so tasks see it in ``triggering_asset_events``;
- a DAG with an ``IonWebhookSensor`` (deferrable): the event is already in the inbox and the run's
  ``run_after`` is set before it, so the sensor defers and ``dag.test()`` runs its trigger inline, which
  finds the event at once.

Airflow does not let a test inject triggering asset events any other way: the link is made with a
SQLAlchemy ``after_insert`` listener on ``DagRun`` for the one DAG, removed when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


@dataclass
class TaskResult:
    """One task instance of a finished run: its state and its ``return_value`` XCom."""

    state: str
    xcom: Any = None


@dataclass
class DagRunResult:
    """A finished ``dag.test()`` run; ``result["task_id"]`` is a :class:`TaskResult`.

    Example::

        result = run_dag(dag)
        assert result.state == "success" and result["notify"].xcom == "done"
    """

    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)

    def __getitem__(self, task_id: str) -> TaskResult:
        return self.tasks[task_id]


def dags_folder() -> Path:
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")).resolve()


@contextlib.contextmanager
def dag_in_dags_folder(source: Path) -> Iterator[Path]:
    """``source`` itself when it is inside the DAGs folder, else a copy there for the ``with`` block.

    A copy gets a unique name (so a module of the same name imported elsewhere is not reused); the
    source's folder goes on ``sys.path`` meanwhile, so modules next to the DAG import as in production.
    """
    source = Path(source).resolve()
    folder = dags_folder()
    added = str(source.parent) not in sys.path
    if added:
        sys.path.insert(0, str(source.parent))
    try:
        if source.is_relative_to(folder):
            yield source
            return
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"{source.stem}_{uuid.uuid4().hex[:8]}.py"
        shutil.copy(source, copy)
        try:
            yield copy
        finally:
            copy.unlink(missing_ok=True)
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(source.parent))


def load_dag(path: Path, dag_id: str | None = None) -> Any:
    """The DAG defined in the file at ``path`` (``dag_id`` when it has several), parsed by Airflow's DagBag
    as the dag-processor would; ``ValueError`` with the import error when the file does not import."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0-3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(path), safe_mode=False)
    if bag.import_errors:
        raise ValueError(f"{path} does not import:\n" + "\n".join(bag.import_errors.values()))
    if dag_id is not None:
        if dag_id not in bag.dags:
            raise ValueError(f"{path} defines no DAG {dag_id!r} (it defines: {sorted(bag.dags) or 'none'})")
        return bag.dags[dag_id]
    if len(bag.dags) != 1:
        raise ValueError(f"{path} defines {len(bag.dags)} DAGs ({sorted(bag.dags)}); pass dag_id")
    return next(iter(bag.dags.values()))


def run_dag(
    dag: Any,
    *,
    event: Any = None,
    conf: dict[str, Any] | None = None,
    dag_id: str | None = None,
) -> DagRunResult:
    """Run ``dag`` (a DAG object or the path of its file) once with ``dag.test()``; see the module doc.

    :param event: an ``InboxEvent`` already in the inbox (``ion_inbox.deliver(...)`` returns one) that
        the run reacts to: as a triggering asset event of each matching ``IonWebhookTrigger`` watcher, and
        for sensors by starting the run just before it. ``AssertionError`` when the DAG is scheduled on
        ION asset watchers and none of them matches the event (it would never run in Airflow).
    :param conf: the run's ``conf`` (Params).
    :param dag_id: which DAG, when the file defines several.
    """
    source = Path(dag.fileloc) if not isinstance(dag, str | os.PathLike) else Path(dag)
    dag_id = dag_id or getattr(dag, "dag_id", None)
    with dag_in_dags_folder(source) as path:
        loaded = load_dag(path, dag_id)
        run_after = None
        links: list[tuple[Any, dict[str, Any]]] = []
        if event is not None:
            links = matching_watchers(loaded, event)
            received = getattr(event, "received_at", None) or datetime.now(UTC)
            run_after = received - timedelta(seconds=1)
        with _link_asset_events(loaded.dag_id, links):
            dag_run = loaded.test(run_conf=conf, run_after=run_after)
        return collect(loaded.dag_id, dag_run)


def matching_watchers(dag: Any, event: Any) -> list[tuple[Any, dict[str, Any]]]:
    """``(asset, extra)`` for each asset of ``dag``'s schedule with an ION watcher matching ``event``."""
    condition = getattr(dag.timetable, "asset_condition", None)
    if condition is None:
        return []
    watched = []
    links = []
    for asset in _assets(condition):
        for watcher in getattr(asset, "watchers", None) or ():
            event_filter = getattr(watcher.trigger, "event_filter", None)
            if event_filter is None:
                continue
            watched.append(f"{asset.uri} ({watcher.name})")
            if event_filter.matches(event):
                links.append((asset, {"from_trigger": True, "payload": event.to_dict()}))
                break
    if watched and not links:
        raise AssertionError(
            f"no ION asset watcher of DAG {dag.dag_id!r} matches the event {event.resource}/{event.action} "
            f"(event_id {event.event_id}); watchers: {', '.join(watched)}"
        )
    return links


def _assets(condition: Any) -> Iterator[Any]:
    """The assets of a schedule condition (``AssetAll``/``AssetAny`` nest their ``objects``)."""
    if hasattr(condition, "objects"):
        for item in condition.objects:
            yield from _assets(item)
    elif hasattr(condition, "uri"):
        yield condition


@contextlib.contextmanager
def _link_asset_events(dag_id: str, links: list[tuple[Any, dict[str, Any]]]) -> Iterator[None]:
    if not links:
        yield
        return
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun

    link_table = AssetEvent.created_dagruns.property.secondary  # dagrun_asset_event (DagRun.consumed_asset_events)

    def after_insert(_mapper: Any, connection: Any, target: Any) -> None:
        if target.dag_id != dag_id:
            return
        for asset, extra in links:
            asset_id = connection.execute(
                sa.select(AssetModel.id).where(AssetModel.uri == asset.uri, AssetModel.name == asset.name)
            ).scalar_one()
            event_id = connection.execute(
                sa.insert(AssetEvent.__table__).values(asset_id=asset_id, extra=extra, timestamp=datetime.now(UTC))
            ).inserted_primary_key[0]
            connection.execute(sa.insert(link_table).values(dag_run_id=target.id, event_id=event_id))

    sa.event.listen(DagRun, "after_insert", after_insert)
    try:
        yield
    finally:
        sa.event.remove(DagRun, "after_insert", after_insert)


def collect(dag_id: str, dag_run: Any) -> DagRunResult:
    """The run's state and each task's state and ``return_value`` XCom, read from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    result = DagRunResult(dag_id, dag_run.run_id, str(dag_run.state))
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        for ti in tis:
            result.tasks[ti.task_id] = TaskResult(str(ti.state), xcom(result, ti.task_id))
    return result


def xcom(result: DagRunResult, task_id: str, key: str = "return_value") -> Any:
    """Any XCom of a finished run (``result[task_id].xcom`` holds only ``return_value``)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == result.dag_id,
                XComModel.run_id == result.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        ).all()
        return XComModel.deserialize_value(rows[0]) if rows else None
