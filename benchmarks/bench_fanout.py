"""Benchmark 3, fan-out: N deferred waiters in one triggerer-like process, ours vs naive per-trigger polling.

In-process, the way a triggerer runs them: the ``run()`` generators of N ``IonWebhookWaitTrigger`` (what
``IonWebhookSensor`` defers to), each waiting for its own event (``match={"data.w": [i, "all"]}``), driven
concurrently on one asyncio loop, against a real SQLite inbox file (WAL). Baseline: the naive design, each
trigger polling the inbox itself (``read_after`` in a thread every poll interval, the same filter) — what
the shared reader exists to avoid. Both at the default poll interval (0.2 s).

Per N: inbox statements per second while idle (counted at the SQLAlchemy engine), process CPU while idle,
then events that each wake one waiter (fire latency append-commit -> trigger yields; CPU per event), then
one event that every remaining waiter matches (the burst; p50/p95/max).

Goal: ours' queries flat in N; p95 fire latency < 1 s at 1,000.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c

POLL = 0.2


def _counter(engine: Any) -> list[int]:
    import sqlalchemy as sa

    counter = [0]

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        counter[0] += 1

    return counter


class NaiveWaitTrigger:
    """The baseline: one trigger, its own inbox poll every POLL seconds (no sharing)."""

    def __init__(self, inbox: Any, after_seq: int, event_filter: Any) -> None:
        self.inbox, self.position, self.filter = inbox, after_seq, event_filter

    async def run(self):
        while True:
            events = await asyncio.to_thread(self.inbox.read_after, self.position, limit=256)
            for event in events:
                if self.filter.matches(event):
                    yield event.to_dict()
                    return
            if events:
                self.position = events[-1].seq
            await asyncio.sleep(POLL)


async def measure(kind: str, url: str, n: int, singles: int, window: float, settle: float) -> dict[str, Any]:
    from airflow_provider_ion.triggers import _reader
    from airflow_provider_ion.triggers.matching import EventFilter
    from airflow_provider_ion.triggers.webhook import IonWebhookWaitTrigger
    from airflow_provider_ion.webhooks.inbox import Inbox

    writer = Inbox(url)  # the receiver's side: its own engine, not counted
    base = writer.latest_seq()
    if kind == "ours":
        inbox = _reader.get_inbox(url)
        triggers = [
            IonWebhookWaitTrigger(
                after_seq=base, resource="RUNS", match={"data.w": [str(i), "all"]}, inbox_url=url, poll_interval=POLL
            )
            for i in range(n)
        ]
    else:
        inbox = Inbox(url)
        triggers = [
            NaiveWaitTrigger(inbox, base, EventFilter.build(resource=["RUNS"], match={"data.w": [str(i), "all"]}))
            for i in range(n)
        ]
    counter = _counter(inbox.engine)
    fired: dict[int, float] = {}

    async def drive(i: int, trigger: Any) -> None:
        async for _event in trigger.run():
            fired[i] = time.perf_counter()
            return

    tasks = [asyncio.create_task(drive(i, t)) for i, t in enumerate(triggers)]
    try:
        await asyncio.sleep(max(settle, n / 500))  # all started and polling
        q0, cpu0, t0 = counter[0], time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        elapsed = time.perf_counter() - t0
        idle_qps, idle_cpu = (counter[0] - q0) / elapsed, (time.process_time() - cpu0) / elapsed
        # events that each wake one waiter, at random phases of the poll
        targets = random.Random(n).sample(range(n), min(singles, n - 1) if n > 1 else 1)
        single_lat, cpu0, t0 = [], time.process_time(), time.perf_counter()
        for i in targets:
            await asyncio.sleep(random.uniform(0, POLL))
            await asyncio.to_thread(
                writer.append, "bench", f"{kind}-{n}-{i}", {"resource": "RUNS", "data": {"w": str(i)}}
            )
            at = time.perf_counter()
            deadline = at + 30
            while i not in fired and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            single_lat.append(fired.get(i, float("inf")) - at)
        single_cpu = (time.process_time() - cpu0) / len(targets)
        # one event every remaining waiter matches
        remaining = [i for i in range(n) if i not in fired]
        burst: list[float] = []
        if remaining:
            await asyncio.sleep(random.uniform(0, POLL))
            cpu0 = time.process_time()
            await asyncio.to_thread(
                writer.append, "bench", f"{kind}-{n}-all", {"resource": "RUNS", "data": {"w": "all"}}
            )
            at = time.perf_counter()
            deadline = at + 60
            while not all(i in fired for i in remaining) and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            burst = [fired.get(i, float("inf")) - at for i in remaining]
            burst_cpu = time.process_time() - cpu0
        else:
            burst_cpu = 0.0
        return {
            "idle_qps": idle_qps,
            "idle_cpu": idle_cpu,
            "single": single_lat,
            "single_cpu": single_cpu,
            "burst": burst,
            "burst_cpu": burst_cpu,
            "missed": sum(1 for x in single_lat + burst if x == float("inf")),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        if kind != "ours":
            inbox.close()


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--waiters", default=None, help="comma-separated N (default 1,100,1000; quick 1,20)")
    args = p.parse_args(argv)
    ns = [int(x) for x in (args.waiters or ("1,20" if args.quick else "1,100,1000")).split(",")]
    singles, window, settle = (3, 0.4, 0.3) if args.quick else (20, 3.0, 1.0)
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="ion-bench-fanout-") as tmp:
        os.environ.setdefault("AIRFLOW_HOME", str(Path(tmp) / "home"))
        for n in ns:
            for kind in ("baseline", "ours"):
                url = f"sqlite:///{tmp}/inbox-{kind}-{n}.db"
                r = asyncio.run(measure(kind, url, n, singles, window, settle))
                results[(kind, n)] = r
                s95 = c.percentile(r["single"], 95)
                b95 = c.percentile(r["burst"], 95) if r["burst"] else float("nan")
                rows.append(
                    [
                        n,
                        kind,
                        f"{r['idle_qps']:.1f}",
                        c.ms(r["idle_cpu"]),
                        c.ms(c.median(r["single"])),
                        c.ms(s95),
                        c.ms(r["single_cpu"]),
                        len(r["burst"]),
                        c.ms(c.median(r["burst"])) if r["burst"] else "-",
                        c.ms(b95) if r["burst"] else "-",
                        c.ms(max(r["burst"])) if r["burst"] else "-",
                        r["missed"],
                    ]
                )
                print(f"[fanout] N={n} {kind}: " + ", ".join(str(x) for x in rows[-1][2:]))
    big = max(ns)
    ours_q = [results[("ours", n)]["idle_qps"] for n in ns]
    flat = max(ours_q) <= 1.5 * min(ours_q) + 1
    ours_big = results[("ours", big)]
    p95_big = max(c.percentile(ours_big["single"], 95), c.percentile(ours_big["burst"] or [0.0], 95))
    naive_big = results[("baseline", big)]
    naive_q = ", ".join(f"N={n}: {results[('baseline', n)]['idle_qps']:.1f}" for n in ns)
    naive_p95 = max(c.percentile(naive_big["single"], 95), c.percentile(naive_big["burst"] or [0.0], 95))
    lines = [
        f"Inbox queries/s while idle, ours: {', '.join(f'N={n}: {q:.1f}' for n, q in zip(ns, ours_q, strict=True))} "
        f"(naive: {naive_q}). "
        f"Flat in N: {c.verdict(flat)}",
        f"N={big}: ours p95 fire latency (worse of single and burst events) **{c.ms(p95_big)} ms** vs naive "
        f"{c.ms(naive_p95)} ms; idle CPU ours "
        f"{c.ms(ours_big['idle_cpu'])} ms/s vs naive {c.ms(naive_big['idle_cpu'])} ms/s; CPU per single event ours "
        f"{c.ms(ours_big['single_cpu'])} ms vs naive {c.ms(naive_big['single_cpu'])} ms. "
        f"Goal (p95 < 1 s at {big}): {c.verdict(p95_big < 1.0 and ours_big['missed'] == 0)}",
    ]
    for line in lines:
        print(f"[fanout] {line}")
    body = (
        f"Poll interval {POLL} s, SQLite inbox file; {singles} single-waiter events at random poll phases, then one "
        f"event all remaining waiters match (burst). Idle window {window} s. CPU = this process (user+sys).\n\n- "
        + "\n- ".join(lines)
        + "\n\n"
        + c.table(
            [
                "N",
                "design",
                "idle queries/s",
                "idle CPU ms/s",
                "single p50 ms",
                "single p95 ms",
                "CPU/single event ms",
                "burst waiters",
                "burst p50 ms",
                "burst p95 ms",
                "burst max ms",
                "missed",
            ],
            rows,
        )
    )
    c.write_section(c.results_path(args), "fanout", "3. Fan-out (deferred waiters in one triggerer)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
