"""Benchmark 1, receiver ingest: signed 1 KB deliveries at 32 keep-alive connections, ours vs a bare app.

(a) ours: ``airflow-ion receiver serve`` (the real CLI, settings from the environment the way an operator
gives them: secret in ``AIRFLOW_VAR_ION_WEBHOOK_SECRET_BENCH``, ``AIRFLOW__ION_WEBHOOKS__ION_CONN_ID=none``);
(b) ``benchmarks/baseline_receiver.py`` (HMAC + insert-or-ignore, nothing else; see its docstring);
(c) the HTTP ceiling: ``benchmarks/baseline_receiver.py --ceiling`` (Starlette + uvicorn reading the body and
answering 200: no verify, no storage), so ``ours / ceiling`` is the fraction of the stack's capacity we use.
All under uvicorn with the same options, on SQLite (WAL, synchronous=FULL, a fresh file per run) and on
PostgreSQL (a fresh schema per run). The load comes from ``benchmarks/loadgen.py`` in its own process.
Rounds alternate ceiling/baseline/ours so drift in the machine's load hits both; rows are counted afterwards.

Goal: ours >= 80% of the baseline's req/s, p99 < 25 ms, no delivery lost.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import _common as c

SECRET = "bench-secret-0123456789abcdefghijklmnop"
RECEIVER = "bench"


def _count_rows(url: str, table: str) -> int:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    import psycopg

    schema = url.rsplit("search_path%3D", 1)[1]
    with psycopg.connect(c.pg_dsn()) as conn:
        return conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()[0]


def run_one(impl: str, url: str, work: Path, n: int, warmup: int, concurrency: int, tag: str) -> dict:
    port = c.free_port()
    home = work / f"home-{tag}"
    home.mkdir(parents=True, exist_ok=True)
    if impl == "ours":
        args = c.receiver_command(port, url)
        table = "ion_inbox_events"
    elif impl == "ceiling":
        args = [sys.executable, "-m", "benchmarks.baseline_receiver", "--port", str(port), "--ceiling"]
        table = ""
    else:
        args = [
            sys.executable,
            "-m",
            "benchmarks.baseline_receiver",
            "--port",
            str(port),
            "--inbox-url",
            url,
            "--secret",
            SECRET,
            "--synchronous",
            "FULL",
        ]
        table = "baseline_events"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
        f"AIRFLOW_VAR_ION_WEBHOOK_SECRET_{RECEIVER.upper()}": SECRET,
    }
    with c.Server(args, env=env, log=work / f"{tag}.log").start(f"http://127.0.0.1:{port}/ion-webhooks/health"):
        load = [
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
            str(warmup),
            "--concurrency",
            str(concurrency),
            "--prefix",
            tag,
        ]
        done = subprocess.run(load, capture_output=True, text=True, cwd=c.REPO, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed: {done.stderr[-3000:]}")
        result = json.loads(done.stdout)
    # The ceiling stores nothing: its measured 200s plus the warm-up count as "stored" (no row check there).
    result["rows"] = _count_rows(url, table) if table else result["statuses"].get("200", 0) + warmup
    result["ok"] = result["statuses"].get("200", 0)
    result["expected_rows"] = n + warmup
    return result


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="deliveries per run (default 20000; quick 200)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=None, help="baseline/ours pairs per backend (default 2; quick 1)")
    p.add_argument("--backends", default="sqlite,postgres")
    args = p.parse_args(argv)
    n = args.n or (200 if args.quick else 20000)
    warmup = 20 if args.quick else 500
    rounds = args.rounds or (1 if args.quick else 2)
    backends = [b for b in args.backends.split(",") if b]
    if "postgres" in backends and not c.pg_available():
        print("[receiver] PostgreSQL not reachable: skipping the PostgreSQL runs", file=sys.stderr)
        backends.remove("postgres")
    rows = []
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ion-bench-receiver-") as tmp:
        work = Path(tmp)
        for backend in backends:
            per: dict[str, list[dict]] = {"ceiling": [], "baseline": [], "ours": []}
            for r in range(rounds):
                for impl in ("ceiling", "baseline", "ours"):
                    tag = f"{backend}-{impl}-{r}"
                    if backend == "sqlite":
                        res = run_one(impl, f"sqlite:///{work}/{tag}.db", work, n, warmup, args.concurrency, tag)
                    else:
                        with c.pg_schema("ion_bench_recv") as (_schema, url):
                            res = run_one(impl, url, work, n, warmup, args.concurrency, tag)
                    per[impl].append(res)
                    lost = res["expected_rows"] - res["rows"]
                    print(
                        f"[receiver] {tag}: {res['rps']:.0f} req/s p50 {c.ms(res['p50'])} ms "
                        f"p99 {c.ms(res['p99'])} ms statuses {res['statuses']} rows {res['rows']} (lost {lost})"
                    )
                    rows.append(
                        [
                            backend,
                            impl,
                            r + 1,
                            f"{res['rps']:.0f}",
                            c.ms(res["p50"]),
                            c.ms(res["p99"]),
                            c.ms(res["max"]),
                            res["ok"],
                            f"{res['rows']}/{res['expected_rows']}",
                        ]
                    )
            ratios = [o["rps"] / b["rps"] for b, o in zip(per["baseline"], per["ours"], strict=True)]
            of_ceiling = [o["rps"] / x["rps"] for x, o in zip(per["ceiling"], per["ours"], strict=True)]
            summary[backend] = {
                "ratio": c.median(ratios),
                "ratios": ratios,
                "of_ceiling": c.median(of_ceiling),
                "ceiling_rps": c.median([x["rps"] for x in per["ceiling"]]),
                "ceiling_p99": c.median([x["p99"] for x in per["ceiling"]]),
                "ours_p99": c.median([o["p99"] for o in per["ours"]]),
                "base_p99": c.median([b["p99"] for b in per["baseline"]]),
                "ours_rps": c.median([o["rps"] for o in per["ours"]]),
                "base_rps": c.median([b["rps"] for b in per["baseline"]]),
                "lost": sum(x["expected_rows"] - x["rows"] for x in per["ours"] + per["baseline"]),
                "non200": sum(x["n"] - x["ok"] for x in per["ours"] + per["baseline"]),
            }
    lines = []
    for backend, s in summary.items():
        ok = s["ratio"] >= 0.8 and s["ours_p99"] < 0.025 and s["lost"] == 0 and s["non200"] == 0
        lines.append(
            f"- **{backend}**: ours {s['ours_rps']:.0f} req/s vs baseline {s['base_rps']:.0f} req/s: ratio "
            f"**{s['ratio']:.2f}** (per round {', '.join(f'{x:.2f}' for x in s['ratios'])}); p99 ours "
            f"{c.ms(s['ours_p99'])} ms vs {c.ms(s['base_p99'])} ms; HTTP ceiling {s['ceiling_rps']:.0f} req/s "
            f"(p99 {c.ms(s['ceiling_p99'])} ms): ours = **{s['of_ceiling']:.2f}** of the ceiling; "
            f"lost {s['lost']}, non-200 {s['non200']}. "
            f"Goal (>= 0.80, p99 < 25 ms, none lost): {c.verdict(ok)}"
        )
        print(f"[receiver] {lines[-1]}")
    body = (
        f"{n} signed deliveries of 1 KB (after {warmup} warm-up ones, also counted) at {args.concurrency} keep-alive "
        "connections from `benchmarks/loadgen.py` (own process, asyncio+uvloop raw HTTP/1.1). Ours: "
        "`airflow-ion receiver serve` (SQLite inbox WAL synchronous=FULL, or PostgreSQL). Baseline: "
        "`benchmarks/baseline_receiver.py` (Starlette, HMAC, insert-or-ignore in a worker thread, same "
        "synchronous mode; PostgreSQL without ours' advisory lock and NOTIFY). Ceiling: `baseline_receiver.py "
        "--ceiling` (Starlette reads the body, answers 200; no verify, no storage). Same uvicorn options (loop/http "
        "auto = uvloop/httptools, 1 worker, no access log). Rows counted in the table after each run.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + c.table(["backend", "server", "round", "req/s", "p50 ms", "p99 ms", "max ms", "200s", "rows/expected"], rows)
    )
    c.write_section(c.results_path(args), "receiver", "1. Receiver ingest", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
