"""kill -9 of a standalone receiver in the middle of 2,000 deliveries loses nothing.

The receiver answers 2xx only after the inbox commit, so every event the emulator saw succeed must
already be in the inbox file while the receiver is still dead; the rest fail against the closed port,
ION retries them on its schedule, the receiver comes back on the same port, and in the end all 2,000
events are SUCCESS in the emulator and stored exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

from airflow_provider_ion.webhooks.inbox import Inbox

from .conftest import SECRET
from .receivers import ReceiverProcess

EVENTS = 2000


def test_receiver_killed_mid_delivery_loses_nothing(ion, subscribe, tmp_path: Path) -> None:
    inbox_url = f"sqlite:///{tmp_path / 'inbox.db'}"
    receiver = ReceiverProcess(tmp_path / "receiver", inbox_url, {"factory": SECRET}).start()
    try:
        subscribe(receiver.url("factory"), "RUNS/CREATE")
        started = time.monotonic()
        for i in range(EVENTS):
            ion.fire("RUNS", "CREATE", {"id": i, "title": f"run {i}"})
        fired = time.monotonic()
        while ion.stats["deliveries"]["succeeded"] < EVENTS // 4:
            assert time.monotonic() - started < 30, ion.stats["deliveries"]
            time.sleep(0.005)
        receiver.kill()
        killed = time.monotonic()
        time.sleep(0.3)  # attempts in flight at the kill end now (connection reset or refused)
        acknowledged = {e["id"] for e in ion.store.list("events") if e["status"] == "SUCCESS"}
        assert all(e["lastResponseCode"] == 200 for e in ion.store.list("events") if e["id"] in acknowledged)
        with Inbox(inbox_url) as inbox:  # read while the receiver is dead: durable before the 200
            stored_at_kill = {int(row.event_id) for row in inbox.latest(EVENTS, receiver="factory")}
        assert acknowledged <= stored_at_kill, f"acknowledged but lost: {sorted(acknowledged - stored_at_kill)[:10]}"
        assert len(stored_at_kill) < EVENTS, "the kill came too late to test anything"

        receiver.start()
        restarted = time.monotonic()
        assert ion.wait_for_deliveries(45), ion.stats["deliveries"]
        done = time.monotonic()
    finally:
        receiver.stop()

    events = ion.store.list("events")
    assert len(events) == EVENTS and {e["status"] for e in events} == {"SUCCESS"}
    with Inbox(inbox_url) as inbox:
        ids = [int(row.event_id) for row in inbox.latest(2 * EVENTS, receiver="factory")]
        assert inbox.stats()["total"] == EVENTS
    assert len(ids) == len(set(ids)) == EVENTS and set(ids) == {e["id"] for e in events}
    stats = ion.stats["deliveries"]
    print(
        f"\ncrash test: fired {EVENTS} in {fired - started:.2f}s; killed after {killed - started:.2f}s with "
        f"{len(acknowledged)} acknowledged ({len(stored_at_kill)} stored); receiver back after "
        f"{restarted - killed:.2f}s; all delivered {done - restarted:.2f}s later; total {done - started:.2f}s; "
        f"attempts {stats['attempts']}, retries {stats['retries']}"
    )
