"""`make demo`'s entry point, run the way a newcomer runs it: every event accepted and handled by one
DAG run, all DAG runs succeeded, and no process left behind (on a normal end and on Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.processes import processes_using, wait_gone

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_ION = str(Path(sys.executable).with_name("airflow-ion"))


def start_demo(home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["DEMO_TEST_HOME"] = str(home)  # marks every process of this demo for processes_using()
    return subprocess.Popen(
        [AIRFLOW_ION, "demo", "--home", str(home)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_demo_runs_to_a_good_summary_and_leaves_nothing_behind(tmp_path) -> None:
    home = tmp_path / "demo"
    demo = start_demo(home)
    try:
        output, _ = demo.communicate(timeout=400)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 0, output[-5000:]
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("SUMMARY "))[8:])
    assert summary["ok"] is True
    assert summary["events_sent"] == summary["events_accepted"] == 6
    assert summary["events_handled_by_dag_runs"] == summary["event_driven_events"] == 4
    assert summary["dag_runs"] == {"ion_run_created": 3, "ion_purchase_order_to_erp": 1, "ion_issue_to_quality": 1}
    assert summary["dag_runs_succeeded"] == summary["dag_runs"]
    assert summary["audit"] == "success" and summary["dag_runs_failed_anywhere"] == []
    assert "webhook accepted: RUNS/CREATE" in output and "Airflow is up: http://127.0.0.1:" in output
    outbox = home / "outbox"
    assert len((outbox / "environment_monitoring.jsonl").read_text().splitlines()) == 3
    assert len((outbox / "erp_alerts.jsonl").read_text().splitlines()) == 1
    assert len((outbox / "qa_nonconformances.jsonl").read_text().splitlines()) == 1
    assert wait_gone(home) == []


def test_ctrl_c_stops_every_process(tmp_path) -> None:
    home = tmp_path / "demo"
    demo = start_demo(home)
    try:
        deadline = time.monotonic() + 180
        assert demo.stdout is not None
        for line in demo.stdout:
            if "Airflow is up" in line or time.monotonic() > deadline:
                break
        assert len(processes_using(home)) >= 4  # the demo and Airflow's components
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 130
    assert wait_gone(home) == []
