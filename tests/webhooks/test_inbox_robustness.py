"""The inbox under bad rows and repeats: invalid data never poisons the writer, conflicts are counted,
ids are remembered past retention (replays), and the quarantine is bounded and invisible to readers."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_ion.webhooks import inbox_cli
from airflow_provider_ion.webhooks.inbox import AppendResult, Inbox, InboxUnavailable, InvalidDelivery

SURROGATE = "\ud800"


def assert_write_lock_free(inbox: Inbox) -> None:
    """SQLite: another connection gets the write lock at once (the writer is not left inside a transaction)."""
    if inbox.backend != "sqlite":
        return
    conn = sqlite3.connect(inbox.engine.url.database, timeout=0.2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.mark.parametrize("field", ["receiver", "event_id", "resource", "action", "subscription_id"])
def test_lone_surrogate_is_invalid_delivery_and_the_writer_stays_clean(inbox, field):
    good = inbox.append("r", "before", b"{}")
    values: dict[str, Any] = {"receiver": "r", "event_id": "bad"}
    values[field] = f"x{SURROGATE}"
    receiver, event_id = values.pop("receiver"), values.pop("event_id")
    with pytest.raises(InvalidDelivery) as info:
        inbox.append(receiver, event_id, b"{}", **values)
    assert info.value.field == field and field in str(info.value)
    assert isinstance(info.value, ValueError)
    assert_write_lock_free(inbox)
    after = inbox.append("r", "after", b"{}")
    assert after.seq > good.seq and not after.duplicate
    assert [e.event_id for e in inbox.read_after(0)] == ["before", "after"]


def test_surrogate_in_body_fields_and_async_path(inbox):
    """A surrogate escape inside the JSON body's resource (parsed by the inbox) is refused the same way."""
    body = b'{"event_id": "e1", "resource": "RU\\ud800NS"}'

    async def go() -> Any:
        return await inbox.aappend("r", "e1", body)

    with pytest.raises(InvalidDelivery, match="resource"):
        asyncio.run(go())
    assert asyncio.run(inbox.aappend("r", "e2", b"{}")).duplicate is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"action": "A" * 65}, "action is 65 characters"),
        ({"resource": "bad\x00"}, "NUL"),
        ({"event_id": ""}, "event_id is empty"),
    ],
)
def test_other_data_the_inbox_cannot_store(inbox, kwargs, match):
    args = {"receiver": "r", "event_id": "x", **kwargs}
    with pytest.raises(InvalidDelivery, match=match):
        inbox.append(args.pop("receiver"), args.pop("event_id"), b"{}", **args)
    assert inbox.append("r", "ok", b"{}").duplicate is False


def test_any_exception_inside_the_transaction_is_rolled_back(make_inbox, backend):
    """Whatever is raised mid-transaction, the writer rolls back: nothing half-stored, lock released, and a
    row-type error (here an encoding error for one row, as a driver would raise) fails only that row."""
    calls: list[list[str]] = []

    def hook(event_ids):
        calls.append(list(event_ids))
        if "boom" in event_ids:
            raise RuntimeError("not a database error")
        if "enc" in event_ids:
            raise UnicodeEncodeError("utf-8", SURROGATE, 0, 1, "surrogates not allowed")

    inbox = make_inbox(backend, batch_hook=hook)
    with pytest.raises(InboxUnavailable, match="not a database error"):
        inbox.append("r", "boom", b"{}")
    assert inbox.get("r", "boom") is None
    assert_write_lock_free(inbox)
    with pytest.raises(InvalidDelivery):
        inbox.append("r", "enc", b"{}")
    assert_write_lock_free(inbox)
    assert inbox.append("r", "fine", b"{}").duplicate is False
    assert [e.event_id for e in inbox.read_after(0)] == ["fine"]


def test_one_bad_row_in_a_batch_commits_the_others(make_inbox, backend):
    """A batch with a row whose data the database refuses: the others are stored, only it gets 400."""
    gate = threading.Event()
    entered = threading.Event()

    def hook(event_ids):
        if event_ids == ["held"]:
            entered.set()
            assert gate.wait(20)
        if "enc" in event_ids:
            raise UnicodeEncodeError("utf-8", SURROGATE, 0, 1, "surrogates not allowed")

    inbox = make_inbox(backend, batch_hook=hook)
    results: dict[str, Any] = {}

    def one(key: str) -> None:
        try:
            results[key] = inbox.append("r", key, b"{}")
        except Exception as error:
            results[key] = error

    held = threading.Thread(target=one, args=("held",))
    held.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=one, args=(key,)) for key in ("a", "enc", "b")]
    for thread in threads:
        thread.start()
    while inbox.queued_appends < 3:
        threading.Event().wait(0.01)
    gate.set()
    for thread in [held, *threads]:
        thread.join(30)
    assert isinstance(results["enc"], InvalidDelivery)
    assert all(isinstance(results[k], AppendResult) for k in ("held", "a", "b"))
    assert {e.event_id for e in inbox.read_after(0)} == {"held", "a", "b"}
    assert_write_lock_free(inbox)


# -- conflicts ----------------------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    inbox_cli.add_arguments(parser)
    return inbox_cli.run(parser.parse_args(argv))


def test_conflicts_are_counted_durably_and_shown_in_stats_and_cli(inbox, capsys, caplog):
    first = inbox.append("r", "e1", b'{"v": 1}')
    same = inbox.append("r", "e1", b'{"v": 1}')
    other = inbox.append("r", "e1", b'{"v": 2}')
    assert same.duplicate and not same.conflict
    assert other.duplicate and other.conflict and other.seq == first.seq
    assert other.existing_sha256 == hashlib.sha256(b'{"v": 1}').hexdigest() != other.body_sha256
    assert any("different body" in r.getMessage() and other.body_sha256 in r.getMessage() for r in caplog.records)

    async def both() -> list[AppendResult]:  # two copies in one batch: the second conflicts with the first
        return await asyncio.gather(inbox.aappend("r", "e2", b"a"), inbox.aappend("r", "e2", b"b"))

    results = asyncio.run(both())
    assert [r.conflict for r in results].count(True) == 1
    inbox.add_rejections({("r", "signature mismatch"): 3})
    url = inbox.engine.url.render_as_string(hide_password=False)
    reopened = Inbox(url, table_prefix=inbox.table_prefix)  # durable: another instance sees the counts
    try:
        assert reopened.stats()["conflicts"] == {"r": 2}
        assert reopened.conflict_counts(since=datetime.now(UTC)) == {"r": 2}
    finally:
        reopened.close()
    assert cli("--url", url, "--table-prefix", inbox.table_prefix, "stats") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["conflicts"] == {"r": 2} and shown["rejections"] == {"r": {"signature mismatch": 3}}


# -- replays after retention --------------------------------------------------------------------------------


def test_replay_after_retention_is_a_duplicate_until_the_dedup_horizon(make_inbox, backend):
    inbox = make_inbox(backend, dedup_horizon=timedelta(days=30))
    now = datetime.now(UTC)
    old = inbox.append("r", "old", b'{"n": 1}', received_at=now - timedelta(days=10))
    ancient = inbox.append("r", "ancient", b'{"n": 2}', received_at=now - timedelta(days=40))
    assert inbox.purge() == 2  # bodies: 7 days
    assert inbox.read_after(0) == []
    replay = inbox.append("r", "old", b'{"n": 1}')
    assert replay == AppendResult(old.seq, True, False, replay.body_sha256, replay.body_sha256)
    assert inbox.append("r", "old", b'{"n": "forged"}').conflict is True
    # Older than the horizon: forgotten by the purge, so stored again (the README says to set the horizon).
    assert inbox.append("r", "ancient", b'{"n": 2}').duplicate is False
    assert inbox.stats()["seen_ids"] == 2 and ancient.seq > 0
    assert [e.event_id for e in inbox.read_after(0)] == ["ancient"]


def test_dedup_horizon_setting(make_inbox, backend, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__DEDUP_HORIZON_DAYS", "30")
    assert make_inbox(backend).dedup_horizon == timedelta(days=30)
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__DEDUP_HORIZON_DAYS", "3")
    with pytest.raises(ValueError, match="dedup_horizon_days"):
        make_inbox(backend).dedup_horizon  # noqa: B018 - read on first use
    with pytest.raises(ValueError, match="dedup_horizon_days"):
        make_inbox(backend, dedup_horizon=timedelta(days=3))


# -- quarantine ---------------------------------------------------------------------------------------------


def test_quarantine_is_bounded_per_receiver_and_invisible_to_readers(make_inbox, backend):
    inbox = make_inbox(backend, quarantine_max_count=3, quarantine_max_bytes=100)
    assert inbox.quarantine("r", b"a" * 10, {"x-ion-signature": "bad"}, "signature mismatch") is True
    assert inbox.quarantine("r", b"b" * 10, {}, "signature mismatch") is True
    assert inbox.quarantine("r", b"c" * 81, {}, "signature mismatch") is False  # 101 bytes > 100
    assert inbox.quarantine("r", b"c" * 10, {}, "signature mismatch") is True
    assert inbox.quarantine("r", b"d", {}, "signature mismatch") is False  # 4 > 3 deliveries
    assert inbox.quarantine("other", b"e" * 100, {}, "signature mismatch") is True  # per receiver
    items = inbox.quarantined("r")
    assert [i.body for i in items] == [b"a" * 10, b"b" * 10, b"c" * 10]
    assert items[0].headers == {"x-ion-signature": "bad"} and items[0].reason == "signature mismatch"
    assert items[0].receiver == "r" and items[0].received_at.tzinfo is not None
    assert len(inbox.quarantined()) == 4 and len(inbox.quarantined(limit=2)) == 2
    # never visible to readers (triggers read with read_after) nor counted as events
    assert inbox.read_after(0) == [] and inbox.latest() == [] and inbox.latest_seq() == 0
    stats = inbox.stats()
    assert stats["total"] == 0 and stats["quarantine"]["r"] == {"count": 3, "bytes": 30}
    assert inbox.remove_quarantined([items[0].id, 999_999]) == 1
    assert inbox.quarantine("r", b"d", {}, "signature mismatch") is True  # room again
    inbox.purge(timedelta(0))  # purged with the retention
    assert inbox.quarantined() == []


def test_opening_a_sqlite_file_another_connection_is_writing_waits_instead_of_failing(tmp_path) -> None:
    """Switching a rollback-journal file to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once there (no busy handler). Another process in a write transaction (a 0.1.0 inbox being
    upgraded, as CI saw with two processes opening one) must make the open wait, up to busy_timeout."""
    path = tmp_path / "inbox.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    inbox = Inbox(f"sqlite:///{path}", busy_timeout=10)
    try:
        result = inbox.append("qa", "e-1", b"{}")
        assert not result.duplicate and inbox.latest_seq() == result.seq
        with sqlite3.connect(path) as fresh:
            assert fresh.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        inbox.close()
        holder.close()


def test_opening_a_sqlite_file_locked_beyond_busy_timeout_is_unavailable(tmp_path) -> None:
    path = tmp_path / "inbox.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    inbox = Inbox(f"sqlite:///{path}", busy_timeout=0.3)
    try:
        with pytest.raises(InboxUnavailable, match="locked"):
            inbox.append("qa", "e-1", b"{}")
    finally:
        inbox.close()
        holder.execute("ROLLBACK")
        holder.close()
