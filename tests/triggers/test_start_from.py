"""Where a new consumer starts (``start_from``), and cursors that belong to one Airflow trigger.

The trigger's ``run()`` on a real SQLite inbox. A DAG's first unpause is the trigger's first start (a new
cursor); a pause stops the trigger and the unpause starts it again from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime

import pytest

from airflow_provider_ion.triggers import _reader
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/inbox.db"


def append(url: str, event_id: str, action: str = "CREATE") -> int:
    body = {"event_id": event_id, "resource": "RUNS", "action": action, "data": {}}
    return _reader.get_inbox(url).append("factory", event_id, body, resource="RUNS", action=action).seq


def trig(url: str, trigger_id: int | None = None, **kwargs) -> IonWebhookTrigger:
    trigger = IonWebhookTrigger(resource="RUNS", action="CREATE", inbox_url=url, poll_interval=0.05, **kwargs)
    trigger.trigger_id = trigger_id
    trigger.standalone_commit_delay = 0.1  # save the cursor soon (ack mode saves it once Airflow persisted the event)
    return trigger


async def collect(trigger: IonWebhookTrigger, n: int, timeout: float = 3.0) -> list[str]:
    """The event_ids of the first ``n`` trigger events (fewer if none come within ``timeout``); the trigger
    then runs a little longer, so that it saves its cursor, and is stopped (a pause)."""
    got: list[str] = []

    async def run() -> None:
        async for event in trigger.run():
            got.append(event.payload["event_id"])

    task = asyncio.create_task(run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < n and loop.time() < deadline and not task.done():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.4)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return got


async def test_events_before_the_first_start_latest_skips_them_earliest_and_timedelta_deliver_them(url) -> None:
    append(url, "before-1")
    append(url, "before-2")
    assert await collect(trig(url, 1), 1, timeout=1.0) == []  # default "latest": only new events
    append(url, "after")
    assert await collect(trig(url, 1), 1) == ["after"]
    assert await collect(trig(url, 2, start_from="earliest"), 3) == ["before-1", "before-2", "after"]
    assert await collect(trig(url, 3, start_from=datetime.timedelta(hours=1)), 3) == ["before-1", "before-2", "after"]
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    assert await collect(trig(url, 4, start_from=future), 1, timeout=1.0) == []


async def test_events_during_a_pause_are_delivered_after_it_whatever_start_from_says(url) -> None:
    append(url, "old")
    assert await collect(trig(url, 1), 1, timeout=1.0) == []  # first start: cursor created at "latest"
    append(url, "e1")
    assert await collect(trig(url, 1), 1) == ["e1"]
    append(url, "during-pause-1")  # the trigger is not running
    append(url, "during-pause-2")
    assert await collect(trig(url, 1, start_from="latest"), 2) == ["during-pause-1", "during-pause-2"]


async def test_two_airflow_triggers_with_equal_filters_have_their_own_cursors(url) -> None:
    a, b = trig(url, 11), trig(url, 12)
    assert a.consumer_name != b.consumer_name
    assert a.consumer_name.startswith(a.filter_consumer_name)
    await collect(a, 1, timeout=0.5)
    await collect(b, 1, timeout=0.5)
    append(url, "x")
    assert await collect(a, 1) == ["x"]  # a is done with x: its cursor moves
    assert await collect(b, 1) == ["x"]  # b's does not move with it


async def test_a_new_per_trigger_cursor_starts_where_the_filter_only_cursor_of_earlier_versions_stood(url) -> None:
    legacy = trig(url, None)  # run() outside a triggerer: the filter-only name, as before
    await collect(legacy, 1, timeout=0.5)
    append(url, "seen-by-legacy")
    assert await collect(legacy, 1) == ["seen-by-legacy"]
    append(url, "after-upgrade")
    assert await collect(trig(url, 7), 1) == ["after-upgrade"]  # neither lost nor repeated


def test_start_from_serializes_and_bad_values_are_clear() -> None:
    _, kwargs = IonWebhookTrigger(resource="RUNS").serialize()
    assert "start_from" not in kwargs  # the serialized form (Airflow hashes it) of existing triggers is unchanged
    for given, stored in [
        ("earliest", "earliest"),
        (datetime.timedelta(minutes=5), 300.0),
        (datetime.datetime(2026, 5, 1, 10, 0), "2026-05-01T10:00:00+00:00"),
        ("2026-05-01T10:00:00Z", "2026-05-01T10:00:00+00:00"),
    ]:
        _, kwargs = IonWebhookTrigger(resource="RUNS", start_from=given).serialize()
        assert kwargs["start_from"] == stored
        assert IonWebhookTrigger(**kwargs).serialize()[1] == kwargs
    with pytest.raises(ValueError, match="start_from must be"):
        IonWebhookTrigger(resource="RUNS", start_from="yesterday")
