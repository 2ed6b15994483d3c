"""Benchmark 6, the cluster: ION events per second delivery -> completed task, and the PostgreSQL inbox's ceiling.

(a) **Appends/s, two receivers**: two ``airflow-ion receiver serve`` processes on one PostgreSQL inbox (a
fresh schema), each loaded by its own ``benchmarks.loadgen`` (signed 1 KB deliveries, 16 connections each),
at the same time. Baseline in the same run: one receiver with one loadgen at 32 connections.
(b) **Reads, 1,000 waiting sensors across two triggerers**: two processes, each driving 500
``IonWebhookWaitTrigger`` ``run()`` generators (what ``IonWebhookSensor`` defers to) on one asyncio loop, as
a triggerer does, against one PostgreSQL inbox. Idle inbox statements/s (both processes), then events that
each wake one waiter (append commit -> trigger yields), then one event all remaining waiters match. Baseline:
the same 1,000 waiters in one process (one triggerer).
(c) **End to end on the cluster** (:mod:`airflow_provider_ion.testing.cluster`: CeleryExecutor, 2 API servers
behind HAProxy, 2 schedulers, 2 triggerers, 2 Celery workers at concurrency 2): the emulator fires N ION events
at once; events/s = N / (first fire -> last event's task finished). Baseline in the same cluster:
``benchmarks.baseline_trigger.FileLineTrigger`` (N lines appended at once to a file an AssetWatcher polls).

Run: ``python -m benchmarks.bench_cluster`` (``--quick``: tiny counts, checks it works; ``--parts ab`` skips
the cluster). Needs PostgreSQL (and for (c) Redis and HAProxy: the cluster starts/installs them).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c

SECRET = "bench-secret-0123456789abcdefghijklmnop"
RECEIVER = "bench"
POLL = 0.2


# -- (a) appends ------------------------------------------------------------------------------------------
def _receiver(port: int, url: str, home: Path) -> c.Server:
    args = c.receiver_command(port, url)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
        f"AIRFLOW_VAR_ION_WEBHOOK_SECRET_{RECEIVER.upper()}": SECRET,
    }
    home.mkdir(parents=True, exist_ok=True)
    return c.Server(args, env=env, log=home / "receiver.log")


def _loadgen(port: int, n: int, concurrency: int, prefix: str) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--port",
        str(port),
        "--path",
        f"/ion-webhooks/v1/receivers/{RECEIVER}",
        "--secret",
        SECRET,
        "--n",
        str(n),
        "--warmup",
        "20",
        "--concurrency",
        str(concurrency),
        "--prefix",
        prefix,
    ]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=c.REPO)


def appends(receivers: int, n: int, work: Path, tag: str) -> dict[str, Any]:
    """Deliveries/s stored by ``receivers`` receivers on one PostgreSQL inbox, all loaded at once."""
    with c.pg_schema(f"bench_cluster_{tag}") as (schema, url):
        ports = [c.free_port() for _ in range(receivers)]
        servers = [_receiver(p, url, work / f"{tag}-{i}") for i, p in enumerate(ports)]
        try:
            for server, port in zip(servers, ports, strict=True):
                server.start(f"http://127.0.0.1:{port}/ion-webhooks/health")
            loads = [_loadgen(p, n // receivers, 32 // receivers, f"{tag}-{i}") for i, p in enumerate(ports)]
            results = []
            for load in loads:
                out, err = load.communicate(timeout=900)
                if load.returncode != 0:
                    raise RuntimeError(f"loadgen failed: {err[-3000:]}")
                results.append(json.loads(out))
        finally:
            for server in servers:
                server.stop()
        import psycopg

        with psycopg.connect(c.pg_dsn()) as conn:
            rows = conn.execute(f'SELECT count(*) FROM "{schema}".ion_inbox_events').fetchone()[0]
    measured = sum(r["n"] for r in results)
    return {
        "receivers": receivers,
        "rps": sum(r["rps"] for r in results),
        "p99": max(r["p99"] for r in results),
        "ok": sum(r["statuses"].get("200", 0) for r in results),
        "rows": rows,
        "expected": measured + 20 * receivers,
    }


# -- (b) reads ---------------------------------------------------------------------------------------------
async def _waiters(url: str, tag: str, n: int, after_seq: int, settle: float, window: float, until: float) -> None:
    """Child: n waiters ``{tag}-{i}``; prints ``ready`` once they all run, then idle statements over ``window``
    seconds, then each fire time, as JSON lines."""
    import sqlalchemy as sa

    from airflow_provider_ion.triggers import _reader
    from airflow_provider_ion.triggers.webhook import IonWebhookWaitTrigger

    inbox = _reader.get_inbox(url)
    counter = [0]
    sa.event.listen(inbox.engine, "before_cursor_execute", lambda *_a: counter.__setitem__(0, counter[0] + 1))
    fired: dict[int, float] = {}

    async def drive(i: int) -> None:
        trigger = IonWebhookWaitTrigger(
            after_seq=after_seq,
            resource="RUNS",
            match={"data.w": [f"{tag}-{i}", "all"]},
            inbox_url=url,
            poll_interval=POLL,
        )
        async for _event in trigger.run():
            fired[i] = time.time()
            print(json.dumps({"fired": i, "t": fired[i]}), flush=True)
            return

    tasks = [asyncio.create_task(drive(i)) for i in range(n)]
    await asyncio.sleep(settle)
    print(json.dumps({"ready": True}), flush=True)
    q0, t0 = counter[0], time.perf_counter()
    await asyncio.sleep(window)
    print(json.dumps({"idle_qps": (counter[0] - q0) / (time.perf_counter() - t0)}), flush=True)
    while len(fired) < n and time.time() < until:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def reads(processes: int, total: int, singles: int, settle: float, window: float) -> dict[str, Any]:
    """``total`` waiters split over ``processes`` triggerer-like processes on one PostgreSQL inbox."""
    import random

    from airflow_provider_ion.webhooks.inbox import Inbox

    with c.pg_schema(f"bench_reads_{processes}") as (_schema, url):
        writer = Inbox(url)
        base = writer.latest_seq()
        per = total // processes
        until = time.time() + 600
        settle = settle + per / 250
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_cluster",
                    "--waiter-child",
                    url,
                    f"p{k}",
                    str(per),
                    str(base),
                    str(settle),
                    str(window),
                    str(until),
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=c.REPO,
            )
            for k in range(processes)
        ]
        for child in children:  # every waiter of every process runs
            assert child.stdout is not None
            line = child.stdout.readline()
            assert "ready" in line, f"waiter process failed: {line!r}"
        time.sleep(window + 0.5)
        sent: dict[str, float] = {}
        rng = random.Random(total)
        for j in range(singles):
            k, i = j % processes, rng.randrange(per)
            time.sleep(rng.uniform(0, POLL) + 0.3)
            sent[f"p{k}-{i}"] = time.time()  # before the append: its commit is inside the measured time
            writer.append("bench", f"single-{j}", {"resource": "RUNS", "data": {"w": f"p{k}-{i}"}})
        time.sleep(1)
        burst_at = time.time()
        writer.append("bench", "all", {"resource": "RUNS", "data": {"w": "all"}})
        idle, fired = 0.0, {}
        for k, child in enumerate(children):
            out, _ = child.communicate(timeout=600)
            for line in out.splitlines():
                doc = json.loads(line)
                if "idle_qps" in doc:
                    idle += doc["idle_qps"]
                elif "fired" in doc:
                    fired[f"p{k}-{doc['fired']}"] = doc["t"]
        writer.close()
    single = [fired.get(key, float("inf")) - at for key, at in sent.items()]
    burst = [t - burst_at for key, t in fired.items() if key not in sent]
    return {
        "processes": processes,
        "waiters": per * processes,
        "idle_qps": idle,
        "single": single,
        "burst": burst,
        "missed": per * processes - len(fired),
    }


# -- (c) end to end ----------------------------------------------------------------------------------------
BASELINE_DAG = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, task
    from benchmarks.baseline_trigger import FileLineTrigger

    lines = Asset("file://bench/lines", watchers=[AssetWatcher(
        name="file_lines", trigger=FileLineTrigger(path={path!r}, poll_interval=0.2))])
    with DAG("bench_baseline", schedule=[lines], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
             max_active_runs=16):
        @task
        def handle(*, triggering_asset_events=None):
            return [e.extra["payload"] for evs in triggering_asset_events.values() for e in evs]
        handle()
    """
)


def _finished(cluster: Any, dag_id: str) -> tuple[int, float | None]:
    """(events in successful runs' task results, latest task end as epoch seconds)."""
    rows = cluster.query(
        "SELECT x.value, ti.end_date FROM xcom x JOIN task_instance ti ON ti.dag_id = x.dag_id AND "
        "ti.run_id = x.run_id AND ti.task_id = x.task_id WHERE x.dag_id = %s AND ti.state = 'success'",
        dag_id,
    )
    count = sum(len(json.loads(v) if isinstance(v, str) else v or []) for v, _ in rows)
    last = max((end.timestamp() for _, end in rows if end), default=None)
    return count, last


def _say(text: str) -> None:
    print(f"[cluster] {text}", flush=True)


def end_to_end(n: int, work: Path, timeout: float) -> dict[str, Any]:
    from airflow_provider_ion.testing.cluster import (
        CLUSTER_DAG,
        DAG_ID,
        AirflowCluster,
        subscribed_emulator,
        wait_for_trigger,
    )

    dags = work / "dags"
    dags.mkdir(parents=True)
    lines = work / "lines.txt"
    lines.write_text("")
    (dags / "ion_cluster_events.py").write_text(CLUSTER_DAG)
    (dags / "bench_baseline.py").write_text(BASELINE_DAG.format(path=str(lines)))
    prefix = c.PG_URL.rsplit("/", 1)[1] + "_"
    admin = c.pg_dsn().rsplit("/", 1)[0] + "/postgres"
    out: dict[str, Any] = {}
    with AirflowCluster(
        work, dags_folder=dags, pg_admin_url=admin, db_prefix=prefix, env={"PYTHONPATH": str(c.REPO)}, say=_say
    ) as cluster:
        wait_for_trigger(cluster)
        cluster.stack.wait_for_dag("bench_baseline")
        ion = subscribed_emulator(cluster.receiver_url, concurrency=16)
        try:
            for kind in ("baseline", "ours"):
                dag_id = DAG_ID if kind == "ours" else "bench_baseline"
                time.sleep(3)
                started = time.time()
                if kind == "ours":
                    for i in range(n):
                        ion.fire("RUNS", "CREATE", {"n": i})
                else:
                    with lines.open("a") as f:
                        f.write("".join(f"line {i}\n" for i in range(n)))
                deadline = time.monotonic() + timeout
                trailing = time.monotonic() + 15
                while True:
                    count, last = _finished(cluster, dag_id)
                    if count >= n or time.monotonic() > deadline:
                        break
                    if time.monotonic() > trailing:  # a stranded tail (Airflow 3.3.2): one trailing event
                        trailing = float("inf")
                        if kind == "ours":
                            ion.fire("RUNS", "CREATE", {"n": -1})
                        else:
                            with lines.open("a") as f:
                                f.write("trailing\n")
                    time.sleep(0.5)
                runs = cluster.query("SELECT count(*) FROM dag_run WHERE dag_id = %s", dag_id)[0][0]
                elapsed = (last or time.time()) - started
                out[kind] = {
                    "events": min(count, n),
                    "runs": runs,
                    "elapsed": elapsed,
                    "eps": min(count, n) / elapsed,
                    "complete": count >= n,
                }
                print(f"[cluster e2e] {kind}: {out[kind]}", flush=True)
        finally:
            ion.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--waiter-child":
        url, tag, n, base, settle, window, until = sys.argv[2:9]
        os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="ion-bench-waiters-"))
        asyncio.run(_waiters(url, tag, int(n), int(base), float(settle), float(window), float(until)))
        return 0
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--parts", default="abc", help="a: appends, b: reads, c: end to end on the cluster")
    p.add_argument("--events", type=int, default=None, help="(c) ION events (default 300; quick 20)")
    args = p.parse_args(argv)
    if not c.pg_available():
        print("[cluster] PostgreSQL is not reachable", file=sys.stderr)
        return 1
    q = args.quick
    n_append, waiters, singles = (200, 40, 4) if q else (6000, 1000, 20)
    n_events = args.events or (20 if q else 300)
    sections = []
    with tempfile.TemporaryDirectory(prefix="ion-bench-cluster-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("AIRFLOW_HOME", str(work / "home"))
        if "a" in args.parts:
            base, two = appends(1, n_append, work, "one"), appends(2, n_append, work, "two")
            rows = [
                [
                    r["receivers"],
                    f"{r['rps']:.0f}",
                    c.ms(r["p99"]),
                    f"{r['rows']}/{r['expected']}",
                ]
                for r in (base, two)
            ]
            sections.append(
                "### (a) Inbox appends on PostgreSQL, receivers in parallel\n\n"
                + c.table(["receivers", "deliveries/s (sum over receivers)", "p99 ms (worst)", "rows stored"], rows)
                + f"\n\nTwo receivers vs one: **{two['rps'] / base['rps']:.2f}x**."
            )
            print(sections[-1], flush=True)
        if "b" in args.parts:
            settle, window = (1.0, 1.0) if q else (3.0, 5.0)
            base, two = reads(1, waiters, singles, settle, window), reads(2, waiters, singles, settle, window)
            rows = []
            for r in (base, two):
                finite = [x for x in r["single"] if x != float("inf")] or [float("nan")]
                rows.append(
                    [
                        r["processes"],
                        r["waiters"],
                        f"{r['idle_qps']:.1f}",
                        c.ms(c.median(finite)),
                        c.ms(c.percentile(finite, 95)),
                        len(r["burst"]),
                        c.ms(c.percentile(r["burst"], 95)) if r["burst"] else "-",
                        r["missed"],
                    ]
                )
            sections.append(
                "### (b) Inbox reads on PostgreSQL: waiting sensors (IonWebhookWaitTrigger) per triggerer\n\n"
                + c.table(
                    [
                        "triggerers",
                        "waiters",
                        "idle statements/s",
                        "single p50 ms",
                        "single p95 ms",
                        "burst n",
                        "burst p95 ms",
                        "missed",
                    ],
                    rows,
                )
            )
            print(sections[-1], flush=True)
        if "c" in args.parts:
            r = end_to_end(n_events, work / "cluster", timeout=120 if q else 600)
            rows = [
                [k, v["events"], v["runs"], f"{v['elapsed']:.1f}", f"{v['eps']:.1f}", v["complete"]]
                for k, v in r.items()
            ]
            sections.append(
                f"### (c) End to end on the cluster: {n_events} events at once, fire -> last task finished\n\n"
                + c.table(["path", "events", "DAG runs", "seconds", "events/s", "all handled"], rows)
            )
            print(sections[-1], flush=True)
    c.write_section(
        c.results_path(args),
        "cluster",
        "6. Cluster (PostgreSQL inbox ceiling; end to end on Celery)",
        "\n\n".join(sections),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
