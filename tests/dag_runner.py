"""Run operators in real DAG runs (``dag.test()``) on the test session's Airflow metadata DB.

``dag.test()`` syncs the DAGs folder to the DB before running, so the DAG must live in a file there:
each call writes a one-DAG file with a unique id, runs it, and removes the file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pendulum  # noqa: F401 - used by the generated DAG files

# The result types and readers are the pytest plugin's (one implementation for our tests and users').
from airflow_provider_ion.testing.dag_test import DagRunResult, TaskResult, collect, xcom

__all__ = ["DagRunResult", "TaskResult", "dag_bag", "run_dag_file", "run_dag_source", "run_operator", "xcom"]


DAG_TEMPLATE = """\
import datetime
import pendulum
from airflow.sdk import DAG
{imports}

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
{body}
"""


def run_dag_source(body: str, *, imports: str = "", conf: dict | None = None, run_after: Any = None) -> DagRunResult:
    """Write a DAG (``body`` = indented task definitions), run it with ``dag.test()``, collect results."""
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dag_id = f"test_{uuid.uuid4().hex[:10]}"
    path = dags / f"{dag_id}.py"
    path.write_text(DAG_TEMPLATE.format(imports=imports, dag_id=dag_id, body=body))
    try:
        return _run_module(dag_id, path, conf, run_after)
    finally:
        path.unlink(missing_ok=True)


def run_dag_file(source: Path, *, conf: dict | None = None) -> DagRunResult:
    """Copy an existing DAG file (one DAG, module attribute ``dag``) into the DAGs folder and run it.

    Its own folder goes on ``sys.path`` (as Airflow's BundleDagBag puts the DAGs folder there), so modules
    next to it (``ion_desired_state``) import.
    """
    _on_sys_path(source.parent)
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    path = dags / source.name
    shutil.copy(source, path)
    try:
        return _run_module(source.stem, path, conf)
    finally:
        path.unlink(missing_ok=True)


def _run_module(name: str, path: Path, conf: dict | None, run_after: Any = None) -> DagRunResult:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag_run = module.dag.test(run_conf=conf, run_after=run_after)
    return collect(module.dag.dag_id, dag_run)


def run_operator(operator_class: type, *, task_id: str = "op", retries: int = 0, **kwargs: Any) -> DagRunResult:
    """One task of ``operator_class(**kwargs)`` in a DAG run; ``result[task_id]`` has state and XCom.

    With ``retries``, failed attempts are retried at once (``retry_delay`` 0), as Airflow would later.
    """
    imports = f"from {operator_class.__module__} import {operator_class.__name__}"
    body = (
        f"    {operator_class.__name__}(task_id={task_id!r}, retries={retries}, "
        f"retry_delay=datetime.timedelta(0), **{kwargs!r})\n"
    )
    return run_dag_source(body, imports=imports)


def _on_sys_path(folder: Path) -> None:
    if str(folder) not in sys.path:
        sys.path.append(str(folder))


def dag_bag(path: Path | str) -> Any:
    """Airflow's DagBag over ``path`` (it moved to ``airflow.dag_processing.dagbag`` in 3.2); the folder
    goes on ``sys.path`` first, as Airflow's BundleDagBag does (airflow/dag_processing/dagbag.py)."""
    _on_sys_path(Path(path) if Path(path).is_dir() else Path(path).parent)
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0-3.1
        from airflow.models.dagbag import DagBag
    return DagBag(str(path))
