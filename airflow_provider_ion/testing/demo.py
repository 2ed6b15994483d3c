"""``airflow-ion demo``: the whole path on one machine, with nothing but this repository.

It starts the ION emulator and a real Airflow (api-server with the receiver mounted, scheduler,
dag-processor, triggerer; SQLite; ``AIRFLOW_HOME`` under ``.demo/``; wired by
:class:`~airflow_provider_ion.testing.dev.LocalIon`), runs ``ion_webhooks_setup`` and then
``ion_webhooks_audit`` (both on the desired state in ``dags/ion_desired_state.py``), then makes changes
in the emulator the way people on a factory floor would (runs, an issue, a purchase order) and shows,
as it happens, each webhook the receiver accepted and each DAG run it started. It ends with a summary
(``ok`` only when the audit passed and no DAG run of any DAG failed) and stops every process it
started, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

EVENT_DAGS = ("ion_run_created", "ion_purchase_order_to_erp", "ion_issue_to_quality")
RECEIVER = "airflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=".demo", help="folder for the demo's Airflow and inbox (default .demo)")
    parser.add_argument("--dags-folder", default="dags", help="the example DAGs (default ./dags)")
    parser.add_argument("--runs", type=int, default=3, help="ION runs to create (default 3)")
    parser.add_argument("--keep-running", action="store_true", help="keep everything up after the summary")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for all DAG runs")


def run(args: argparse.Namespace) -> int:
    demo = Demo(Path(args.home), Path(args.dags_folder), runs=args.runs, timeout=args.timeout)
    # SIGINT explicitly too: a shell that starts us in the background sets it to "ignore", and Ctrl-C must
    # still stop everything (as in ``airflow-ion dev``).
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = demo.run()
        if args.keep_running:
            demo.say(f"Airflow UI: {demo.stack.base_url}  (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
        return 0 if summary["ok"] else 1
    except KeyboardInterrupt:
        demo.say("interrupted; stopping")
        return 130
    finally:
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Demo:
    """The demo's steps; ``run()`` returns the summary it prints last."""

    def __init__(
        self, home: Path, dags_folder: Path, *, runs: int = 3, timeout: float = 240, pace: float = 2.5
    ) -> None:
        if not (dags_folder / "ion_webhooks_setup.py").is_file():
            where = dags_folder.resolve()
            raise SystemExit(
                f"airflow-ion demo: no example DAGs in {where}; run it from the repository "
                "(for your own DAGs: airflow-ion dev --dags-folder DIR)"
            )
        self.home = home.resolve()
        self.dags_folder = dags_folder.resolve()
        self.runs = runs
        self.timeout = timeout
        self.pace = pace
        self.created_all = threading.Event()
        self.summary: dict[str, Any] = {"ok": False}
        self.started = time.monotonic()
        self.emulator: Any = None
        self.stack: Any = None
        self.inbox: Any = None
        self.local: Any = None
        self.audit_state: str | None = None

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        from airflow_provider_ion.testing.dev import LocalIon
        from airflow_provider_ion.testing.local_airflow import connection_env, emulator_connection

        self.local = LocalIon(
            self.home, self.dags_folder, env={"ION_DEMO_OUTBOX": str(self.home / "outbox")}, wipe_home=True
        )
        self.local.prepare()
        self.emulator, self.stack, self.inbox = self.local.emulator, self.local.stack, self.local.inbox
        self.say(f"ION emulator at {self.emulator.base_url}")
        # The demo itself talks to ION (IonHook) with the same connection as its DAGs.
        os.environ.update(connection_env("ion_default", emulator_connection(self.emulator)))
        self.say("starting Airflow (api-server, scheduler, dag-processor, triggerer) ...")
        self.stack.start()
        self.say(f"Airflow is up: {self.stack.base_url}  (the UI; no login in the demo)")

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()

    # the story -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.start()
        setup = self.stack.trigger("ion_webhooks_setup", {"airflow_url": self.stack.base_url})
        state = self.stack.wait_for_run("ion_webhooks_setup", setup, timeout=120)["state"]
        self.say(f"ion_webhooks_setup: {state} (receiver '{RECEIVER}' subscribed to RUNS, ISSUES, PURCHASE_ORDERS)")
        if state != "success":
            raise SystemExit("the setup DAG failed; see the task log in the UI")
        # The audit checks ION against the same desired state (dags/ion_desired_state.py) the setup created.
        audit = self.stack.trigger("ion_webhooks_audit", {"airflow_url": self.stack.base_url})
        self.audit_state = self.stack.wait_for_run("ion_webhooks_audit", audit, timeout=120)["state"]
        self.say(f"ion_webhooks_audit: {self.audit_state} (ION matches the desired state the setup created)")
        self._wait(lambda: len(self.inbox.list_cursors()) >= 2, 90, "event triggers to start in the triggerer")
        self.say("event triggers are waiting for ION webhooks")

        from airflow_provider_ion.hooks.ion import IonHook

        # Changes arrive a couple of seconds apart, as on a factory floor. (Events that reach Airflow
        # within one scheduler loop share a DAG run; each task iterates its triggering events.)
        # What happens is printed from another thread meanwhile.
        watcher = threading.Thread(target=self._show_until_done, daemon=True)
        watcher.start()
        with IonHook() as ion:
            created = []
            for i in range(self.runs):
                created.append(self._create(ion, "Run", {"title": f"Run {i + 1}", "workcenter": f"WC-{i + 1}"}))
                time.sleep(self.pace)
            watched = created[0]["id"]
            self.stack.trigger("ion_issue_to_quality", {"run_id": str(watched)})
            self.say(f"ion_issue_to_quality waits for an issue on run {watched}")
            self._create(ion, "PurchaseOrder", {"supplier": "Acme Fasteners", "status": "PLACED"})
            time.sleep(self.pace)
            if len(created) > 1:
                self._create(ion, "Issue", {"title": "Scratch on housing", "runId": created[1]["id"]})
            self._create(ion, "Issue", {"title": "Torque out of spec", "runId": watched})
        self.created_all.set()
        watcher.join()
        self.say("summary:")
        print("SUMMARY " + json.dumps(self.summary), flush=True)
        return self.summary

    def _create(self, ion: Any, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        field = kind[0].lower() + kind[1:]
        document = f"mutation($input: Create{kind}Input!) {{ create{kind}(input: $input) {{ {field} {{ id }} }} }}"
        obj = ion.execute(document, {"input": values})[f"create{kind}"][field]
        self.say(f"ION: created {kind} {obj['id']} {values}")
        return obj

    def _show_until_done(self) -> None:
        """Print webhooks and DAG runs as they happen, until every event is handled (or the timeout)."""
        seen_seq = 0
        states: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.inbox.read_after(seen_seq):
                seen_seq = event.seq
                self.say(f"webhook accepted: {event.resource}/{event.action} event {event.event_id}")
            runs = {dag_id: self.stack.dag_runs(dag_id) for dag_id in EVENT_DAGS}
            for dag_id, dag_runs in runs.items():
                for r in dag_runs:
                    if states.get((dag_id, r["dag_run_id"])) != r["state"]:
                        states[(dag_id, r["dag_run_id"])] = r["state"]
                        self.say(f"DAG run {dag_id} / {r['dag_run_id']}: {r['state']}")
            if self.created_all.is_set():
                self.summary = self._summary(runs)
                settled = not any(r["state"] in ("queued", "running") for rs in runs.values() for r in rs)
                if (self.summary["ok"] and settled) or time.monotonic() > deadline:
                    return
            time.sleep(0.3)

    def _summary(self, runs: dict[str, list[dict]]) -> dict[str, Any]:
        """Events accepted vs handled: each asset-triggered run lists the ION events it consumed."""
        events = self.inbox.read_after(0, limit=10_000)
        received = {e.event_id: e.received_at for e in events}
        wanted = {"ion_run_created": "RUNS", "ion_purchase_order_to_erp": "PURCHASE_ORDERS"}
        handled: dict[str, list[str]] = {}
        latencies = []
        for dag_id in wanted:
            for r in runs.get(dag_id, []):
                ids = _event_ids(self.stack, dag_id, r)
                if r["state"] == "success":
                    for event_id in ids:
                        handled.setdefault(event_id, []).append(dag_id)
                started = _parse_time(r.get("start_date"))
                firsts = [received[e] for e in ids if e in received]
                if started and firsts:
                    latencies.append((started - min(firsts)).total_seconds())
        expected = [e.event_id for e in events if e.resource in wanted.values()]
        sensor = runs.get("ion_issue_to_quality", [])
        delivery = self.emulator.stats.get("deliveries", {})
        # `succeeded` counts deliveries the receiver acknowledged (ION's view of "sent").
        summary: dict[str, Any] = {
            "events_sent": delivery.get("succeeded", 0),
            "events_accepted": len(events),
            "event_driven_events": len(expected),
            "events_handled_by_dag_runs": sum(1 for e in expected if len(handled.get(e, [])) == 1),
            "dag_runs": {d: len(rs) for d, rs in runs.items()},
            "dag_runs_succeeded": {d: sum(r["state"] == "success" for r in rs) for d, rs in runs.items()},
            "median_event_to_dag_run_s": round(statistics.median(latencies), 3) if latencies else None,
            "audit": self.audit_state,
            "dag_runs_failed_anywhere": self._failed_runs(),
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        summary["ok"] = (
            summary["events_sent"] == summary["events_accepted"] > 0
            and summary["events_handled_by_dag_runs"] == len(expected) == self.runs + 1
            and [r["state"] for r in sensor] == ["success"]
            and all(r["state"] == "success" for rs in runs.values() for r in rs)
            and summary["audit"] == "success"
            and summary["dag_runs_failed_anywhere"] == []
        )
        return summary

    def _failed_runs(self) -> list[str]:
        """``dag_id/run_id`` of every failed DAG run of any DAG: a fresh demo has none (a catch-up run too)."""
        runs = self.stack.api("GET", "/dags/~/dagRuns", params={"state": "failed", "limit": 100})["dag_runs"]
        return [f"{r['dag_id']}/{r['dag_run_id']}" for r in runs]

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"airflow-ion demo: timed out waiting for {what}")
            time.sleep(0.5)


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _event_ids(stack: Any, dag_id: str, dag_run: dict) -> list[str]:
    """ION event ids of the asset events that triggered ``dag_run``."""
    events = dag_run.get("consumed_asset_events")
    if events is None:
        path = f"/dags/{dag_id}/dagRuns/{dag_run['dag_run_id']}/upstreamAssetEvents"
        events = stack.api("GET", path).get("asset_events", [])
    return [str((e.get("extra") or {}).get("payload", {}).get("event_id")) for e in events]
