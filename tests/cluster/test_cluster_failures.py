"""kill -9 one API server, one triggerer, one scheduler and one Celery worker while ION keeps firing events.

The cluster (:mod:`airflow_provider_ion.testing.cluster`): CeleryExecutor, two API servers with the receiver
behind HAProxy, two schedulers, two triggerers, two Celery workers (concurrency 2), one dag-processor, one
fresh PostgreSQL database (metadata + inbox), Redis as the broker. The emulator delivers to the balancer.

1. A burst of 120 events (16 deliveries in flight at a time); a quarter of the way through, ``api-server-1``
   hangs (SIGSTOP) for 5 s, longer than ION's 4 s attempt timeout, and is then killed (SIGKILL): what
   HAProxy sent it meanwhile was never answered. What it had acknowledged is already in the inbox; what it
   had not, ION retries (through HAProxy, to the other API server).
2. Events 1.5 s apart; the triggerer running the AssetWatcher trigger, then a scheduler, then the Celery
   worker running a task are killed, each at its own moment.
3. Nothing more is sent. Airflow before 3.4 can leave an event that reaches it while its asset's queue row is
   being consumed out of every run until the asset's next event; the provider's stranded-event sweep
   (``triggers/_sweep.py``) re-queues the DAG through the REST API, so every event must reach a run
   without a trailing event, also after the trigger moved to the other triggerer.

Then: every accepted event is in a successful DAG run; every DAG run succeeded (the DAG's task has
``retries=3``, as a user would configure for workers that can die); an event in more than one run is only
ever a repeat of the same ``event_id`` with the same data (at-least-once into Airflow); the inbox holds each
ION event exactly once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from airflow_provider_ion.testing.cluster import (
    CLUSTER_DAG,
    RECEIVER,
    AirflowCluster,
    stranded,
    subscribed_emulator,
    wait_for_trigger,
)
from airflow_provider_ion.webhooks.inbox import Inbox

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(900)]

BURST = 120
PACED = 30
PACE = 1.5
#: ION's (the emulator's) timeout per delivery attempt; api-server-1 hangs for longer than this.
DELIVERY_TIMEOUT = 4.0


def _pg_admin() -> tuple[str, str]:
    """(admin URL on the server of ION_TEST_PG_URL, prefix for our databases: '<its database>_')."""
    url = os.environ.get("ION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/ion_cluster")
    server, db = url.split("://", 1)[1].rsplit("/", 1)
    return f"postgresql://{server}/postgres", f"{db}_"


def _say(text: str) -> None:
    print(f"\n[cluster] {text}", flush=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("psycopg")
    pytest.importorskip("airflow.providers.celery")
    admin, prefix = _pg_admin()  # AirflowCluster starts the local PostgreSQL and Redis when they are down
    home: Path = tmp_path_factory.mktemp("cluster")
    (home / "dags").mkdir()
    (home / "dags" / "ion_cluster_events.py").write_text(CLUSTER_DAG)
    started = time.monotonic()
    # Each task sleeps 2 s, so a worker is busy when it is killed.
    cluster = AirflowCluster(home, dags_folder=home / "dags", pg_admin_url=admin, db_prefix=prefix,
                             env={"ION_CLUSTER_TASK_SECONDS": "2"}, say=_say)  # fmt: skip
    with cluster:
        wait_for_trigger(cluster)
        print(f"\n[cluster] up and the trigger running after {time.monotonic() - started:.0f}s")
        yield cluster


def _trigger_holder(cluster: AirflowCluster) -> str:
    """The triggerer whose log shows it started the AssetWatcher trigger's inbox consumer."""
    holders = [n for n in cluster.alive("triggerer") if "ION inbox consumer" in cluster.stack.log_text(n)]
    return holders[-1] if holders else cluster.alive("triggerer")[0]


def _worker_running_a_task(cluster: AirflowCluster, timeout: float = 30) -> tuple[str, str | None]:
    """(worker, run_id): the Celery worker a running task's process descends from."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_id, pid in cluster.query(
            "SELECT run_id, pid FROM task_instance WHERE dag_id = 'ion_cluster_events' AND state = 'running' "
            "AND pid IS NOT NULL"
        ):
            worker = cluster.owner_of(pid)
            if worker and worker.startswith("celery-worker"):
                return worker, run_id
        time.sleep(0.2)
    return cluster.alive("celery-worker")[0], None


def _post_from(source: str, url: str, headers: dict[str, str] | None = None) -> int:
    """An unsigned delivery sent from the loopback address ``source``; the HTTP status."""
    body = b'{"event_id": "probe", "resource": "RUNS"}'
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
        answer = client.post(url, content=body, headers={"content-type": "application/json", **(headers or {})})
    return answer.status_code


def test_allow_list_sees_the_real_client_through_the_balancer(cluster: AirflowCluster) -> None:
    """allowed_cidrs = ION's address (127.0.0.1), trusted_proxies = HAProxy's (127.0.0.3): 401 (past the allow
    list, unsigned) for ION, 403 for anyone else, also when it claims ION's address in X-Forwarded-For."""
    assert _post_from("127.0.0.1", cluster.receiver_url) == 401
    assert _post_from("127.0.0.2", cluster.receiver_url) == 403
    assert _post_from("127.0.0.2", cluster.receiver_url, {"x-forwarded-for": "127.0.0.1"}) == 403
    direct = f"http://127.0.0.1:{cluster.api_ports[0]}/ion-webhooks/v1/receivers/{RECEIVER}"
    assert _post_from("127.0.0.2", direct, {"x-forwarded-for": "127.0.0.1"}) == 403  # not a trusted proxy


def test_kill_one_of_each_component_while_events_keep_coming(cluster: AirflowCluster) -> None:
    started = time.monotonic()
    ion = subscribed_emulator(cluster.receiver_url, timeout=DELIVERY_TIMEOUT)
    inbox = Inbox(cluster.db_url)
    kills: dict[str, float] = {}
    try:
        # 1. burst; kill an API server mid-delivery
        for i in range(BURST):
            ion.fire("RUNS", "CREATE", {"n": i, "phase": "burst"})
        while ion.stats["deliveries"]["succeeded"] < BURST // 4:
            assert time.monotonic() - started < 120, ion.stats["deliveries"]
            time.sleep(0.005)
        # The server hangs first, then dies. HAProxy keeps sending it deliveries until its health check fails
        # (3 checks, 2 s apart); they are never answered, ION's attempts time out (DELIVERY_TIMEOUT) and ION
        # retries them. A kill alone cuts only what is in flight at that instant: often nothing, it is quick.
        cluster.freeze("api-server-1")
        time.sleep(DELIVERY_TIMEOUT + 1)
        before_kill = ion.stats["deliveries"]["succeeded"]
        cluster.kill("api-server-1")
        kills["api-server-1"] = time.monotonic() - started
        # What ION saw acknowledged (by either API server, the other keeps answering) is in the inbox already:
        # read ION's side first, then the inbox.
        acknowledged = {str(e["id"]) for e in ion.store.list("events") if e["status"] == "SUCCESS"}
        stored_at_kill = {e.event_id for e in inbox.latest(10 * BURST, receiver=RECEIVER)}
        assert acknowledged <= stored_at_kill, f"acknowledged, not stored: {sorted(acknowledged - stored_at_kill)}"
        assert before_kill < BURST, "the kill came after the burst: nothing in flight to retry"
        assert ion.wait_for_deliveries(180), ion.stats["deliveries"]

        # 2. paced events; kill the trigger's triggerer, a scheduler, the worker running a task
        def produce() -> None:
            for i in range(PACED):
                ion.fire("RUNS", "CREATE", {"n": i, "phase": "paced"})
                time.sleep(PACE)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(6)
        holder = _trigger_holder(cluster)
        cluster.kill(holder)
        kills[holder] = time.monotonic() - started
        time.sleep(12)
        cluster.kill("scheduler-1")
        kills["scheduler-1"] = time.monotonic() - started
        time.sleep(8)
        worker, killed_run = _worker_running_a_task(cluster)
        cluster.kill(worker)
        kills[worker] = time.monotonic() - started
        producer.join(timeout=120)

        # 3. nothing more is sent: the stranded-event sweep must bring every event into a run
        producer_done = time.monotonic()
        deadline = producer_done + 300
        while True:
            assert ion.wait_for_deliveries(180), ion.stats["deliveries"]
            events = ion.store.list("events")
            accepted = {str(e["id"]): e for e in events if e["status"] == "SUCCESS"}
            assert len(events) == len(accepted) == BURST + PACED, {e["status"] for e in events}
            runs = dict(cluster.runs())
            handled = cluster.handled()
            settled = runs and all(state in ("success", "failed") for state in runs.values())
            if (set(accepted) <= set(handled) and settled) or time.monotonic() > deadline:
                break
            time.sleep(2)
        settled_at = time.monotonic() - started
        tail = time.monotonic() - producer_done
        left_out = stranded(cluster, set(accepted))  # for the message: in Airflow, in no run, nothing queued

        # the inbox: each ION event once, whatever the retries
        stored = [e.event_id for e in inbox.latest(10 * BURST, receiver=RECEIVER)]
        assert sorted(stored) == sorted(accepted), "inbox rows differ from the events ION delivered"
        retried = [e for e in events if e["attempts"] > 1]
        answers = Counter(str(e["lastResponseCode"] or e["lastError"])[:40] for e in retried)
        assert retried, "ION retried nothing: the API server kill carried no unacknowledged delivery"

        # every accepted event in a successful run; every run succeeded
        missing = sorted(set(accepted) - set(handled), key=int)
        assert not missing, f"accepted but in no successful run: {missing}; stranded: {sorted(left_out)}; runs: {runs}"
        assert set(handled) <= set(accepted), f"runs handled unknown events: {set(handled) - set(accepted)}"
        assert all(state == "success" for state in runs.values()), runs
        # no event handled twice, except as a repeat of the same event_id (its data identical)
        repeats = {event_id: run_ids for event_id, run_ids in handled.items() if len(run_ids) > 1}
        data = cluster.handled_data()
        assert all(json.loads(d)["phase"] for seen in data.values() for d in seen), "a task saw no event body"
        assert all(len(data[event_id]) == 1 for event_id in repeats), {e: data[e] for e in repeats}
        repeated_phases = Counter(json.loads(next(iter(data[e])))["phase"] for e in repeats)
        tries = cluster.task_tries()
        if killed_run is not None:
            assert tries[killed_run] > 1, f"the task on the killed worker was not retried: {tries[killed_run]}"
        print(
            f"\n[cluster failures] events: {len(accepted)} accepted ({BURST} burst, {PACED} paced); "
            f"ION retried {len(retried)} ({ion.stats['deliveries']['retries']} retries; last answers {dict(answers)}); "
            "kills at "
            + ", ".join(f"{n} {t:.0f}s" for n, t in kills.items())
            + f"; {len(runs)} DAG runs, all success, {sum(t > 1 for t in tries.values())} with a task retry "
            f"(killed worker's run: {killed_run}); events in more than one run (same event_id): {len(repeats)} "
            f"{dict(repeated_phases)}; "
            f"settled {settled_at:.0f}s after the first event, {tail:.0f}s after the last"
        )
    finally:
        inbox.close()
        ion.stop()
