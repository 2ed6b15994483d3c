"""``airflow-ion demo-cluster`` (``make demo-cluster``): the provider on a distributed Airflow, on this machine.

Starts PostgreSQL and Redis when they are not answering, installs HAProxy when it is missing, then runs a
CeleryExecutor Airflow (two API servers with the receiver behind HAProxy, two schedulers, two triggerers,
two Celery workers, one dag-processor; see :mod:`.cluster`) and an ION emulator that delivers to the
balancer. It fires ION events a little apart, shows each DAG run as it ends, prints a summary line and
stops every process it started (and drops its database), on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path
from typing import Any

from airflow_provider_ion.testing.cluster import (
    CLUSTER_DAG,
    AirflowCluster,
    stranded,
    subscribed_emulator,
    wait_for_trigger,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=".demo-cluster", help="folder for logs and configs (default .demo-cluster)")
    parser.add_argument("--events", type=int, default=12, help="ION events to fire (default 12)")
    parser.add_argument("--pace", type=float, default=1.5, help="seconds between events (default 1.5)")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL to create the cluster's fresh database in")  # fmt: skip
    parser.add_argument("--keep-running", action="store_true", help="keep everything up after the summary")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for all DAG runs")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    import shutil

    home = Path(args.home).resolve()
    shutil.rmtree(home, ignore_errors=True)
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "ion_cluster_events.py").write_text(CLUSTER_DAG)
    cluster = AirflowCluster(home, dags_folder=home / "dags", pg_admin_url=args.pg_admin_url,
                             env={"ION_CLUSTER_TASK_SECONDS": "0.5"}, say=say)  # fmt: skip
    emulator = None
    # SIGINT explicitly too: a shell that starts us in the background sets it to "ignore", and Ctrl-C must
    # still stop everything (as in ``airflow-ion dev``).
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        cluster.start()
        say(f"cluster is up: {cluster.base_url} (UI, REST API and /ion-webhooks through HAProxy)")
        emulator = subscribed_emulator(cluster.receiver_url)
        say(f"ION emulator at {emulator.base_url}, delivering to {cluster.receiver_url}")
        wait_for_trigger(cluster)
        say("the AssetWatcher trigger runs in a triggerer; firing ION events")
        for i in range(args.events):
            emulator.fire("RUNS", "CREATE", {"id": i + 1, "title": f"Run {i + 1}"})
            time.sleep(args.pace)
        # No trailing event: where Airflow's scheduler leaves an event out of every run (before 3.4), the
        # trigger's stranded-event sweep (triggers/_sweep.py) re-queues the DAG through the REST API.
        summary = _watch(cluster, emulator, args.events, args.timeout, say)
        summary["elapsed_s"] = round(time.monotonic() - started, 1)
        say("summary:")
        print("SUMMARY " + json.dumps(summary), flush=True)
        if args.keep_running:
            say(f"Airflow UI: {cluster.base_url}  (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
        return 0 if summary["ok"] else 1
    except KeyboardInterrupt:
        say("interrupted; stopping")
        return 130
    finally:
        if emulator is not None:
            emulator.stop()
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("stopped every process; database dropped")


def _watch(cluster: AirflowCluster, emulator: Any, fired: int, timeout: float, say: Any) -> dict[str, Any]:
    """Print runs as they end; the summary once every accepted event is in a successful run (or timeout)."""
    shown: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        emulator.wait_for_deliveries(1)
        runs = dict(cluster.runs())
        for run_id, state in runs.items():
            if state in ("success", "failed") and run_id not in shown:
                shown.add(run_id)
                say(f"DAG run {run_id}: {state}")
        accepted = {str(e["id"]) for e in emulator.store.list("events") if e["status"] == "SUCCESS"}
        handled = cluster.handled()
        settled = all(s in ("success", "failed") for s in runs.values())
        if (accepted <= set(handled) and len(accepted) == fired and settled) or time.monotonic() > deadline:
            break
        time.sleep(1)
    stats = emulator.stats["deliveries"]
    summary: dict[str, Any] = {
        "components": {kind: len(cluster.alive(kind)) for kind in cluster.counts} | {"haproxy": 1},
        "events_fired": fired,
        "events_accepted": len(accepted),
        "events_handled_by_dag_runs": len(accepted & set(handled)),
        "events_in_more_than_one_run": sum(len(r) > 1 for r in handled.values()),
        "dag_runs": len(runs),
        "dag_runs_succeeded": sum(s == "success" for s in runs.values()),
        "delivery_retries": stats.get("retries", 0),
    }
    summary["events_stranded"] = sorted(stranded(cluster, accepted), key=int)  # in Airflow, in no run: a bug
    summary["ok"] = (
        summary["events_accepted"] == fired == summary["events_handled_by_dag_runs"]
        and summary["dag_runs_succeeded"] == summary["dag_runs"] > 0
    )
    return summary
