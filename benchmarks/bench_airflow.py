"""Benchmark 2, into Airflow: event accepted -> downstream task running, through a real Airflow.

One ``AirflowStack`` (api-server, scheduler, dag-processor, triggerer; SQLite metadata DB, LocalExecutor)
with two asset-watcher DAGs side by side:

- ours: ``IonWebhookTrigger(resource="RUNS", action="CREATE")``; an event is a signed POST to the receiver
  mounted in the API server; "accepted" is its 200 (after the inbox commit).
- baseline: ``benchmarks.baseline_trigger.FileLineTrigger`` (polls a file's line count); an event is a
  line appended to the file; "accepted" is after the write is flushed.

Both poll every 0.2 s. Events alternate ours/baseline, 1.5 s apart, so each gets its own DAG run; one
warm-up event each is sent first and not counted. Latency = ``time.time()`` at the start of the
downstream task minus the accepted time.

Goal: ours' median within 0.3 s of the baseline's and under 1 s.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

from benchmarks import _common as c

SECRET = "bench-secret-0123456789abcdefghijklmnop"
RECEIVER = "factory"
POLL = 0.2

DAGS = textwrap.dedent(
    """
    import time
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, task
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
    from benchmarks.baseline_trigger import FileLineTrigger

    ion = Asset("ion://runs/create", watchers=[AssetWatcher(
        name="ion_runs", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE", poll_interval={poll}))])
    lines = Asset("file://bench/lines", watchers=[AssetWatcher(
        name="file_lines", trigger=FileLineTrigger(path={path!r}, poll_interval={poll}))])

    def dag(dag_id, asset):
        with DAG(dag_id, schedule=[asset], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
                 max_active_runs=32):
            @task
            def handle(*, triggering_asset_events=None):
                started = time.time()
                return {{"started": started, "events": [e.extra["payload"] for evs in triggering_asset_events.values()
                                                         for e in evs]}}
            handle()

    dag("bench_ion", ion)
    dag("bench_baseline", lines)
    """
)


def _post(base_url: str, event_id: str) -> float:
    import httpx

    from airflow_provider_ion.webhooks.signature import sign

    body = json.dumps(
        {"event_id": event_id, "subscription_id": 1, "resource": "RUNS", "action": "CREATE", "data": {"bench": True}}
    ).encode()
    headers = {"content-type": "application/json", "x-ion-signature": sign(body, SECRET)}
    r = httpx.post(f"{base_url}/ion-webhooks/v1/receivers/{RECEIVER}", content=body, headers=headers, timeout=30)
    r.raise_for_status()
    return time.time()


def _append(path: Path, line: str) -> float:
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
    return time.time()


def _results(stack: Any, dag_id: str) -> dict[str, float]:
    """{event key: task start time} over the finished runs of ``dag_id``."""
    out: dict[str, float] = {}
    for run in stack.dag_runs(dag_id):
        if run["state"] != "success":
            continue
        value = stack.xcom(dag_id, run["dag_run_id"], "handle")
        for event in value["events"]:
            key = event["event_id"] if "event_id" in event else event["line"]
            out[key] = value["started"]
    return out


STAGES = ("asset event", "DAG run queued", "task instance running", "task code started")


def _stages(db: Path) -> dict[str, dict[str, float]]:
    """{event key: {stage: epoch seconds}} from Airflow's metadata DB, for the stages Airflow records:
    the asset event the trigger produced, the DAG run that consumed it, its task instance going running."""
    import sqlite3
    from datetime import datetime

    def epoch(value: str | None) -> float | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()

    query = """
        SELECT ae.timestamp, ae.extra, dr.queued_at, ti.start_date
        FROM asset_event ae
        JOIN dagrun_asset_event dae ON dae.event_id = ae.id
        JOIN dag_run dr ON dr.id = dae.dag_run_id
        JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id
        WHERE dr.dag_id IN ('bench_ion', 'bench_baseline')
    """
    out: dict[str, dict[str, float]] = {}
    with sqlite3.connect(db) as conn:
        for ts, extra, queued, running in conn.execute(query):
            payload = (json.loads(extra) if isinstance(extra, str) else extra or {}).get("payload") or {}
            key = payload.get("event_id") or payload.get("line")
            if key is not None:
                out[str(key)] = {"asset event": epoch(ts), "DAG run queued": epoch(queued),
                                 "task instance running": epoch(running)}  # fmt: skip
    return out


def _wait(stack: Any, dag_id: str, keys: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = _results(stack, dag_id)
        if keys <= set(got):
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id}: {len(keys - set(got))} of {len(keys)} events never reached a task")
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=None, help="measured events per DAG (default 20; quick 2)")
    p.add_argument("--gap", type=float, default=1.5, help="seconds between two events of one DAG")
    args = p.parse_args(argv)
    events = args.events or (2 if args.quick else 20)

    from airflow_provider_ion.testing.local_airflow import AirflowStack
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
    from airflow_provider_ion.webhooks.inbox import Inbox

    with tempfile.TemporaryDirectory(prefix="ion-bench-airflow-") as tmp:
        home = Path(tmp)
        dags = home / "dags"
        dags.mkdir()
        lines = home / "lines.txt"
        lines.write_text("")
        (dags / "bench_dags.py").write_text(DAGS.format(poll=POLL, path=str(lines)))
        inbox_url = f"sqlite:///{home}/ion_inbox.db"
        env = {
            "AIRFLOW__ION_WEBHOOKS__INBOX_URL": inbox_url,
            "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
            f"AIRFLOW_VAR_ION_WEBHOOK_SECRET_{RECEIVER.upper()}": SECRET,
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "PYTHONPATH": str(c.REPO),  # the triggerer imports benchmarks.baseline_trigger
        }
        consumer = IonWebhookTrigger(resource="RUNS", action="CREATE", poll_interval=POLL).consumer_name
        started = time.monotonic()
        with AirflowStack(home, dags_folder=dags, env=env) as stack:
            boot = time.monotonic() - started
            stack.wait_for_dag("bench_ion", timeout=180)
            stack.wait_for_dag("bench_baseline", timeout=180)
            inbox = Inbox(inbox_url)
            deadline = time.monotonic() + 180
            while not any(n.startswith(consumer) for n in inbox.list_cursors()):  # started once it has its cursor
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ION trigger never started:\n{stack.log_text('triggerer')[-3000:]}")
                time.sleep(0.3)
            # warm-up: one event each, waited for (the first run of a DAG is slow: not counted)
            warm_ion, warm_line = f"warm-{uuid.uuid4().hex}", "warm-line"
            _post(stack.base_url, warm_ion)
            _append(lines, warm_line)
            _wait(stack, "bench_ion", {warm_ion}, 180)
            _wait(stack, "bench_baseline", {warm_line}, 180)
            accepted_ion: dict[str, float] = {}
            accepted_line: dict[str, float] = {}
            for i in range(events):
                event_id = f"bench-{i}-{uuid.uuid4().hex[:8]}"
                accepted_ion[event_id] = _post(stack.base_url, event_id)
                time.sleep(args.gap / 2)
                accepted_line[f"line-{i}"] = _append(lines, f"line-{i}")
                time.sleep(args.gap / 2)
            got_ion = _wait(stack, "bench_ion", set(accepted_ion), 120 + 5 * events)
            got_line = _wait(stack, "bench_baseline", set(accepted_line), 120 + 5 * events)
            inbox.close()
            stages = _stages(home / "airflow.db")
    lat_ion = [got_ion[k] - t for k, t in accepted_ion.items()]
    lat_line = [got_line[k] - t for k, t in accepted_line.items()]
    m_ion, m_line = c.median(lat_ion), c.median(lat_line)
    close, fast = m_ion - m_line <= 0.3, m_ion < 1.0
    line = (
        f"{events} events each: ours median **{m_ion:.2f} s** (p95 {c.percentile(lat_ion, 95):.2f} s, max "
        f"{max(lat_ion):.2f} s) vs baseline median **{m_line:.2f} s** (p95 {c.percentile(lat_line, 95):.2f} s, max "
        f"{max(lat_line):.2f} s): difference **{m_ion - m_line:+.2f} s**. "
        f"Goal within 0.3 s of the baseline: {c.verdict(close)}; under 1 s: {c.verdict(fast)}"
        + ("" if fast or not close else " (the baseline is as slow: Airflow's own scheduling, not our path)")
    )
    print(f"[airflow] Airflow up in {boot:.0f} s. {line}")
    body = (
        f"Airflow {c.versions()['apache-airflow']} (AirflowStack: separate api-server, scheduler, dag-processor, "
        f"triggerer; SQLite; LocalExecutor), both DAGs in one file, poll {POLL} s, events alternating "
        f"every {args.gap / 2:.2f} s, one warm-up event each not counted.\n\n- {line}\n\n"
        + c.table(
            ["event", "ours s", "baseline s"],
            [[i + 1, f"{a:.2f}", f"{b:.2f}"] for i, (a, b) in enumerate(zip(lat_ion, lat_line, strict=True))],
        )
    )
    breakdown = []
    for name, accepted, got in (("ours", accepted_ion, got_ion), ("baseline", accepted_line, got_line)):
        row: list[Any] = [name]
        for stage in STAGES:
            at = [(got[k] if stage == "task code started" else stages.get(k, {}).get(stage)) for k in accepted]
            deltas = [a - accepted[k] for k, a in zip(accepted, at, strict=True) if a is not None]
            row.append(f"{c.median(deltas):.2f}" if deltas else "-")
        breakdown.append(row)
    print(
        "[airflow] median seconds after acceptance, by stage: "
        + "; ".join(f"{r[0]}: " + ", ".join(f"{s} {v}" for s, v in zip(STAGES, r[1:], strict=True)) for r in breakdown)
    )
    body += "\n\nMedian seconds after acceptance at each stage Airflow records (metadata DB), and task code start:\n\n"
    body += c.table(["trigger", *STAGES], breakdown)
    c.write_section(c.results_path(args), "airflow", "2. Into Airflow (event accepted -> task running)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
