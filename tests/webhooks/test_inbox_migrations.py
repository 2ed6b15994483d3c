"""Upgrades keep the data: an inbox written by 0.1.0 (its DDL below, from the 0.1.0 source) is opened by
this code on SQLite and PostgreSQL, also by two processes at once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox import SCHEMA_VERSION, Inbox

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The tables exactly as 0.1.0 created them (airflow_provider_ion/webhooks/inbox.py at b3ce571, compiled
# by SQLAlchemy for each dialect); PREFIX is the table prefix.
DDL_0_1_0 = {
    "sqlite": [
        """CREATE TABLE "PREFIX_cursors" (consumer VARCHAR(255) NOT NULL, seq BIGINT NOT NULL,
        updated_at DATETIME NOT NULL, PRIMARY KEY (consumer))""",
        """CREATE TABLE "PREFIX_events" (seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        receiver VARCHAR(255) NOT NULL, event_id VARCHAR(255) NOT NULL, subscription_id VARCHAR(255),
        resource VARCHAR(255), action VARCHAR(64), received_at DATETIME NOT NULL, body BLOB NOT NULL,
        headers TEXT, CONSTRAINT "PREFIX_events_delivery_uq" UNIQUE (receiver, event_id))""",
        """CREATE INDEX "PREFIX_events_received_at_ix" ON "PREFIX_events" (received_at)""",
        """CREATE TABLE "PREFIX_rejections" (receiver VARCHAR(255) NOT NULL, reason VARCHAR(128) NOT NULL,
        hour DATETIME NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (receiver, reason, hour))""",
    ],
    "postgresql": [
        """CREATE TABLE "PREFIX_cursors" (consumer VARCHAR(255) NOT NULL, seq BIGINT NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (consumer))""",
        """CREATE TABLE "PREFIX_events" (seq BIGSERIAL NOT NULL, receiver VARCHAR(255) NOT NULL,
        event_id VARCHAR(255) NOT NULL, subscription_id VARCHAR(255), resource VARCHAR(255), action VARCHAR(64),
        received_at TIMESTAMP WITH TIME ZONE NOT NULL, body BYTEA NOT NULL, headers TEXT, PRIMARY KEY (seq),
        CONSTRAINT "PREFIX_events_delivery_uq" UNIQUE (receiver, event_id))""",
        """CREATE INDEX "PREFIX_events_received_at_ix" ON "PREFIX_events" (received_at)""",
        """CREATE TABLE "PREFIX_rejections" (receiver VARCHAR(255) NOT NULL, reason VARCHAR(128) NOT NULL,
        hour TIMESTAMP WITH TIME ZONE NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (receiver, reason, hour))""",
    ],
}

EVENTS = [
    ("qa", "1", b'{"event_id": "1", "resource": "RUNS", "action": "CREATE"}', "RUNS", "CREATE"),
    ("qa", "2", b'{"event_id": "2", "resource": "RUNS", "action": "UPDATE"}', "RUNS", "UPDATE"),
    ("erp", "1", b"not json", None, None),
]


def build_0_1_0(url: str, prefix: str, backend: str) -> None:
    """An inbox as 0.1.0 left it: its tables, three events, two cursors, rejection counters."""
    engine = sa.create_engine(url)
    # 0.1.0 wrote timestamps through SQLAlchemy's DateTime: naive UTC text on SQLite, timestamptz on PG.
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f") if backend == "sqlite" else when
    hour = when.replace(minute=0)
    hour_stamp = hour.strftime("%Y-%m-%d %H:%M:%S.%f") if backend == "sqlite" else hour
    with engine.begin() as conn:
        for statement in DDL_0_1_0[backend]:
            conn.exec_driver_sql(statement.replace("PREFIX", prefix))
        for receiver, event_id, body, resource, action in EVENTS:
            conn.execute(
                sa.text(
                    f'INSERT INTO "{prefix}_events" (receiver, event_id, resource, action, received_at, body, headers) '
                    "VALUES (:r, :e, :res, :act, :at, :body, :h)"
                ),
                {"r": receiver, "e": event_id, "res": resource, "act": action, "at": stamp, "body": body, "h": "{}"},
            )
        for consumer, seq in (("trigger-a", 2), ("sensor-b", 3)):
            conn.execute(
                sa.text(f'INSERT INTO "{prefix}_cursors" (consumer, seq, updated_at) VALUES (:c, :s, :at)'),
                {"c": consumer, "s": seq, "at": stamp},
            )
        conn.execute(
            sa.text(f'INSERT INTO "{prefix}_rejections" (receiver, reason, hour, count) VALUES (:r, :why, :h, :n)'),
            {"r": "qa", "why": "signature mismatch", "h": hour_stamp, "n": 7},
        )
    engine.dispose()


@pytest.fixture
def legacy(request, backend, tmp_path, unique_prefix, make_inbox):
    """``(url, prefix)`` of a 0.1.0 inbox; its tables are dropped afterwards (through make_inbox)."""
    url = f"sqlite:///{tmp_path / 'inbox.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    build_0_1_0(url, unique_prefix, backend)
    make_inbox(backend)  # registered for the drop at the end; not opened here
    return url, unique_prefix


def test_a_0_1_0_inbox_is_upgraded_with_its_data_intact(legacy, backend):
    url, prefix = legacy
    inbox = Inbox(url, table_prefix=prefix)
    try:
        events = inbox.read_after(0)
        assert [(e.seq, e.receiver, e.event_id, e.resource, e.action) for e in events] == [
            (1, "qa", "1", "RUNS", "CREATE"),
            (2, "qa", "2", "RUNS", "UPDATE"),
            (3, "erp", "1", None, None),
        ]
        assert events[0].payload["resource"] == "RUNS" and events[2].payload == {"_raw": "not json"}
        assert events[0].received_at == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        assert inbox.list_cursors() == {"trigger-a": 2, "sensor-b": 3}
        assert inbox.rejection_counts() == {"qa": {"signature mismatch": 7}}
        assert inbox.upgraded_from == 1 and inbox.schema_version() == SCHEMA_VERSION
        with inbox.engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
        assert {f"{prefix}_{t}" for t in ("seen", "conflicts", "quarantine", "schema", "consumers")} <= names
        assert inbox.consumers() == []  # version 3's consumers record starts empty
        # The seen record was backfilled from the stored events: dedup and conflicts work for old rows.
        assert inbox.stats()["seen_ids"] == 3
        same = inbox.append("qa", "1", EVENTS[0][2])
        assert same.duplicate and same.seq == 1 and not same.conflict
        other = inbox.append("qa", "2", b'{"changed": true}')
        assert other.duplicate and other.conflict and other.existing_sha256 == hashlib.sha256(EVENTS[1][2]).hexdigest()
        new = inbox.append("qa", "3", b"{}")
        assert new.seq > 3 and not new.duplicate  # (insert-or-ignore may leave gaps in seq; never reuses)
        assert inbox.set_cursor("trigger-a", new.seq) == new.seq
        inbox.close()
        again = Inbox(url, table_prefix=prefix)  # a second open finds the current version: nothing to do
        assert again.latest_seq() == new.seq and again.upgraded_from == SCHEMA_VERSION
        again.close()
    finally:
        inbox.close()


CHILD = r"""
import sys, time, os
from airflow_provider_ion.webhooks.inbox import Inbox
url, prefix, go, name = sys.argv[1:5]
while not os.path.exists(go):
    time.sleep(0.001)
inbox = Inbox(url, table_prefix=prefix)
result = inbox.append("qa", name, b"{}")
print("RESULT", inbox.upgraded_from, result.seq, inbox.stats()["seen_ids"], flush=True)
inbox.close()
"""


def test_two_processes_opening_a_0_1_0_inbox_at_once(legacy, tmp_path):
    url, prefix = legacy
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, prefix, str(go), f"child-{i}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i in range(2)
    ]
    try:
        time.sleep(3)  # both interpreters up and polling for the start signal
        go.touch()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, 9)
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
    lines = [next(line for line in out.splitlines() if line.startswith("RESULT")) for out, _err in outputs]
    found = sorted(int(line.split()[1]) for line in lines)
    assert found == [1, SCHEMA_VERSION]  # exactly one of them upgraded; the other found the work done
    inbox = Inbox(url, table_prefix=prefix)
    try:
        assert [e.event_id for e in inbox.read_after(0)] == ["1", "2", "1", "child-0", "child-1"] or [
            e.event_id for e in inbox.read_after(0)
        ] == ["1", "2", "1", "child-1", "child-0"]
        assert inbox.list_cursors() == {"trigger-a": 2, "sensor-b": 3}
        assert inbox.rejection_counts() == {"qa": {"signature mismatch": 7}}
        assert inbox.stats()["seen_ids"] == 5  # the backfill ran once
    finally:
        inbox.close()


def test_a_0_2_0_inbox_gets_the_consumers_record_with_its_data_intact(make_inbox, backend):
    """Version 2 -> 3: an inbox as 0.2.0 left it (this code's tables less ``consumers``, version 2)."""
    inbox = make_inbox(backend)
    first = inbox.append("qa", "1", EVENTS[0][2])
    inbox.set_cursor("trigger-a", first.seq)
    tables = inbox.tables
    with inbox.engine.begin() as conn:
        tables.consumers.drop(conn)
        conn.execute(sa.update(tables.version).where(tables.version.c.id == 1).values(version=2))
    inbox.close()
    again = Inbox(inbox.engine, table_prefix=inbox.table_prefix)
    try:
        assert [e.event_id for e in again.read_after(0)] == ["1"] and again.list_cursors() == {"trigger-a": first.seq}
        assert again.schema_version() == SCHEMA_VERSION == 3 and again.upgraded_from == 2
        again.record_consumer("trigger-a", kind="trigger", receiver="qa", resources=["RUNS"], actions=None)
        (record,) = again.consumers()
        assert (record.consumer, record.kind, record.receiver, record.resources, record.actions) == (
            "trigger-a",
            "trigger",
            "qa",
            ("RUNS",),
            None,
        )
    finally:
        again.close()
