"""Benchmark 5, hook: IonHook against the emulator vs a bare httpx POST loop sending the same queries.

The emulator runs as its own process (``airflow-ion emulator`` with a seeded ``--state-file``: one
receiver, 10,000 subscriptions), so its CPU never shares this interpreter. Measured in this process:

- 1,000 ``GetWebhookReceiver`` queries with ``IonHook.execute`` (sync) vs ``httpx.Client.post`` of the same
  printed document with a bearer token fetched once; token requests counted by the emulator.
- listing 10,000 subscriptions: ``IonHook.list_subscriptions()`` (Relay pages of 100) vs an httpx loop
  over the same document and page size.

Reported: queries/s and pages/s (wall), client CPU per query (this process), the ratio ours/baseline.
Rounds alternate ours/baseline.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import _common as c

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret-0123456789"
CONN_ID = "ion_bench"


def seed(state_file: Path, subscriptions: int) -> int:
    from airflow_provider_ion.testing.emulator.store import Store

    store = Store(state_file)
    with store.bulk():
        receiver = store.create_receiver({"name": "bench", "webhookUri": "https://example.test/hook"})
        resources = ("RUNS", "ISSUES", "PURCHASE_ORDERS", "PART_INVENTORIES")
        for i in range(subscriptions):
            store.create_subscription(
                {"receiverId": receiver["id"], "resource": resources[i % 4], "action": ("CREATE", "UPDATE")[i % 2]}
            )
    store.close()
    return int(receiver["id"])


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    w, p = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - p


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=None, help="default 1000; quick 30")
    p.add_argument("--subscriptions", type=int, default=None, help="default 10000; quick 300")
    p.add_argument("--rounds", type=int, default=None, help="default 2; quick 1")
    args = p.parse_args(argv)
    queries = args.queries or (30 if args.quick else 1000)
    subs = args.subscriptions or (300 if args.quick else 10000)
    rounds = args.rounds or (1 if args.quick else 2)
    page = 100

    import httpx

    from airflow_provider_ion.graphql import published_document
    from airflow_provider_ion.hooks.ion import IonHook, clear_token_cache

    with tempfile.TemporaryDirectory(prefix="ion-bench-hook-") as tmp:
        work = Path(tmp)
        receiver_id = seed(work / "state.db", subs)
        port = c.free_port()
        base = f"http://127.0.0.1:{port}"
        args_emu = [
            str(c.BIN / "airflow-ion"),
            "emulator",
            "--port",
            str(port),
            "--state-file",
            str(work / "state.db"),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--token-lifetime",
            "3600",
            "--log-level",
            "warning",
        ]
        token_url = f"{base}/realms/api-keys/protocol/openid-connect/token"
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {
                "conn_type": "ion",
                "login": CLIENT_ID,
                "password": CLIENT_SECRET,
                "host": base,
                "extra": {"auth_url": token_url},
            }
        )
        os.environ.setdefault("AIRFLOW_HOME", str(work / "home"))
        with c.Server(args_emu, log=work / "emulator.log").start(f"{base}/_emulator/health"):
            stats0 = httpx.get(f"{base}/_emulator/stats").json()["token_requests"]
            clear_token_cache()
            hook = IonHook(CONN_ID)
            get_doc = published_document("GetWebhookReceiver")  # what the hook sends to a schema that has it all
            list_doc = published_document("ListWebhookSubscriptions")
            http = httpx.Client(base_url=base, trust_env=False, timeout=30)
            token = http.post(
                token_url.removeprefix(base),
                data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            ).json()["access_token"]
            headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            variables = {"id": str(receiver_id)}

            def ours_queries() -> None:
                for _ in range(queries):
                    assert hook.execute("GetWebhookReceiver", variables)["webhookReceiver"]["id"]

            def base_queries() -> None:
                body = {"query": get_doc, "operationName": "GetWebhookReceiver", "variables": variables}
                for _ in range(queries):
                    r = http.post("/graphql", json=body, headers=headers)
                    r.raise_for_status()
                    assert r.json()["data"]["webhookReceiver"]["id"]

            pages = {"ours": 0, "baseline": 0}

            def ours_list() -> None:
                assert len(hook.list_subscriptions()) == subs
                pages["ours"] = -(-subs // page)

            def base_list() -> None:
                after, n, count = None, 0, 0
                while True:
                    body = {
                        "query": list_doc,
                        "operationName": "ListWebhookSubscriptions",
                        "variables": {"first": page, "after": after, "filters": None},
                    }
                    r = http.post("/graphql", json=body, headers=headers)
                    r.raise_for_status()
                    conn = r.json()["data"]["webhookSubscriptions"]
                    n += 1
                    count += len(conn["edges"])
                    if not conn["pageInfo"]["hasNextPage"]:
                        break
                    after = conn["pageInfo"]["endCursor"]
                assert count == subs
                pages["baseline"] = n

            # warm both paths (connections, parsed documents, token)
            hook.execute("GetWebhookReceiver", variables)
            http.post("/graphql", json={"query": get_doc, "variables": variables}, headers=headers)
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in ("oq", "bq", "ol", "bl")}
            for _ in range(rounds):
                results["oq"].append(_timed(ours_queries))
                results["bq"].append(_timed(base_queries))
                results["ol"].append(_timed(ours_list))
                results["bl"].append(_timed(base_list))
            token_requests = httpx.get(f"{base}/_emulator/stats").json()["token_requests"] - stats0
            hook.close()
            http.close()
    med = {k: (c.median([w for w, _ in v]), c.median([p for _, p in v])) for k, v in results.items()}
    oq, bq = queries / med["oq"][0], queries / med["bq"][0]
    ol, bl = pages["ours"] / med["ol"][0], pages["baseline"] / med["bl"][0]
    cpu_o, cpu_b = med["oq"][1] / queries, med["bq"][1] / queries
    lines = [
        f"{queries} queries: IonHook **{oq:.0f} q/s** vs bare httpx **{bq:.0f} q/s**: ratio **{oq / bq:.2f}**; client "
        f"CPU {c.ms(cpu_o)} ms vs {c.ms(cpu_b)} ms per query (+{c.ms(cpu_o - cpu_b)} ms). Token requests: "
        f"{token_requests} (1 by the hook for {queries * rounds + 1 + pages['ours'] * rounds} hook calls, 1 by the "
        "baseline).",
        f"Listing {subs} subscriptions ({pages['ours']} pages of {page}): IonHook **{ol:.1f} pages/s** vs httpx "
        f"**{bl:.1f} pages/s**: ratio **{ol / bl:.2f}**; client CPU {c.ms(med['ol'][1] / pages['ours'])} ms vs "
        f"{c.ms(med['bl'][1] / pages['baseline'])} ms per page.",
    ]
    for line in lines:
        print(f"[hook] {line}")
    rows = [[k, f"{w:.3f}", f"{p_:.3f}"] for k, v in results.items() for w, p_ in v]
    names = {"oq": "IonHook queries", "bq": "httpx queries", "ol": "IonHook list", "bl": "httpx list"}
    rows = [[names[r[0]], *r[1:]] for r in rows]
    body = (
        "Emulator in its own process (`airflow-ion emulator --state-file`, seeded), client here, sync; rounds "
        f"alternate ours/baseline ({rounds}); medians. The emulator's GraphQL execution is most of the wall time, "
        "so the client CPU per call is the figure that isolates the hook.\n\n- "
        + "\n- ".join(lines)
        + "\n\n"
        + c.table(["run", "wall s", "client CPU s"], rows)
    )
    c.write_section(c.results_path(args), "hook", "5. Hook", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
