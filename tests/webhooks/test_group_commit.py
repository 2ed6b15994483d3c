"""The inbox's writer: group commit across threads and coroutines, per-batch failure, kill -9, ordering lock key.

Batches are made deterministic with a gate: the writer is held inside its first transaction until the
test has queued everything it wants in the next batch (checked on the writer's queue), so "these appends
were committed together" is a fact of the test, not a hope about timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from airflow_provider_ion.webhooks.inbox import AppendResult, Inbox, InboxUnavailable, InvalidDelivery

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Gate:
    """The inbox's ``batch_hook``: holds the writer in its first batch until ``release``; records batches.

    The hook runs inside each write transaction after its rows were inserted, so ``fail_batch`` (1-based)
    makes that batch raise ``error()`` with its rows inserted: the test also sees it rolled back.
    """

    def __init__(self, inbox: Inbox, fail_batch: int | None = None, error: Callable[[], Exception] | None = None):
        self.inbox = inbox
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str]] = []
        self.fail_batch = fail_batch
        self.error = error

    def __call__(self, event_ids: Sequence[str]) -> None:
        self.batches.append(list(event_ids))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(20), "the test never released the writer"
        if self.fail_batch == len(self.batches):
            assert self.error is not None
            raise self.error()

    def wait_queued(self, n: int, timeout: float = 10) -> None:
        """Until ``n`` appends wait on the writer's queue (behind the held batch)."""
        deadline = time.monotonic() + timeout
        while self.inbox.queued_appends < n:
            assert time.monotonic() < deadline, f"only {self.inbox.queued_appends} of {n} appends queued"
            time.sleep(0.01)


@pytest.fixture
def gated(inbox, monkeypatch) -> Iterator[Callable[..., Gate]]:
    def make(**kwargs: Any) -> Gate:
        gate = Gate(inbox, **kwargs)
        monkeypatch.setattr(inbox, "batch_hook", gate)
        return gate

    yield make


def run_concurrently(inbox: Inbox, thread_keys: list[str], coroutine_keys: list[str]) -> dict[str, Any]:
    """Append each key from its own thread, and each coroutine key from one event loop (another thread).

    Returns ``{"thread:<i>": result or exception, "coro:<i>": ...}`` once the caller joins the returned
    ``threads`` (started here, still waiting on the writer).
    """
    results: dict[str, Any] = {}

    def one(tag: str, key: str) -> None:
        try:
            results[tag] = inbox.append("r", key, b'{"resource": "RUNS"}')
        except Exception as error:
            results[tag] = error

    async def coroutines() -> None:
        async def one_async(tag: str, key: str) -> None:
            try:
                results[tag] = await inbox.aappend("r", key, b'{"resource": "RUNS"}')
            except Exception as error:
                results[tag] = error

        await asyncio.gather(*(one_async(f"coro:{i}", key) for i, key in enumerate(coroutine_keys)))

    threads = [threading.Thread(target=one, args=(f"thread:{i}", key)) for i, key in enumerate(thread_keys)]
    threads.append(threading.Thread(target=asyncio.run, args=(coroutines(),)))
    for thread in threads:
        thread.start()
    results["_threads"] = threads
    return results


def join(results: dict[str, Any]) -> dict[str, Any]:
    for thread in results.pop("_threads"):
        thread.join(30)
        assert not thread.is_alive()
    return results


def test_threads_and_coroutines_share_one_commit_with_correct_seqs_and_duplicates(inbox, gated):
    before = inbox.append("r", "stored-before", b"{}")
    gate = gated()
    held = run_concurrently(inbox, ["held"], [])
    assert gate.entered.wait(10)
    # Thread keys and coroutine keys overlap, repeat within the batch and hit a row stored earlier.
    thread_keys = [f"t{i}" for i in range(6)] + ["both", "both", "stored-before"]
    coroutine_keys = [f"c{i}" for i in range(6)] + ["both", "twice", "twice", "stored-before"]
    batch = run_concurrently(inbox, thread_keys, coroutine_keys)
    gate.wait_queued(len(thread_keys) + len(coroutine_keys))
    gate.release.set()
    join(held)
    results = join(batch)

    distinct = set(thread_keys + coroutine_keys) - {"stored-before"}
    assert [len(b) for b in gate.batches] == [1, len(distinct) + 1]  # one transaction for all of them
    by_key: dict[str, list[AppendResult]] = {}
    for tag, result in results.items():
        assert isinstance(result, AppendResult), (tag, result)
        index = int(tag.split(":")[1])
        key = (thread_keys if tag.startswith("thread") else coroutine_keys)[index]
        by_key.setdefault(key, []).append(result)
    for key, got in by_key.items():
        assert len({r.seq for r in got}) == 1, f"{key}: every copy gets the stored row's seq"
        new = [r for r in got if not r.duplicate]
        assert len(new) == (0 if key == "stored-before" else 1), f"{key}: exactly one copy is new"
    assert by_key["stored-before"][0].seq == before.seq
    seqs = {key: got[0].seq for key, got in by_key.items() if key != "stored-before"}
    assert len(set(seqs.values())) == len(seqs) and min(seqs.values()) > held["thread:0"].seq
    stored = {e.event_id: e.seq for e in inbox.read_after(0)}
    assert stored == {**seqs, "stored-before": before.seq, "held": held["thread:0"].seq}


def test_a_failing_batch_fails_every_caller_and_the_next_batch_works(inbox, gated):
    inbox.latest_seq()  # engine (and dialect) ready
    dbapi = inbox.engine.dialect.loaded_dbapi
    gate = gated(fail_batch=2, error=lambda: dbapi.OperationalError("injected storage failure"))
    held = run_concurrently(inbox, ["held"], [])
    assert gate.entered.wait(10)
    thread_keys, coroutine_keys = ["a", "b", "dup", "dup"], ["c", "d", "dup"]
    batch = run_concurrently(inbox, thread_keys, coroutine_keys)
    gate.wait_queued(len(thread_keys) + len(coroutine_keys))
    gate.release.set()
    assert isinstance(join(held)["thread:0"], AppendResult)
    results = join(batch)

    assert len(gate.batches) == 2 and len(results) == len(thread_keys) + len(coroutine_keys)
    for tag, error in results.items():
        assert isinstance(error, InboxUnavailable), (tag, error)
        assert "injected storage failure" in str(error) and isinstance(error.__cause__, dbapi.OperationalError)
    assert len({id(e) for e in results.values()}) == len(results)  # each caller its own exception
    for key in {"a", "b", "c", "d", "dup"}:
        assert inbox.get("r", key) is None  # the batch was rolled back: nothing half-stored
    # The writer lives on: the next batch (the retries) commits.
    again = [inbox.append("r", key, b"{}") for key in ("a", "dup", "dup")]
    assert [r.duplicate for r in again] == [False, False, True] and again[1].seq == again[2].seq
    assert {e.event_id for e in inbox.read_after(0)} == {"held", "a", "dup"}


def refuse_action(inbox: Inbox, action: str) -> None:
    """A real database rule refusing rows with ``action``: the row's own data fails, not storage."""
    import sqlalchemy as sa

    table = inbox.events.name
    with inbox.engine.begin() as conn:
        if inbox.backend == "sqlite":
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER {table}_refuse BEFORE INSERT ON {table} WHEN NEW.action = '{action}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test rule'); END"
                )
            )
        else:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_refuse CHECK (action <> '{action}')"))


def test_a_row_refused_as_data_fails_only_its_own_caller(inbox, gated):
    """One delivery the database refuses must not turn its batch neighbours into 503s: they are stored,
    it gets InvalidDelivery (400), and the writer is clean for the next batch."""
    refuse_action(inbox, "POISON")
    gate = gated()
    held = run_concurrently(inbox, ["held"], [])
    assert gate.entered.wait(10)
    results: dict[str, Any] = {}

    def one(key: str, action: str) -> None:
        try:
            results[key] = inbox.append("r", key, b"{}", action=action)
        except Exception as error:
            results[key] = error

    threads = [threading.Thread(target=one, args=args) for args in (("good-1", "CREATE"), ("bad", "POISON"))]
    threads += [threading.Thread(target=one, args=("good-2", "UPDATE"))]
    for thread in threads:
        thread.start()
    gate.wait_queued(3)
    gate.release.set()
    for thread in threads:
        thread.join(30)
    join(held)
    assert isinstance(results["bad"], InvalidDelivery) and "refuse" in str(results["bad"]), results["bad"]
    assert isinstance(results["good-1"], AppendResult) and isinstance(results["good-2"], AppendResult)
    # Their batch failed at the insert (the hook never saw it), then each row had a transaction of its own.
    assert sorted(gate.batches[1:]) == [["good-1"], ["good-2"]]
    assert {e.event_id for e in inbox.read_after(0)} == {"held", "good-1", "good-2"}
    assert inbox.append("r", "next", b"{}", action="CREATE").duplicate is False


def test_close_finishes_queued_appends_and_the_inbox_stays_usable(inbox):
    async def many() -> list[AppendResult]:
        return await asyncio.gather(*(inbox.aappend("r", i, b"{}") for i in range(50)))

    results = asyncio.run(many())
    assert len({r.seq for r in results}) == 50 and not any(r.duplicate for r in results)
    inbox.close()
    assert inbox._writer is None
    assert inbox.append("r", "after-close", b"{}").duplicate is False  # a new writer
    assert inbox.append("r", 3, b"{}").duplicate is True


# -- kill -9 while batches are being committed --------------------------------------------------------------

CHILD = r"""
import asyncio, os, sys, threading
from airflow_provider_ion.webhooks import inbox as m

inbox = m.Inbox.from_url(sys.argv[1], table_prefix=sys.argv[2])

def say(line):
    os.write(1, (line + "\n").encode())  # one write per line: whole lines even with many threads

inbox.batch_hook = lambda event_ids: say(f"batch {len(event_ids)}")

def thread_worker(w):
    i = 0
    while True:
        i += 1
        inbox.append("durable", f"t{w}-{i}", b'{"resource": "RUNS", "action": "CREATE"}')
        say(f"ack t{w}-{i}")  # acknowledged: append() returned after the commit

async def coroutine_worker(w):
    i = 0
    while True:
        i += 1
        await inbox.aappend("durable", f"c{w}-{i}", b'{"resource": "RUNS", "action": "CREATE"}')
        say(f"ack c{w}-{i}")  # acknowledged: the await returned after the commit

async def main():
    await asyncio.gather(*(coroutine_worker(w) for w in range(24)))

for w in range(4):
    threading.Thread(target=thread_worker, args=(w,), daemon=True).start()
asyncio.run(main())
"""


def test_acknowledged_batched_appends_survive_kill_9(inbox):
    inbox.latest_seq()  # create the schema before the child starts
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, inbox._url.render_as_string(hide_password=False), inbox.table_prefix],
        stdout=subprocess.PIPE,
        cwd=REPO,
        start_new_session=True,
    )
    acknowledged: list[str] = []
    batch_sizes: list[int] = []

    def take(line: bytes) -> None:
        kind, _, value = line.decode().strip().partition(" ")
        if kind == "ack":
            acknowledged.append(value)
        elif kind == "batch":
            batch_sizes.append(int(value))

    deadline = time.monotonic() + 30
    try:
        assert child.stdout is not None
        while (len(acknowledged) < 1500 or max(batch_sizes, default=0) < 8) and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            take(line)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # mid-stream: batches in flight
        rest = child.stdout.read() if child.stdout else b""
        child.wait(10)
    for line in rest.split(b"\n")[:-1]:  # complete lines written before the kill landed
        take(line)
    assert child.returncode == -signal.SIGKILL, "the child must die mid-run, not exit by itself"
    assert len(acknowledged) >= 1500 and max(batch_sizes) >= 8, "the appends must have been batched"
    stored = {e.event_id for e in inbox.read_after(0, limit=1_000_000, receiver="durable")}
    missing = set(acknowledged) - stored
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"


# -- PostgreSQL: the ordering lock is per schema-qualified table ---------------------------------------------


@pytest.fixture
def two_schemas(pg_url) -> Iterator[tuple[str, str]]:
    import sqlalchemy as sa

    names = (f"t{uuid.uuid4().hex[:10]}_a", f"t{uuid.uuid4().hex[:10]}_b")
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        yield names
    finally:
        with engine.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        engine.dispose()


def test_postgres_ordering_lock_key_includes_the_schema(pg_url, two_schemas, unique_prefix):
    schema_a, schema_b = two_schemas

    def on_search_path(schema: str, **settings: Any) -> Inbox:
        sep = "&" if "?" in pg_url else "?"
        return Inbox(f"{pg_url}{sep}options=-csearch_path%3D{schema}", table_prefix=unique_prefix, **settings)

    a, b = on_search_path(schema_a), on_search_path(schema_b, busy_timeout=1)
    a_again = on_search_path(schema_a, busy_timeout=0.3)
    a_named = Inbox(pg_url, table_prefix=unique_prefix, schema=schema_a)
    try:
        for inbox in (a, b, a_again, a_named):
            inbox.latest_seq()
        assert a._lock_key == a_again._lock_key == a_named._lock_key != b._lock_key
        with a.write_transaction() as holder:
            holder.append("r", "holder", b"{}")  # holds schema A's ordering lock
            started = time.monotonic()
            assert b.append("r", "other-schema", b"{}").duplicate is False  # not blocked by A's lock
            assert time.monotonic() - started < 0.9
            with pytest.raises(InboxUnavailable, match="lock"):
                a_again.append("r", "same-schema", b"{}")  # the same inbox table: it waits, then 503
            holder.rollback()
        assert a_again.append("r", "same-schema", b"{}").duplicate is False
    finally:
        for inbox in (a, b, a_again, a_named):
            inbox.close()


def test_postgres_writer_connection_killed_by_the_server_is_replaced(make_inbox):
    """A dead connection found at a batch's first statement (nothing written yet) is replaced, no 503."""
    import sqlalchemy as sa

    inbox = make_inbox("postgresql")
    assert inbox.append("r", 1, b"{}").duplicate is False
    writer = inbox._writer
    assert writer is not None and writer.conn is not None
    backend_pid = writer.conn.info.backend_pid
    with inbox.engine.connect() as admin:
        assert admin.execute(sa.select(sa.func.pg_terminate_backend(backend_pid))).scalar() is True
    assert inbox.append("r", 2, b"{}").duplicate is False
    assert writer.conn is not None and writer.conn.info.backend_pid != backend_pid
    assert [e.event_id for e in inbox.read_after(0)] == ["1", "2"]
