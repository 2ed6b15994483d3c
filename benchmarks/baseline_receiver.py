"""The bare baseline receiver: what any webhook endpoint must do at minimum, and nothing else.

Starlette + uvicorn, ``POST /ion-webhooks/v1/receivers/{name}``: read the body, verify
``x-ion-signature: sha256=<hex HMAC-SHA256 of the raw body>`` (constant-time compare), ``json.loads`` the
body for ``event_id``, then an insert-or-ignore keyed on ``(receiver, event_id)`` committed before the
200, in a worker thread (``run_in_threadpool``, like ours):

- SQLite: one connection, WAL, the same ``synchronous`` mode as ours (FULL), writers serialised by a
  lock (SQLite has one writer anyway), ``INSERT OR IGNORE``.
- PostgreSQL (psycopg 3): a connection per worker thread, autocommit, ``INSERT ... ON CONFLICT DO NOTHING``.
  No ordering lock and no NOTIFY (ours takes an advisory lock and sends NOTIFY per append, see the inbox).

No content-type/size/source checks, no secret lookup chain, no counters, no SQLAlchemy. Served by
``uvicorn.run`` with the same options as ``airflow-ion receiver serve`` (loop/http ``auto``, 1 worker,
no access log, ``proxy_headers=False``).

``--ceiling`` serves the HTTP ceiling of this stack instead: the same route reads the whole body and answers
200 with a small JSON body; no signature check, no parsing, no storage. Nothing can ingest faster than this
on the same Starlette + uvicorn, so ``ours / ceiling`` is the fraction of the stack's capacity we use.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import sqlite3
import threading
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA_SQLITE = """CREATE TABLE IF NOT EXISTS baseline_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL, event_id TEXT NOT NULL,
    received_at REAL NOT NULL, body BLOB NOT NULL, UNIQUE (receiver, event_id))"""
SCHEMA_PG = """CREATE TABLE IF NOT EXISTS baseline_events (
    seq BIGSERIAL PRIMARY KEY, receiver TEXT NOT NULL, event_id TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(), body BYTEA NOT NULL, UNIQUE (receiver, event_id))"""


class SqliteStore:
    def __init__(self, path: str, synchronous: str) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute(SCHEMA_SQLITE)
        self.lock = threading.Lock()

    def append(self, receiver: str, event_id: str, body: bytes) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT OR IGNORE INTO baseline_events (receiver, event_id, received_at, body) VALUES (?, ?, ?, ?)",
                (receiver, event_id, time.time(), body),
            )


class PostgresStore:
    def __init__(self, dsn: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.dsn = dsn
        self.local = threading.local()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA_PG)

    def append(self, receiver: str, event_id: str, body: bytes) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.psycopg.connect(self.dsn, autocommit=True)
        conn.execute(
            "INSERT INTO baseline_events (receiver, event_id, body) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (receiver, event_id, body),
        )


def create_app(store: SqliteStore | PostgresStore, secret: str) -> Starlette:
    key = secret.encode()

    async def receive(request: Request) -> Response:
        body = await request.body()
        given = request.headers.get("x-ion-signature", "").removeprefix("sha256=")
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower(), expected):
            return JSONResponse({"error": "signature mismatch"}, 401)
        try:
            event_id = str(json.loads(body)["event_id"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "bad body"}, 400)
        await run_in_threadpool(store.append, request.path_params["name"], event_id, body)
        return JSONResponse({"status": "accepted"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    return Starlette(
        routes=[
            Route("/ion-webhooks/v1/receivers/{name}", receive, methods=["POST"]),
            Route("/ion-webhooks/health", health),
        ]
    )


def create_ceiling_app() -> Starlette:
    """Read the body, answer 200: the HTTP ceiling of Starlette + uvicorn for this route."""

    async def receive(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    return Starlette(
        routes=[
            Route("/ion-webhooks/v1/receivers/{name}", receive, methods=["POST"]),
            Route("/ion-webhooks/health", health),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--inbox-url", help="sqlite:///<path> or postgresql[+psycopg]://...")
    p.add_argument("--secret")
    p.add_argument("--synchronous", default="FULL")
    p.add_argument("--ceiling", action="store_true", help="read the body and answer 200; nothing else")
    args = p.parse_args(argv)
    if args.ceiling:
        app = create_ceiling_app()
    elif not (args.inbox_url and args.secret):
        p.error("--inbox-url and --secret are required (unless --ceiling)")
    elif args.inbox_url.startswith("sqlite:///"):
        app = create_app(SqliteStore(args.inbox_url.removeprefix("sqlite:///"), args.synchronous), args.secret)
    else:
        dsn = re.sub(r"^postgresql\+\w+://", "postgresql://", args.inbox_url)
        app = create_app(PostgresStore(dsn), args.secret)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
