"""`airflow-ion dev` as a DAG author uses it: a DAG of their own in a fresh folder, an issue made with the
CLI, the DAG's task output, Ctrl-C, and no process (nor process group) left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.processes import processes_using, wait_gone

pytestmark = pytest.mark.e2e

AIRFLOW_ION = str(Path(sys.executable).with_name("airflow-ion"))

AUTHOR_DAG = textwrap.dedent(
    """
    import json
    import os

    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, task
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

    issues = Asset("ion://issues/create", watchers=[AssetWatcher(
        name="my_issues", trigger=IonWebhookTrigger(resource="ISSUES", action="CREATE"))])

    with DAG("my_issue_dag", schedule=[issues], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
        @task
        def record(*, triggering_asset_events=None):
            with open(os.environ["DEV_TEST_OUTPUT"], "a") as out:
                for event in triggering_asset_events[issues]:
                    out.write(json.dumps(event.extra["payload"]["payload"]) + "\\n")

        record()
    """
)


def test_dev_runs_my_dag_on_an_emulator_event_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    dags, home, output = tmp_path / "dags", tmp_path / "home", tmp_path / "output.jsonl"
    dags.mkdir()
    (dags / "my_issue_dag.py").write_text(AUTHOR_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["DEV_TEST_OUTPUT"] = str(output)  # also marks this test's processes for processes_using()
    started = time.monotonic()
    dev = subprocess.Popen(
        [AIRFLOW_ION, "dev", "--dags-folder", str(dags), "--home", str(home)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert dev.stdout is not None
        for line in dev.stdout:
            lines.append(line)
            if "airflow-ion dev: ready" in line or time.monotonic() - started > 240:
                break
        for line in dev.stdout:  # the rest of the ready text, up to its last line
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        ready_s = time.monotonic() - started
        text = "".join(lines)
        assert "airflow-ion dev: ready" in text, text
        assert "note:" not in text, text  # parsed, and the DAG's trigger is reading the inbox
        url = re.search(r"export ION_EMULATOR_URL=(\S+)", text).group(1)
        assert re.search(r"Airflow UI:\s+http://127\.0\.0\.1:\d+", text)

        client_env = {**env, "ION_EMULATOR_URL": url}
        made = time.monotonic()
        run = _cli(client_env, "create", "run", "--title", "Run 1", "--workcenter", "WC-1")
        issue = _cli(client_env, "create", "issue", "--title", "Torque out of spec", "--run-id", str(run["id"]))
        deadline = time.monotonic() + 180
        while not (output.exists() and output.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        event_to_output_s = time.monotonic() - made
        assert output.exists(), _diagnose(home, text)
        (body,) = [json.loads(line) for line in output.read_text().splitlines()]
        assert body["resource"] == "ISSUES" and body["action"] == "CREATE"
        assert body["data"] == issue and issue["runId"] == run["id"]

        members = processes_using(tmp_path)
        groups = {os.getpgid(pid) for pid in members if _alive(pid)}
        assert len(groups) >= 5  # airflow-ion dev itself and the four Airflow components, each its own group
        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
        rest, _ = dev.communicate(timeout=90)
    finally:
        if dev.poll() is None:  # a failed assertion: let dev stop its Airflow, then make sure
            os.killpg(dev.pid, signal.SIGTERM)
            try:
                dev.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
    assert dev.returncode == 0, rest[-3000:]
    assert "airflow-ion dev: stopping" in rest
    assert wait_gone(tmp_path) == []
    assert [g for g in groups if _group_alive(g)] == []
    print(f"\nTIMINGS dev_ready_s={ready_s:.1f} emulator_create_to_task_output_s={event_to_output_s:.1f}")


def _diagnose(home: Path, text: str) -> str:
    """What dev printed and the tails of Airflow's logs, for a failure message."""
    logs = [f"--- {name}.log\n{(home / 'airflow' / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name in ("triggerer", "scheduler") if (home / "airflow" / f"{name}.log").exists()]  # fmt: skip
    return "\n".join([text, *logs])


def _cli(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([AIRFLOW_ION, "emulator", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
