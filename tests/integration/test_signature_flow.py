"""Issue 11/16 end to end: ION signs differently than configured; nothing is lost.

Emulator (profile ``signature-base64``) -> real HTTP -> standalone receiver process (``airflow-ion receiver
serve``, uvicorn) configured with the default hex scheme: every delivery is answered 401 and quarantined.
``airflow-ion signature detect`` (a subprocess reading the inbox and the secret the way an operator gives
them) names the settings; the receiver restarts with them; ``airflow-ion inbox replay-quarantined``
appends every quarantined event; ION's own retries then succeed too and the inbox keeps one row per event;
an ``IonWebhookTrigger`` (run in-process, as the triggerer would) hands each event on exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings
from airflow_provider_ion.testing.emulator.server import EmulatorServer
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
from airflow_provider_ion.webhooks.inbox import Inbox

from .conftest import SECRET
from .receivers import ReceiverProcess

pytestmark = pytest.mark.e2e

EVENTS = 5
#: Three quick attempts (all refused), then a long wait: the replay happens before ION's 4th attempt.
RETRY_GAP = 40.0
CLI = str(Path(sys.executable).parent / "airflow-ion")


def _cli(receiver: ReceiverProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], env=receiver.env, cwd=receiver.home, capture_output=True, text=True, timeout=120,
        start_new_session=True,
    )  # fmt: skip


@pytest.mark.parametrize("inbox_url", ["sqlite"], indirect=True)
def test_detect_reconfigure_replay_then_retries_dedup(inbox_url: str, tmp_path: Path) -> None:
    delivery = DeliverySettings(loopback_only=True, retry_schedule=(0.1, 0.1, RETRY_GAP, 0.2), max_attempts=8)
    with EmulatorServer(profile="signature-base64", delivery=delivery) as ion:
        receiver = ReceiverProcess(tmp_path / "receiver", inbox_url, {"factory": SECRET})
        with receiver:
            r = ion.store.create_receiver({"name": "factory", "webhookUri": receiver.url("factory"),
                                           "sharedSecret": SECRET})  # fmt: skip
            ion.store.create_subscription({"receiverId": r["id"], "resource": "RUNS", "action": "CREATE"})
            fired = [ion.fire("RUNS", "CREATE", {"id": 500 + i, "title": f"run {i}"}) for i in range(EVENTS)]
            assert all(fired)
            deadline = time.monotonic() + 30
            while sum(receiver.stats()["rejected"].values()) < 3 * EVENTS:  # "signature malformed": not hex
                assert time.monotonic() < deadline, receiver.stats()
                time.sleep(0.1)
        with Inbox(inbox_url) as inbox:
            quarantined = inbox.quarantined("factory", limit=1000)
            assert len(quarantined) == 3 * EVENTS  # every refused attempt is kept
            assert inbox.latest(100, receiver="factory") == []
        events = ion.store.list("events")
        assert {e["status"] for e in events} != {"SUCCESS"}

        detect = _cli(receiver, "signature", "detect", "--receiver", "factory")
        assert detect.returncode == 0, detect.stderr
        assert SECRET not in detect.stdout + detect.stderr
        settings = dict(re.findall(r"^\s+(signature_\w+) = (\S+)$", detect.stdout, re.MULTILINE))
        assert settings["signature_encoding"] == "base64", detect.stdout

        # Reconfigured with the detected settings, the way an operator would (environment of the receiver).
        receiver.env.update({f"AIRFLOW__ION_WEBHOOKS__{k.upper()}": v for k, v in settings.items()})
        with receiver:
            replay = _cli(receiver, "inbox", "replay-quarantined", "--receiver", "factory")
            assert replay.returncode == 0, replay.stdout + replay.stderr
            assert f"appended: {EVENTS}, duplicates: {2 * EVENTS}, still failing: 0" in replay.stdout
            # Replayed before ION's next attempt: the emulator still has them pending.
            assert not any(e["status"] == "SUCCESS" for e in ion.store.list("events"))
            with Inbox(inbox_url) as inbox:
                ids = sorted(int(e.event_id) for e in inbox.latest(100, receiver="factory"))
                assert ids == sorted(e["id"] for e in events)
                assert inbox.quarantined("factory") == []

            assert ion.wait_for_deliveries(RETRY_GAP + 30)
            assert {e["status"] for e in ion.store.list("events")} == {"SUCCESS"}
            assert receiver.stats()["duplicate"] >= EVENTS  # ION's retries hit the dedup
        with Inbox(inbox_url) as inbox:
            rows = inbox.latest(100, receiver="factory")
            assert sorted(int(e.event_id) for e in rows) == ids  # one row per event
            assert inbox.stats()["total"] == EVENTS

    # What an AssetWatcher's trigger hands to Airflow: every event once, the replayed ones included.
    got = asyncio.run(_trigger_events(inbox_url, EVENTS + 1))
    assert sorted(int(e) for e in got) == ids


async def _trigger_events(inbox_url: str, at_most: int, quiet: float = 1.5) -> list[str]:
    """The event_ids an ``IonWebhookTrigger`` (in-process, its own cursor from the start of the inbox) yields
    until ``quiet`` seconds pass without one (or ``at_most`` arrive)."""
    trigger = IonWebhookTrigger(resource="RUNS", action="CREATE", receiver="factory", inbox_url=inbox_url,
                                start_from="earliest", poll_interval=0.05)  # fmt: skip
    trigger.trigger_id = 1
    got: list[str] = []

    async def run() -> None:
        async for event in trigger.run():
            got.append(str(event.payload["event_id"]))

    task = asyncio.create_task(run())
    loop = asyncio.get_running_loop()
    last, seen = loop.time(), 0
    while len(got) < at_most and loop.time() - last < quiet and not task.done():
        await asyncio.sleep(0.05)
        if len(got) != seen:
            last, seen = loop.time(), len(got)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return got
