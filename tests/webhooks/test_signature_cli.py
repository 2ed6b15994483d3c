"""detect / replay-quarantined over the agreed quarantine interface, with a real SQLite inbox for appends.

The quarantine itself (``Inbox.quarantine/quarantined/remove_quarantined``) is built on the inbox
branch; until it is merged, ``Quarantine`` below holds the rows with the agreed fields. The deliveries
are signed by the emulator's own delivery code (profile ``signature-base64``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from airflow_provider_ion.testing.emulator.delivery_attempt import request_headers
from airflow_provider_ion.testing.emulator.profiles import get_profile
from airflow_provider_ion.webhooks.inbox import Inbox
from airflow_provider_ion.webhooks.signature import DEFAULT_SCHEME, SignatureScheme, verify
from airflow_provider_ion.webhooks.signature_cli import detect_quarantined, replay_quarantined

SECRET = "whsec-receiver-secret-0123456789"


@dataclass
class Row:
    id: int
    receiver: str
    received_at: datetime
    body: bytes
    headers: dict
    reason: str


@dataclass
class Quarantine:
    inbox: Inbox
    rows: list[Row] = field(default_factory=list)

    def quarantined(self, receiver: str | None = None, limit: int = 100) -> list[Row]:
        return [r for r in self.rows if receiver is None or r.receiver == receiver][:limit]

    def remove_quarantined(self, ids) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r.id not in set(ids)]
        return before - len(self.rows)

    def append(self, *args, **kwargs):
        return self.inbox.append(*args, **kwargs)


def deliveries(n: int, profile: str) -> list[Row]:
    chosen = get_profile(profile)
    rows = []
    for i in range(n):
        body = json.dumps({"event_id": 1000 + i, "subscription_id": 1, "resource": "RUNS", "action": "CREATE"}).encode()
        receiver = {"contentType": "application/json", "sharedSecret": SECRET}
        headers = request_headers(receiver, body, chosen.scheme, chosen.signature_style)
        assert not verify(body, headers.get("x-ion-signature"), [SECRET])  # the default settings refuse it
        rows.append(Row(i, "factory", datetime.now(UTC), body, headers, "signature mismatch"))
    return rows


def test_detect_names_settings_and_replay_appends_each_event_once(tmp_path) -> None:
    inbox = Inbox.from_url(f"sqlite:///{tmp_path}/inbox.db")
    try:
        quarantine = Quarantine(inbox, deliveries(5, "signature-base64"))
        found = detect_quarantined(quarantine, "factory", [SECRET])
        assert (found["deliveries"], found["matched"]) == (5, 5)
        [scheme] = found["schemes"]
        assert scheme["settings"] == {
            "signature_header": "x-ion-signature",
            "signature_algorithm": "sha256",
            "signature_encoding": "base64",
            "signature_prefix": "",
        }
        assert SECRET not in json.dumps(found)

        # With the old settings nothing verifies and nothing leaves quarantine.
        assert replay_quarantined(quarantine, "factory", [SECRET], DEFAULT_SCHEME)["still_failing"] == 5
        assert len(quarantine.rows) == 5
        inbox.append("factory", 1002, quarantine.rows[2].body)  # one of them got in some other way
        s = scheme["settings"]
        fixed = SignatureScheme(
            s["signature_header"], s["signature_algorithm"], s["signature_encoding"], s["signature_prefix"]
        )
        counts = replay_quarantined(quarantine, "factory", [SECRET], fixed)
        assert counts == {"appended": 4, "duplicates": 1, "still_failing": 0, "invalid": 0}
        assert quarantine.rows == []
        assert sorted(int(e.event_id) for e in inbox.latest(20, receiver="factory")) == [1000, 1001, 1002, 1003, 1004]
    finally:
        inbox.close()


def test_detect_without_a_matching_secret_explains_nothing(tmp_path) -> None:
    quarantine = Quarantine(Inbox.from_url(f"sqlite:///{tmp_path}/inbox.db"), deliveries(2, "standard-webhooks"))
    try:
        assert detect_quarantined(quarantine, "factory", ["another-secret"])["matched"] == 0
        found = detect_quarantined(quarantine, "factory", [SECRET])
        assert found["matched"] == 2 and found["schemes"][0]["scheme"] == "standard-webhooks"
        assert found["schemes"][0]["settings"] == {}
    finally:
        quarantine.inbox.close()
