"""Load generator: N signed 1 KB deliveries over C keep-alive HTTP/1.1 connections; prints JSON figures.

Runs as its own process (``python -m benchmarks.loadgen ...``) so it never shares an interpreter with the
server it measures. A minimal HTTP/1.1 client on asyncio streams (uvloop when installed): httpx costs
~10x more CPU per request and, on a 2-core machine, would measure itself. Every request is built and
signed before the clock starts; latency is send -> full response read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from airflow_provider_ion.webhooks.signature import sign


def body_for(prefix: str, i: int, size: int) -> bytes:
    """A delivery body of exactly ``size`` bytes (padded in ``data.notes``)."""
    doc = {
        "event_id": f"{prefix}-{i}",
        "subscription_id": 1,
        "resource": "RUNS",
        "action": "CREATE",
        "created_at": "2026-01-01T00:00:00Z",
        "data": {"id": i, "serial": f"SN-{i:06d}", "notes": ""},
    }
    raw = json.dumps(doc, separators=(",", ":"))
    pad = max(0, size - len(raw))
    doc["data"]["notes"] = "x" * pad
    return json.dumps(doc, separators=(",", ":")).encode()


def build_requests(host: str, port: int, path: str, secret: str, prefix: str, n: int, size: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = body_for(prefix, i, size)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-ion-signature: {sign(body, secret)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _worker(
    host: str, port: int, requests: list[bytes], next_index: list[int], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            i = next_index[0]
            if i >= len(requests):
                return
            next_index[0] = i + 1
            t0 = time.perf_counter()
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def run(host: str, port: int, requests: list[bytes], concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = [0]
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, requests, next_index, latencies, statuses) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] if latencies else float("nan")

    return {
        "n": len(requests),
        "elapsed": elapsed,
        "rps": len(requests) / elapsed,
        "p50": pct(50),
        "p99": pct(99),
        "max": latencies[-1] if latencies else float("nan"),
        "statuses": statuses,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--warmup", type=int, default=500, help="requests sent (and stored) before the measured ones")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--body-bytes", type=int, default=1024)
    p.add_argument("--prefix", default="bench")
    args = p.parse_args(argv)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    build = lambda prefix, n: build_requests(args.host, args.port, args.path, args.secret, prefix, n, args.body_bytes)  # noqa: E731
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if args.warmup:
            runner.run(run(args.host, args.port, build(f"{args.prefix}-warm", args.warmup), args.concurrency))
        result = runner.run(run(args.host, args.port, build(args.prefix, args.n), args.concurrency))
    result["warmup"] = args.warmup
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
