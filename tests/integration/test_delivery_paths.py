"""Emulator -> real HTTP -> standalone receiver process -> inbox, on SQLite and on PostgreSQL.

ION delivers at least once: duplicates (a fault sends copies at once, racing each other into the
inbox) and retries after lost answers (a drop fault: the receiver stored the event, the emulator
never read the 200) must still leave exactly one inbox row per event, and every event SUCCESS.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_provider_ion.webhooks.inbox import Inbox

from .conftest import SECRET
from .receivers import ReceiverProcess

EVENTS = 300


@pytest.mark.parametrize("inbox_url", ["sqlite", "postgresql"], indirect=True)
def test_duplicates_and_retries_are_stored_once(ion, subscribe, inbox_url: str, tmp_path: Path) -> None:
    with ReceiverProcess(tmp_path / "receiver", inbox_url, {"factory": SECRET}) as receiver:
        subscribe(receiver.url("factory"), "RUNS/CREATE", "RUNS/UPDATE", "ISSUES/CREATE")
        ion.add_delivery_fault("duplicate", copies=3, times=None, resource="ISSUES")
        ion.add_delivery_fault("drop", when="after", times=25)
        ion.add_delivery_fault("drop", when="before", times=10)
        ion.add_delivery_fault("reorder", times=50, batch=25)
        ion.add_delivery_fault("delay", delay=0.3, times=5)

        started = time.monotonic()
        run = ion.store.create_object("runs", {"title": "R-1"})
        ion.store.update_object("runs", {"id": run["id"], "etag": run["_etag"], "status": "DONE"})
        for i in range(EVENTS):
            ion.fire("ISSUES" if i % 3 == 0 else "RUNS", "CREATE", {"id": 1000 + i, "title": f"event {i}"})
        assert ion.wait_for_deliveries(60), ion.stats["deliveries"]
        elapsed = time.monotonic() - started

        events = ion.store.list("events")
        assert len(events) == EVENTS + 2
        assert {e["status"] for e in events} == {"SUCCESS"}, [e for e in events if e["status"] != "SUCCESS"][:3]
        assert sum(e["attempts"] > 1 for e in events) == 35  # every dropped attempt was retried
        stats = ion.stats["deliveries"]
        assert stats["duplicates_sent"] == 2 * (EVENTS // 3) and stats["dropped"] == 35
        received = receiver.stats()
        assert (
            received["duplicate"] >= stats["duplicates_sent"] + 25
            and received["rejected"].get("signature mismatch") is None
        )

    with Inbox(inbox_url) as inbox:
        rows = inbox.latest(10 * EVENTS, receiver="factory")
        ids = [int(row.event_id) for row in rows]
        assert len(ids) == len(set(ids)) == EVENTS + 2
        assert set(ids) == {e["id"] for e in events}
        assert inbox.stats()["total"] == EVENTS + 2
        by_id = {int(row.event_id): row for row in rows}
        assert by_id[events[1]["id"]].payload["data"]["status"] == "DONE"
        assert {row.resource for row in rows} == {"RUNS", "ISSUES"}
    print(f"\n{inbox_url.split(':')[0]}: {EVENTS + 2} events with faults delivered in {elapsed:.2f}s")
