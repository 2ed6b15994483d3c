"""Ack mode: IonWebhookTrigger under Airflow 3.3's SharedStreamManager, the way the triggerer drives it.

``Runner`` mimics ``TriggerRunner.run_trigger``: subscribe, iterate ``filter_shared_stream``, bind each
trigger event right after taking it, and confirm persistence when told to (the supervisor's job).
A real SQLite inbox underneath.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

pytest.importorskip("airflow.triggers.shared_stream")

from airflow.triggers.shared_stream import SharedStreamManager

from airflow_provider_ion.triggers import _ack, _reader
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
from airflow_provider_ion.webhooks.inbox import Inbox


class Runner:
    def __init__(self, ack_timeout: float = 30.0) -> None:
        self.manager = SharedStreamManager(ack_timeout=ack_timeout)
        self.fired: dict[int, list[dict]] = defaultdict(list)
        self.unconfirmed: list[int] = []
        self.errors: dict[int, BaseException] = {}
        self.tasks: dict[int, asyncio.Task] = {}

    def start(self, trigger_id: int, trigger: IonWebhookTrigger) -> None:
        key = trigger.shared_stream_key()

        async def run() -> None:
            stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
            try:
                async for event in trigger.filter_shared_stream(stream):
                    seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=key)
                    self.fired[trigger_id].append(event.payload)
                    if seq is not None:
                        self.unconfirmed.append(seq)
            except Exception as error:
                self.errors[trigger_id] = error
            finally:
                await self.manager.unsubscribe(trigger_id, key)

        self.tasks[trigger_id] = asyncio.create_task(run())

    def confirm(self) -> None:
        seqs, self.unconfirmed = self.unconfirmed, []
        self.manager.confirm_persisted(seqs)

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.manager.stop_all()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/inbox.db"
    Inbox(url).latest_seq()
    return url


def trig(url: str, consumer: str, **kwargs) -> IonWebhookTrigger:
    return IonWebhookTrigger(consumer=consumer, inbox_url=url, poll_interval=0.05, **{"resource": "RUNS", **kwargs})


def append(url: str, event_id: str, resource: str = "RUNS", **data) -> int:
    return _reader.get_inbox(url).append("factory", event_id, {"resource": resource, "action": "CREATE",
                                                                "data": data}).seq  # fmt: skip


def cursor(url: str, consumer: str) -> int:
    return _reader.get_inbox(url).get_cursor(consumer)


async def test_cursor_advances_only_after_airflow_persisted_the_trigger_event(url) -> None:
    runner = Runner()
    runner.start(1, trig(url, "a"))
    runner.start(2, trig(url, "b", resource="ISSUES"))  # never matches: skips, nothing to persist
    await until(lambda: "a" in _reader.get_inbox(url).list_cursors())
    await asyncio.sleep(0.2)
    seq = await asyncio.to_thread(append, url, "e1", n=1)
    await until(lambda: len(runner.fired[1]) == 1)
    assert runner.fired[1][0]["event_id"] == "e1" and runner.fired[1][0]["payload"]["data"] == {"n": 1}
    await asyncio.sleep(0.5)
    assert cursor(url, "a") < seq, "cursor moved before the trigger event was persisted"
    runner.confirm()
    await until(lambda: cursor(url, "a") == seq and cursor(url, "b") == seq)
    assert runner.fired[2] == []
    await runner.stop()


async def test_restart_before_persist_redelivers_the_same_event_once_persisted_never_again(url) -> None:
    runner = Runner()
    runner.start(1, trig(url, "a"))
    await until(lambda: "a" in _reader.get_inbox(url).list_cursors())
    await asyncio.to_thread(append, url, "e1")
    await until(lambda: len(runner.fired[1]) == 1)
    await runner.stop()  # "crash": no persist confirmation arrived

    again = Runner()
    again.start(1, trig(url, "a"))
    await until(lambda: len(again.fired[1]) == 1)
    assert again.fired[1][0]["event_id"] == "e1"  # a repeat carries the same event_id
    again.confirm()
    await until(lambda: cursor(url, "a") == again.fired[1][0]["seq"])
    await again.stop()

    third = Runner()
    third.start(1, trig(url, "a"))
    await asyncio.to_thread(append, url, "e2")
    await until(lambda: len(third.fired[1]) == 1)
    assert [e["event_id"] for e in third.fired[1]] == ["e2"]  # e1 does not fire again
    await third.stop()


async def test_ack_timeout_keeps_the_event_for_the_next_start(url) -> None:
    runner = Runner(ack_timeout=0.3)
    runner.start(1, trig(url, "a"))
    runner.start(2, trig(url, "b", resource="ISSUES"))
    await until(lambda: {"a", "b"} <= set(_reader.get_inbox(url).list_cursors()))
    seq1 = await asyncio.to_thread(append, url, "e1")
    await until(lambda: 1 in runner.errors, timeout=5)  # never confirmed: AckTimeout fails trigger 1
    assert type(runner.errors[1]).__name__ == "AckTimeout"
    seq2 = await asyncio.to_thread(append, url, "e2")
    await until(lambda: cursor(url, "b") == seq2)  # the other trigger keeps going
    assert cursor(url, "a") < seq1
    runner.start(3, trig(url, "a"))  # Airflow starts the trigger again
    await until(lambda: len(runner.fired[3]) == 2)
    assert [e["event_id"] for e in runner.fired[3]] == ["e1", "e2"]
    runner.confirm()
    await until(lambda: cursor(url, "a") == seq2)
    await runner.stop()


async def test_a_trigger_joining_behind_the_group_catches_up_in_order_without_duplicates(url) -> None:
    runner = Runner()
    runner.start(1, trig(url, "ahead"))
    await until(lambda: "ahead" in _reader.get_inbox(url).list_cursors())
    _reader.get_inbox(url).set_cursor("behind", 0)
    seqs = [await asyncio.to_thread(append, url, f"e{i}") for i in range(5)]
    await until(lambda: len(runner.fired[1]) == 5)
    runner.start(2, trig(url, "behind"))  # e.g. moved here from another triggerer
    await until(lambda: len(runner.fired[2]) == 5)
    seqs.append(await asyncio.to_thread(append, url, "e5"))
    await until(lambda: len(runner.fired[1]) == 6 and len(runner.fired[2]) == 6)
    await asyncio.sleep(0.3)
    for tid in (1, 2):
        assert [e["seq"] for e in runner.fired[tid]] == seqs
    runner.confirm()
    await until(lambda: cursor(url, "ahead") == seqs[-1] and cursor(url, "behind") == seqs[-1])
    await runner.stop()


async def test_one_producer_and_one_reader_per_process_for_many_triggers(url) -> None:
    runner = Runner()
    for i in range(200):
        runner.start(i, trig(url, f"c{i}", match={"data.n": i % 2}))
    await until(lambda: len(_reader.get_inbox(url).list_cursors()) == 200, timeout=30)
    await asyncio.sleep(0.3)
    assert len(runner.manager._groups) == 1
    readers = [r for r in _reader._readers.values() if r.url == url]
    assert len(readers) == 1 and len(readers[0].waiters) == 1  # the group's producer is the one waiter
    before = readers[0].reads
    await asyncio.sleep(1.0)
    assert readers[0].reads - before <= 1 / 0.05 * 1.3
    await asyncio.to_thread(append, url, "e1", n="1")
    await until(lambda: sum(len(v) for v in runner.fired.values()) == 100)
    assert all(e[0]["event_id"] == "e1" for tid, e in runner.fired.items() if tid % 2 == 1)
    runner.confirm()
    await runner.stop()
    assert not _ack._states or all(not s.subscriptions for s in _ack._states.values())


async def test_one_subscribers_failure_does_not_hold_back_another_that_fired_for_the_same_event(url) -> None:
    """Airflow reports failures per raw event; the subscriber that did persist its trigger event keeps going."""
    runner = Runner(ack_timeout=0.5)
    runner.start(1, trig(url, "a"))
    runner.start(2, trig(url, "c"))  # the same filter: both fire for every RUNS event
    await until(lambda: {"a", "c"} <= set(_reader.get_inbox(url).list_cursors()))
    await asyncio.sleep(0.2)
    # bind order: record which trigger each pending seq belongs to
    runner_seqs: dict[int, list[int]] = {1: [], 2: []}
    original = runner.manager.bind_pending_event

    def bind(*, trigger_id: int, key):
        seq = original(trigger_id=trigger_id, key=key)
        if seq is not None:
            runner_seqs[trigger_id].append(seq)
        return seq

    runner.manager.bind_pending_event = bind  # type: ignore[method-assign]
    seq1 = await asyncio.to_thread(append, url, "e1")
    await until(lambda: len(runner.fired[1]) == 1 and len(runner.fired[2]) == 1)
    runner.manager.confirm_persisted(runner_seqs[2])
    await until(lambda: 1 in runner.errors, timeout=5)  # trigger 1 fails (ack timeout)
    seq2 = await asyncio.to_thread(append, url, "e2")
    await until(lambda: len(runner.fired[2]) == 2)
    runner.manager.confirm_persisted(runner_seqs[2])
    await until(lambda: cursor(url, "c") == seq2, timeout=5)  # not held back by trigger 1's failure
    assert cursor(url, "a") < seq1  # the failed one redelivers e1 on its next start
    await runner.stop()
