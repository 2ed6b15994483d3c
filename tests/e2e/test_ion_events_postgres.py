"""Two triggerers on PostgreSQL (Airflow's metadata DB and the inbox, LISTEN/NOTIFY): kill -9 the one
running the asset watcher's trigger while events keep arriving; the other takes over, nothing is lost.

Needs the local PostgreSQL (127.0.0.1:5432, user postgres); a fresh database per run, dropped after.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
from airflow_provider_ion.webhooks.inbox import Inbox
from tests.e2e.ion_events_helpers import (
    WATCH_DAG,
    delivered_into_airflow,
    env_for,
    flush,
    post_event,
    summary,
    wait_for_consumer,
    wait_for_events,
)

pytestmark = pytest.mark.e2e

psycopg = pytest.importorskip("psycopg")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONSUMER = IonWebhookTrigger(resource="RUNS", action="CREATE").consumer_name


class TwoTriggererStack(AirflowStack):
    """AirflowStack whose component ``triggerer-2`` is a second ``airflow triggerer``."""

    def start_component(self, name: str):
        if name != "triggerer-2":
            return super().start_component(name)
        import subprocess
        import sys
        from pathlib import Path

        airflow = Path(sys.executable).with_name("airflow")
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_component
        proc = subprocess.Popen([str(airflow), "triggerer"], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home)  # fmt: skip
        self.procs[name], self._logs[name] = proc, log
        return proc


@pytest.fixture(scope="module")
def database():
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"no local PostgreSQL: {error}")
    name = f"af_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database):
    home = tmp_path_factory.mktemp("airflow-pg")
    dags = home / "dags"
    dags.mkdir()
    (dags / "ion_on_run.py").write_text(WATCH_DAG)
    components = ("api-server", "scheduler", "dag-processor", "triggerer")
    env = env_for(database)  # the inbox lives in the same database, its own tables
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = database  # psycopg 3 does async too (no asyncpg here)
    with TwoTriggererStack(home, dags_folder=dags, env=env, db_url=database, components=components) as stack:
        inbox = Inbox(database)
        stack.inbox = inbox  # type: ignore[attr-defined]
        start_second_triggerer(stack, database)
        stack.wait_for_dag("ion_on_run")
        wait_for_consumer(inbox, CONSUMER)
        yield stack
        inbox.close()


def start_second_triggerer(stack: TwoTriggererStack, database: str) -> None:
    """Start ``triggerer-2``; ``stack.jobs`` maps each triggerer's job id to its name (the second starts only
    once the first has its job row, which tells them apart)."""
    stack.jobs = {}  # type: ignore[attr-defined]
    new_triggerer_job(stack, database, "triggerer")
    stack.start_component("triggerer-2")
    new_triggerer_job(stack, database, "triggerer-2")


def query_db(database: str, sql: str, *args) -> list[tuple]:
    with psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql, args).fetchall()


def new_triggerer_job(stack, database: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = {r[0] for r in query_db(database, "SELECT id FROM job WHERE job_type = 'TriggererJob'")}
        new = ids - set(stack.jobs)
        if new:
            assert len(new) == 1, new
            stack.jobs[new.pop()] = name
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name} never registered its job")


def _holder(stack, database: str, timeout: float = 60) -> str:
    """Which triggerer runs the asset watcher's trigger (by its job id)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query_db(database, "SELECT triggerer_id FROM trigger WHERE classpath LIKE %s", "%IonWebhookTrigger")
        holders = {stack.jobs.get(r[0]) for r in rows}
        if len(holders) == 1 and None not in holders:
            return holders.pop()
        if time.monotonic() > deadline:
            raise AssertionError(f"trigger holders: {rows} jobs: {stack.jobs}")
        time.sleep(0.5)


def test_killing_the_triggerer_that_runs_the_trigger_loses_no_event(stack, database) -> None:
    # warm-up and a latency figure on PostgreSQL (NOTIFY wakes the reader)
    warm = {}
    for i in range(10):
        event_id, at = post_event(stack.base_url, "RUNS", "CREATE", {"n": i})
        warm[event_id] = at
        time.sleep(1.5)
    results = wait_for_events(stack, set(warm))
    latencies = [r["started"] - warm[e["event_id"]] for r in results for e in r["events"] if e["event_id"] in warm]
    print(f"\n[e2e postgres] event accepted -> downstream task running: {summary(latencies)}")

    holder = _holder(stack, database)
    accepted: list[str] = []

    def produce() -> None:
        for i in range(30):
            accepted.append(post_event(stack.base_url, "RUNS", "CREATE", {"n": i, "b": uuid.uuid4().hex})[0])
            time.sleep(0.4)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(3)
    stack.stop_component(holder, signal.SIGKILL)
    producer.join(timeout=60)
    delivered_into_airflow(stack, set(accepted), timeout=150)
    flush(stack)
    results = wait_for_events(stack, set(accepted), timeout=150)
    counts: dict[str, int] = {}
    for result in results:
        for event in result["events"]:
            counts[event["event_id"]] = counts.get(event["event_id"], 0) + 1
    assert all(counts.get(e, 0) >= 1 for e in accepted)
    deadline = time.monotonic() + 30
    while (survivor := _holder(stack, database)) == holder and time.monotonic() < deadline:
        time.sleep(0.5)
    assert survivor != holder
    print(f"\n[e2e postgres 2 triggerers] killed {holder} (-9) mid-stream; {survivor} took over; "
          f"{len(accepted)} events all reached a DAG run, {sum(counts[e] - 1 for e in accepted)} twice")  # fmt: skip
