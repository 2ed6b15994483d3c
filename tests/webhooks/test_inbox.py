"""The durable inbox on a real SQLite file and the real PostgreSQL server (127.0.0.1:5432)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from airflow_provider_ion.webhooks import inbox_cli
from airflow_provider_ion.webhooks.inbox import (
    AppendResult,
    Inbox,
    InboxEvent,
    InboxUnavailable,
    default_inbox_url,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def delivery(event_id, resource="RUNS", action="CREATE", subscription_id=42, **data) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "subscription_id": subscription_id,
            "resource": resource,
            "action": action,
            "data": data,
        }
    ).encode()


# -- delivery identity and reading --------------------------------------------------------------------------


def test_redelivery_is_acknowledged_and_stored_once(inbox):
    first = inbox.append("qa", 123456, delivery(123456, status="DONE"), headers={"x-ion-signature": "sig"})
    again = inbox.append("qa", "123456", delivery(123456, status="CHANGED"))
    assert first == AppendResult(first.seq, False)
    # Another body under a known id: a duplicate (the first stays) and a conflict, with both hashes.
    assert again.seq == first.seq and again.duplicate and again.conflict
    assert again.existing_sha256 == hashlib.sha256(delivery(123456, status="DONE")).hexdigest()
    assert again.body_sha256 == hashlib.sha256(delivery(123456, status="CHANGED")).hexdigest()
    same = inbox.append("qa", "123456", delivery(123456, status="DONE"))
    assert same == AppendResult(first.seq, True, False, again.existing_sha256, again.existing_sha256)
    other_receiver = inbox.append("erp", 123456, delivery(123456))
    assert not other_receiver.duplicate and other_receiver.seq > first.seq
    events = inbox.read_after(0)
    assert [(e.receiver, e.event_id) for e in events] == [("qa", "123456"), ("erp", "123456")]
    assert events[0].payload["data"] == {"status": "DONE"}  # the first delivery wins


def test_stored_fields_and_to_dict(inbox):
    received = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    inbox.append("qa", 7, delivery(7, "ISSUES", "UPDATE", 9, id=1), received_at=received)
    inbox.append("qa", 8, b"not json", resource="RUNS", action="DELETE")
    inbox.append("qa", 9, {"event_id": 9, "resource": "PARTS", "action": "CREATE"}, subscription_id="s-1")
    inbox.append("qa", 10, b"[1, 2]", resource="RUNS", action="CREATE")
    first, raw, mapping, listy = inbox.read_after(0)
    assert first == InboxEvent(
        seq=first.seq,
        receiver="qa",
        event_id="7",
        subscription_id="9",
        resource="ISSUES",
        action="UPDATE",
        payload=json.loads(delivery(7, "ISSUES", "UPDATE", 9, id=1)),
        received_at=received,
    )
    assert first.received_at.tzinfo is not None
    assert raw.payload == {"_raw": "not json"} and raw.subscription_id is None
    assert (mapping.resource, mapping.action, mapping.subscription_id) == ("PARTS", "CREATE", "s-1")
    assert listy.payload == {"_value": [1, 2]}
    as_dict = first.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["received_at"] == "2026-01-02T03:04:05.678000+00:00"
    assert "headers" not in as_dict  # request headers may hold credentials: never handed to Airflow
    assert inbox.get("qa", 7) == first
    assert inbox.get("qa", "404") is None


def test_order_limit_and_paging(inbox):
    seqs = [inbox.append("r", i, delivery(i)).seq for i in range(25)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 25
    assert inbox.latest_seq() == seqs[-1]
    pages, cursor = [], 0
    while batch := inbox.read_after(cursor, limit=10):
        pages.append(len(batch))
        cursor = batch[-1].seq
    assert pages == [10, 10, 5]
    assert [e.event_id for e in inbox.read_after(seqs[19])] == [str(i) for i in range(20, 25)]
    assert [e.event_id for e in inbox.latest(3)] == ["22", "23", "24"]
    assert inbox.read_after(seqs[-1]) == []


def test_filters(inbox):
    inbox.append("qa", 1, delivery(1, "RUNS", "CREATE"))
    inbox.append("qa", 2, delivery(2, "RUNS", "UPDATE"))
    inbox.append("erp", 3, delivery(3, "PURCHASE_ORDERS", "CREATE"))
    inbox.append("erp", 4, delivery(4, "ISSUES", "DELETE"))

    def ids(**kwargs):
        return [int(e.event_id) for e in inbox.read_after(0, **kwargs)]

    assert ids(receiver="erp") == [3, 4]
    assert ids(resources=["RUNS"]) == [1, 2]
    assert ids(actions={"CREATE"}) == [1, 3]
    assert ids(resources=("RUNS", "ISSUES"), actions=["UPDATE", "DELETE"]) == [2, 4]
    assert ids(receiver="qa", resources=["ISSUES"]) == []
    assert ids(resources=[]) == []
    assert [e.event_id for e in inbox.latest(5, receiver="qa")] == ["1", "2"]


# -- cursors ------------------------------------------------------------------------------------------------


def test_cursors_never_go_back(inbox):
    assert inbox.get_cursor("trigger-a") == 0
    assert inbox.set_cursor("trigger-a", 10) == 10
    assert inbox.set_cursor("trigger-a", 3) == 10
    assert inbox.get_cursor("trigger-a") == 10
    assert inbox.set_cursor("trigger-a", 11) == 11
    inbox.set_cursor("trigger-b", 0)
    assert inbox.list_cursors() == {"trigger-a": 11, "trigger-b": 0}
    with pytest.raises(ValueError):
        inbox.set_cursor("trigger-a", -1)


def test_racing_cursor_updates_keep_the_maximum(inbox):
    values = list(range(200))
    chunks = [values[i::4][::-1] for i in range(4)]  # every thread also tries to move it back

    def work(chunk):
        for value in chunk:
            inbox.set_cursor("shared", value)

    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inbox.get_cursor("shared") == 199


# -- retention, look-back, stats ----------------------------------------------------------------------------


def test_purge_by_age_and_seqs_keep_growing(inbox):
    now = datetime.now(UTC)
    inbox.append("r", "old", delivery(1), received_at=now - timedelta(days=8))
    inbox.append("r", "day", delivery(2), received_at=now - timedelta(days=1))
    last = inbox.append("r", "new", delivery(3)).seq
    assert inbox.purge() == 1  # the default retention: 7 days
    assert inbox.get("r", "old") is None and inbox.get("r", "day") is not None
    assert inbox.purge(timedelta(hours=12)) == 1
    assert inbox.purge(timedelta(0)) == 1
    assert inbox.read_after(0) == [] and inbox.latest_seq() == 0
    # seqs are never reused after a purge, or a consumer's cursor would skip new events
    assert inbox.append("r", "after", delivery(4)).seq > last
    # Purged bodies, remembered ids: a replay within the dedup horizon is still a duplicate (original seq).
    replay = inbox.append("r", "old", delivery(1))
    assert replay.duplicate is True and replay.conflict is False and replay.seq < last
    assert [e.event_id for e in inbox.read_after(0)] == ["after"]  # and not stored again


def test_rejection_counters_add_up_per_hour_and_are_purged(inbox):
    now = datetime.now(UTC)
    inbox.add_rejections({("r", "signature mismatch"): 2, ("(unknown receiver)", "unknown receiver"): 1})
    inbox.add_rejections({("r", "signature mismatch"): 3})
    inbox.add_rejections({("r", "signature mismatch"): 7}, at=now - timedelta(days=2))
    assert inbox.rejection_counts(since=now - timedelta(hours=1)) == {
        "r": {"signature mismatch": 5},
        "(unknown receiver)": {"unknown receiver": 1},
    }
    assert inbox.rejection_counts()["r"] == {"signature mismatch": 12}
    inbox.purge(timedelta(days=1))
    assert inbox.rejection_counts()["r"] == {"signature mismatch": 5}


def test_purge_in_batches(make_inbox, backend, monkeypatch):
    import airflow_provider_ion.webhooks.inbox.housekeeping as module

    monkeypatch.setattr(module, "PURGE_BATCH", 7)
    inbox = make_inbox(backend)
    old = datetime.now(UTC) - timedelta(days=30)
    for i in range(20):
        inbox.append("r", i, b"{}", received_at=old)
    inbox.append("r", "keep", b"{}")
    assert inbox.purge() == 20
    assert [e.event_id for e in inbox.read_after(0)] == ["keep"]


def test_seq_at_or_after(inbox):
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    seqs = [inbox.append("r", i, b"{}", received_at=t0 + timedelta(hours=i)).seq for i in range(3)]
    assert inbox.seq_at_or_after(t0 - timedelta(days=1)) == seqs[0]
    assert inbox.seq_at_or_after(t0 + timedelta(minutes=30)) == seqs[1]
    assert inbox.seq_at_or_after(datetime(2026, 3, 1, 14, 0)) == seqs[2]  # naive = UTC
    assert inbox.seq_at_or_after(t0 + timedelta(days=1)) == seqs[2] + 1
    start = inbox.seq_at_or_after(t0 + timedelta(hours=1))
    assert [e.event_id for e in inbox.read_after(start - 1)] == ["1", "2"]


def test_stats(inbox):
    assert inbox.stats()["total"] == 0
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    inbox.append("qa", 1, delivery(1, "RUNS", "CREATE"), received_at=t0)
    inbox.append("qa", 2, delivery(2, "RUNS", "CREATE"), received_at=t0 + timedelta(minutes=1))
    last = inbox.append("erp", 3, delivery(3, "ISSUES", "UPDATE"), received_at=t0 + timedelta(minutes=2)).seq
    inbox.set_cursor("trigger-a", last)
    inbox.set_cursor("trigger-b", 0)
    stats = json.loads(json.dumps(inbox.stats()))
    assert stats["total"] == 3 and stats["latest_seq"] == last
    assert stats["by_receiver"] == {"erp": 1, "qa": 2}
    assert {(r["resource"], r["action"], r["count"]) for r in stats["by_resource_action"]} == {
        ("RUNS", "CREATE", 2),
        ("ISSUES", "UPDATE", 1),
    }
    assert stats["oldest_received_at"] == t0.isoformat()
    assert stats["newest_received_at"] == (t0 + timedelta(minutes=2)).isoformat()
    assert stats["consumers"]["trigger-a"]["cursor"] == last and stats["consumers"]["trigger-a"]["lag"] == 0
    assert stats["consumers"]["trigger-b"]["lag"] == 3
    assert stats["backend"] == backend_of(inbox)


def backend_of(inbox):
    return "sqlite" if str(inbox._url).startswith("sqlite") else "postgresql"


# -- concurrency and durability -----------------------------------------------------------------------------


def test_concurrent_appends_from_threads(inbox):
    threads_n, per_thread = 8, 25
    results: dict[int, list[tuple[str, AppendResult]]] = {}

    def work(t):
        mine = []
        for i in range(per_thread):
            mine.append((f"shared-{i}", inbox.append("r", f"shared-{i}", b"{}")))  # every thread: same ids
            mine.append((f"own-{t}-{i}", inbox.append("r", f"own-{t}-{i}", b"{}")))
        results[t] = mine

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_id: dict[str, set[int]] = {}
    new_count = 0
    for mine in results.values():
        for event_id, result in mine:
            by_id.setdefault(event_id, set()).add(result.seq)
            new_count += not result.duplicate
    assert all(len(seqs) == 1 for seqs in by_id.values())  # a redelivery always gets the stored row's seq
    stored = inbox.read_after(0, limit=10_000)
    assert len(stored) == new_count == per_thread + threads_n * per_thread  # nothing lost, nothing twice
    assert len({e.seq for e in stored}) == len(stored)
    assert {e.event_id: e.seq for e in stored} == {k: next(iter(v)) for k, v in by_id.items()}


CHILD = """
import sys
from airflow_provider_ion.webhooks.inbox import Inbox
inbox = Inbox.from_url(sys.argv[1], table_prefix=sys.argv[2])
i = 0
while True:
    i += 1
    inbox.append("durable", i, b'{"event_id": %d, "resource": "RUNS", "action": "CREATE"}' % i)
    sys.stdout.write(f"{i}\\n")  # acknowledged: append() returned after the commit
    sys.stdout.flush()
"""


def test_acknowledged_events_survive_kill_9(inbox):
    inbox.latest_seq()  # create the schema before the child starts
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(inbox._url.render_as_string(hide_password=False)), inbox.table_prefix],
        stdout=subprocess.PIPE,
        cwd=REPO,
        start_new_session=True,
    )
    acknowledged: list[int] = []
    deadline = time.monotonic() + 15
    try:
        assert child.stdout is not None
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        rest = child.stdout.read() if child.stdout else b""
        child.wait(10)
    # Lines printed before the kill landed: complete ones are acknowledged too.
    lines = rest.split(b"\n")
    acknowledged += [int(x) for x in lines[:-1] if x]
    assert child.returncode == -signal.SIGKILL, "the child must die mid-run, not exit by itself"
    assert len(acknowledged) >= 150
    stored = {int(e.event_id) for e in inbox.read_after(0, limit=100_000, receiver="durable")}
    missing = set(acknowledged) - stored
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"


# -- PostgreSQL: commit order, lock timeout, LISTEN/NOTIFY --------------------------------------------------


def plain_row(event_id: str) -> dict:
    return {"receiver": "r", "event_id": event_id, "received_at": datetime.now(UTC), "body": b"{}"}


def test_postgres_cursor_never_skips_a_late_commit(make_inbox):
    """Two concurrent appends on two connections: the later seq can never become visible first."""
    inbox = make_inbox("postgresql")
    base = inbox.append("r", "warm-up", b"{}").seq
    engine = inbox.engine
    events = inbox.events

    # Control: plain INSERTs (no ordering lock) show the anomaly that would make a cursor skip an event.
    with engine.connect() as a, engine.connect() as b:
        a.begin()
        row_a = plain_row("plain-a")
        seq_a = a.execute(sa.insert(events).values(**row_a).returning(events.c.seq)).scalar_one()
        with b.begin():
            row_b = plain_row("plain-b")
            seq_b = b.execute(sa.insert(events).values(**row_b).returning(events.c.seq)).scalar_one()
        assert seq_a < seq_b
        visible = [e.seq for e in inbox.read_after(base)]
        assert visible == [seq_b]  # a reader that advanced to seq_b now would miss seq_a forever
        a.commit()
    cursor = inbox.latest_seq()

    # The inbox's append: the first append is in flight (uncommitted) in a held write transaction ...
    with inbox.write_transaction() as a_tx:
        first = a_tx.append("r", "first", b"{}")
        second: list[AppendResult] = []
        appender = threading.Thread(target=lambda: second.append(inbox.append("r", "second", b"{}")))
        appender.start()
        time.sleep(0.5)
        # ... so the concurrent append on connection B waits for it, and readers see neither yet.
        assert appender.is_alive() and not second
        assert inbox.read_after(cursor) == []
    appender.join(10)
    assert second and second[0].seq > first.seq
    assert [e.event_id for e in inbox.read_after(cursor)] == ["first", "second"]


def test_postgres_ordering_lock_wait_is_bounded(make_inbox):
    inbox = make_inbox("postgresql")
    impatient = make_inbox("postgresql", busy_timeout=0.3)
    inbox.latest_seq()
    with inbox.write_transaction() as holder:
        holder.append("r", "holder", b"{}")
        started = time.monotonic()
        with pytest.raises(InboxUnavailable) as info:
            impatient.append("r", "waiter", b"{}")
        assert time.monotonic() - started < 3
        assert "lock" in str(info.value).lower()
        holder.rollback()
    assert impatient.append("r", "waiter", b"{}").duplicate is False


def test_listener_wakes_up_on_append(inbox):
    with inbox.listen(poll_interval=0.05) as listener:
        assert listener.uses_notify == (backend_of(inbox) == "postgresql")
        assert listener.wait(0.1) is None
        appended: list[int] = []

        def later():
            time.sleep(0.3)
            appended.append(inbox.append("r", 1, b"{}").seq)

        thread = threading.Thread(target=later)
        started = time.monotonic()
        thread.start()
        woke = listener.wait(5)
        elapsed = time.monotonic() - started
        thread.join()
        assert woke == appended[0] and elapsed < 2
        inbox.append("r", 1, b"{}")  # a redelivery stores nothing new: no wake-up
        assert listener.wait(0.3) is None
    # the convenience form keeps its own listener
    assert inbox.wait_for_notify(0.05) is None
    seq = inbox.append("r", 2, b"{}").seq
    assert inbox.wait_for_notify(2) == seq


# -- storage failures ---------------------------------------------------------------------------------------


def test_unavailable_when_sqlite_path_cannot_exist(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    inbox = Inbox(f"sqlite:///{blocker}/inbox.db")
    with pytest.raises(InboxUnavailable) as info:
        inbox.append("r", 1, b"{}")
    assert isinstance(info.value.__cause__, OSError) and info.value.original is info.value.__cause__
    assert str(blocker) in str(info.value)


def test_unavailable_when_sqlite_file_is_read_only_or_corrupt(tmp_path):
    path = tmp_path / "inbox.db"
    Inbox(f"sqlite:///{path}").append("r", 1, b"{}")
    read_only = Inbox(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert read_only.latest_seq() == 1
    with pytest.raises(InboxUnavailable, match="readonly"):
        read_only.append("r", 2, b"{}")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite at all" * 100)
    with pytest.raises(InboxUnavailable, match="not a database"):
        Inbox(f"sqlite:///{garbage}").append("r", 1, b"{}")


def test_unavailable_when_sqlite_is_locked_beyond_busy_timeout(tmp_path):
    path = tmp_path / "inbox.db"
    inbox = Inbox(f"sqlite:///{path}", busy_timeout=0.2)
    inbox.append("r", 1, b"{}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(InboxUnavailable, match="locked"):
            inbox.append("r", 2, b"{}")
        assert 0.15 < time.monotonic() - started < 3
        assert inbox.read_after(0)[0].event_id == "1"  # WAL: readers are never blocked by the writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert inbox.append("r", 2, b"{}").duplicate is False  # and it recovers on its own


def test_unavailable_when_postgres_is_down_without_leaking_the_password():
    inbox = Inbox("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test", busy_timeout=1)
    for call in (
        lambda: inbox.append("r", 1, b"{}"),
        lambda: inbox.read_after(0),
        inbox.stats,
        inbox.latest_seq,
        lambda: inbox.set_cursor("c", 1),
    ):
        with pytest.raises(InboxUnavailable) as info:
            call()
        message = str(info.value)
        assert "hunter2" not in message and "127.0.0.1:1" in message and "***" in message
    assert "hunter2" not in repr(inbox)


# -- configuration ------------------------------------------------------------------------------------------


def test_default_url(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert default_inbox_url() == f"sqlite:///{tmp_path / 'home' / 'ion_inbox.db'}"
    inbox = Inbox()
    inbox.append("r", 1, b"{}")  # creates $AIRFLOW_HOME on first use
    assert (tmp_path / "home" / "ion_inbox.db").exists()
    inbox.close()
    monkeypatch.delenv("AIRFLOW_HOME")
    assert default_inbox_url().endswith(os.path.join("airflow", "ion_inbox.db"))
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", "postgresql+psycopg://u@h/db")
    assert Inbox.from_url().safe_url == "postgresql+psycopg://u@h/db"


def test_settings_and_pragmas(tmp_path):
    with pytest.raises(ValueError):
        Inbox("sqlite://", table_prefix="bad name; drop")
    with pytest.raises(ValueError):
        Inbox("sqlite://", sqlite_synchronous="SOMETIMES")
    inbox = Inbox(f"sqlite:///{tmp_path / 'x.db'}", table_prefix="custom", sqlite_synchronous="normal")
    with inbox.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        names = set(sa.inspect(conn).get_table_names())
    assert {"custom_events", "custom_cursors"} <= names
    with Inbox(f"sqlite:///{tmp_path / 'y.db'}").engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, the default
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_schema_creation_is_idempotent_across_instances(make_inbox, backend):
    first = make_inbox(backend)
    second = make_inbox(backend)
    first.append("r", 1, b"{}")
    assert second.append("r", 1, b"{}").duplicate


def test_import_stays_light():
    code = (
        "import sys; import airflow_provider_ion.webhooks, airflow_provider_ion.webhooks.signature, "
        "airflow_provider_ion.webhooks.inbox_cli; "
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- the CLI ------------------------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    inbox_cli.add_arguments(parser)
    return inbox_cli.run(parser.parse_args(argv))


def test_cli_tail_stats_purge(inbox, capsys):
    url, prefix = inbox._url.render_as_string(hide_password=False), inbox.table_prefix
    old = datetime.now(UTC) - timedelta(days=10)
    inbox.append("qa", 1, delivery(1), received_at=old)
    for i in range(2, 6):
        inbox.append("qa" if i % 2 else "erp", i, delivery(i))
    assert cli("--url", url, "--table-prefix", prefix, "tail", "--limit", "2") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event_id"] for e in lines] == ["4", "5"]
    assert cli("--url", url, "--table-prefix", prefix, "tail", "--receiver", "erp") == 0
    assert [json.loads(x)["event_id"] for x in capsys.readouterr().out.splitlines()] == ["2", "4"]
    assert cli("--url", url, "--table-prefix", prefix, "stats") == 0
    assert json.loads(capsys.readouterr().out)["total"] == 5
    assert cli("--url", url, "--table-prefix", prefix, "purge", "--older-than-days", "7") == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 1


def test_cli_tail_follow(inbox, capsys):
    url, prefix = inbox._url.render_as_string(hide_password=False), inbox.table_prefix
    inbox.append("qa", 1, delivery(1))

    def later():
        time.sleep(0.4)
        inbox.append("qa", 2, delivery(2))
        inbox.append("erp", 3, delivery(3))

    thread = threading.Thread(target=later)
    thread.start()
    args = ("--url", url, "--table-prefix", prefix, "tail", "-f", "--follow-seconds", "1.5", "--receiver", "qa")
    assert cli(*args) == 0
    thread.join()
    assert [json.loads(x)["event_id"] for x in capsys.readouterr().out.splitlines()] == ["1", "2"]


def test_cli_unavailable(capsys):
    assert cli("--url", "postgresql+psycopg://postgres:pw@127.0.0.1:1/test", "stats") == 2
    err = capsys.readouterr().err
    assert "unavailable" in err and ":pw@" not in err
