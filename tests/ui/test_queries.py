"""The page's read queries against real inboxes (a SQLite file and PostgreSQL), and the ION cache."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from airflow_provider_ion.ui import queries
from airflow_provider_ion.ui.ion_status import IonSubscriptions
from airflow_provider_ion.webhooks.inbox import Inbox

PG_URL = os.environ.get("ION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request, tmp_path) -> Iterator[Inbox]:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    if request.param == "postgresql":
        import psycopg

        try:
            psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=2).close()
        except psycopg.Error as error:
            pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {type(error).__name__}")
        url = PG_URL
    box = Inbox.from_url(url, table_prefix=f"t{uuid.uuid4().hex[:12]}_inbox")
    yield box
    box.close()
    if request.param == "postgresql":
        with box.engine.begin() as conn:
            box.metadata.drop_all(conn, checkfirst=True)
        box.engine.dispose()


NOW = datetime.now(UTC).replace(microsecond=0)


def _add(inbox: Inbox, receiver: str, event_id: str, ago: timedelta, resource: str = "RUNS") -> None:
    body = {"event_id": event_id, "resource": resource, "action": "CREATE", "data": {}}
    inbox.append(receiver, event_id, body, received_at=NOW - ago)


def test_deliveries_filter_and_order(inbox: Inbox) -> None:
    _add(inbox, "a", "1", timedelta(hours=3))
    _add(inbox, "a", "2", timedelta(minutes=30), resource="ISSUES")
    _add(inbox, "b", "3", timedelta(minutes=5))
    everything = queries.deliveries(inbox, queries.DeliveryFilter())
    assert [r.event_id for r in everything] == ["3", "2", "1"]
    assert everything[0].size > 0 and everything[0].received_at == NOW - timedelta(minutes=5)
    by_receiver = queries.deliveries(inbox, queries.DeliveryFilter(receiver="a", resource="RUNS"))
    assert [r.event_id for r in by_receiver] == ["1"]
    window = queries.DeliveryFilter(since=NOW - timedelta(hours=1), until=NOW - timedelta(minutes=10))
    assert [r.event_id for r in queries.deliveries(inbox, window)] == ["2"]
    assert [r.event_id for r in queries.deliveries(inbox, queries.DeliveryFilter(event_id="3"))] == ["3"]
    assert len(queries.deliveries(inbox, queries.DeliveryFilter(), limit=2)) == 2


def test_receiver_activity_counts_hour_and_day(inbox: Inbox) -> None:
    _add(inbox, "a", "old", timedelta(days=2))
    _add(inbox, "a", "day", timedelta(hours=5))
    _add(inbox, "a", "hour", timedelta(minutes=10))
    _add(inbox, "b", "only", timedelta(days=3))
    activity = queries.receiver_activity(inbox, now=NOW)
    assert (activity["a"].accepted_hour, activity["a"].accepted_day) == (1, 2)
    assert activity["a"].last is not None and activity["a"].last.event_id == "hour"
    assert (activity["b"].accepted_hour, activity["b"].accepted_day) == (0, 0)
    assert activity["b"].last is not None and activity["b"].last.event_id == "only"


def test_consumer_lag_in_events_and_seconds(inbox: Inbox) -> None:
    for i, ago in enumerate((600, 300, 60)):
        _add(inbox, "a", str(i), timedelta(seconds=ago))
    inbox.set_cursor("caught-up", inbox.latest_seq())
    inbox.set_cursor("behind", inbox.latest_seq() - 2)
    lag = {c.consumer: c for c in queries.consumer_lag(inbox, now=NOW)}
    assert (lag["caught-up"].lag_events, lag["caught-up"].lag_seconds) == (0, 0.0)
    assert lag["behind"].lag_events == 2 and lag["behind"].lag_seconds == pytest.approx(300, abs=1)


def test_settled_deliveries_are_older_than_the_threshold_and_within_a_day(inbox: Inbox) -> None:
    _add(inbox, "a", "fresh", timedelta(seconds=30))
    _add(inbox, "a", "settled", timedelta(minutes=20))
    _add(inbox, "a", "too-old", timedelta(days=2))
    settled = queries.settled_deliveries(inbox, now=NOW, older_than=timedelta(minutes=5))
    assert [r.event_id for r in settled] == ["settled"]


def test_queries_stay_bounded_with_10000_deliveries(inbox: Inbox) -> None:
    rows = [
        {"receiver": f"line-{i % 50:02d}", "event_id": str(i), "subscription_id": None, "resource": "PARTS",
         "action": "UPDATE", "received_at": NOW - timedelta(seconds=8 * (9_999 - i)),  # seq order = arrival
         "body": b'{"event_id": 1}', "headers": None}
        for i in range(10_000)
    ]  # fmt: skip
    with inbox.engine.begin() as conn:
        conn.execute(inbox.events.insert(), rows)
    inbox.set_cursor("t", 0)
    started = time.perf_counter()
    activity = queries.receiver_activity(inbox, now=NOW)
    listed = queries.deliveries(inbox, queries.DeliveryFilter(), limit=100)
    lag = queries.consumer_lag(inbox, now=NOW)
    elapsed = time.perf_counter() - started
    assert len(activity) == 50 and sum(a.accepted_day for a in activity.values()) == 10_000  # all within a day
    assert sum(a.accepted_hour for a in activity.values()) == 451  # (9999 - i) * 8 s <= 3600 s
    assert activity["line-49"].last.event_id == "9999" and activity["line-00"].last.event_id == "9950"
    assert len(listed) == 100 and lag[0].lag_events == 10_000
    assert elapsed < 0.5, f"queries took {elapsed:.3f}s"


def test_ion_cache_reports_an_unreachable_ion_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_ION_UI_DOWN",
        json.dumps(
            {
                "conn_type": "ion",
                "login": "id",
                "password": "pw",
                "host": f"http://127.0.0.1:{port}",
                "extra": {"token_url": f"http://127.0.0.1:{port}/oauth/token"},
            }
        ),
    )
    cache = IonSubscriptions("ion_ui_down", timeout=2)
    started = time.perf_counter()
    first = cache.snapshot()
    assert time.perf_counter() - started < 0.2 and first.fetched_at is None and first.refreshing
    cache.wait(30)
    second = cache.snapshot()
    assert second.error is not None and second.error.startswith("ION unreachable")
    assert "pw" not in second.error.split(":", 1)[1].split() and second.receivers == {}


def test_ion_cache_keeps_only_what_may_be_shown(emulator, ion_default_conn) -> None:
    rec = emulator.store.create_receiver(
        {"name": "Factory", "webhookUri": "https://user:pw@airflow.example/ion?token=abc", "sharedSecret": "s3cret-xyz",
         "headers": [{"key": "authorization", "value": "Bearer hdr-secret"}]}
    )  # fmt: skip
    emulator.store.create_subscription({"receiverId": rec["id"], "resource": "RUNS", "action": "CREATE"})
    cache = IonSubscriptions(ion_default_conn, timeout=10)
    cache.snapshot()
    cache.wait(30)
    snap = cache.snapshot()
    assert snap.error is None, snap.error
    [receiver] = snap.receivers["factory"]
    assert receiver.webhook_uri == "https://airflow.example/ion"
    assert [(s.resource, s.action) for s in receiver.subscriptions] == [("RUNS", "CREATE")]
    assert not any(secret in repr(snap) for secret in ("s3cret-xyz", "hdr-secret", "token=abc", "pw@"))


def test_inbox_read_failure_is_inbox_unavailable(tmp_path) -> None:
    from airflow_provider_ion.webhooks.inbox import InboxUnavailable

    box = Inbox.from_url(f"sqlite:///{tmp_path / 'i.db'}")
    box.latest_seq()
    with box.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {box.events.name}"))
    with pytest.raises(InboxUnavailable):
        queries.deliveries(box, queries.DeliveryFilter())
    box.close()
