"""detect / replay-quarantined over a real SQLite inbox's quarantine (``Inbox.quarantine/quarantined/
remove_quarantined``). The deliveries are signed by the emulator's own delivery code (profile
``signature-base64``)."""

from __future__ import annotations

import json

from airflow_provider_ion.testing.emulator.delivery_attempt import request_headers
from airflow_provider_ion.testing.emulator.profiles import get_profile
from airflow_provider_ion.webhooks.inbox import Inbox
from airflow_provider_ion.webhooks.quarantine_replay import detect_quarantined, replay_quarantined
from airflow_provider_ion.webhooks.signature import DEFAULT_SCHEME, SignatureScheme, verify

SECRET = "whsec-receiver-secret-0123456789"


def quarantine(inbox: Inbox, n: int, profile: str) -> Inbox:
    """Quarantine ``n`` deliveries signed by the emulator's own delivery code with ``profile``."""
    chosen = get_profile(profile)
    for i in range(n):
        body = json.dumps({"event_id": 1000 + i, "subscription_id": 1, "resource": "RUNS", "action": "CREATE"}).encode()
        receiver = {"contentType": "application/json", "sharedSecret": SECRET}
        headers = request_headers(receiver, body, chosen.scheme, chosen.signature_style)
        assert not verify(body, headers.get("x-ion-signature"), [SECRET])  # the default settings refuse it
        assert inbox.quarantine("factory", body, headers, "signature mismatch")
    return inbox


def test_detect_names_settings_and_replay_appends_each_event_once(tmp_path) -> None:
    inbox = Inbox.from_url(f"sqlite:///{tmp_path}/inbox.db")
    try:
        quarantine(inbox, 5, "signature-base64")
        found = detect_quarantined(inbox, "factory", [SECRET])
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
        assert replay_quarantined(inbox, "factory", [SECRET], DEFAULT_SCHEME).counts()["still_failing"] == 5
        rows = inbox.quarantined("factory")
        assert len(rows) == 5
        third = next(r for r in rows if json.loads(r.body)["event_id"] == 1002)
        inbox.append("factory", 1002, bytes(third.body))  # one of them got in some other way (an ION retry)
        s = scheme["settings"]
        fixed = SignatureScheme(
            s["signature_header"], s["signature_algorithm"], s["signature_encoding"], s["signature_prefix"]
        )
        counts = replay_quarantined(inbox, "factory", [SECRET], fixed).counts()
        assert counts == {"appended": 4, "duplicates": 1, "still_failing": 0, "invalid": 0}
        assert inbox.quarantined("factory") == []
        assert sorted(int(e.event_id) for e in inbox.latest(20, receiver="factory")) == [1000, 1001, 1002, 1003, 1004]
    finally:
        inbox.close()


def test_detect_without_a_matching_secret_explains_nothing(tmp_path) -> None:
    inbox = quarantine(Inbox.from_url(f"sqlite:///{tmp_path}/inbox.db"), 2, "standard-webhooks")
    try:
        assert detect_quarantined(inbox, "factory", ["another-secret"])["matched"] == 0
        found = detect_quarantined(inbox, "factory", [SECRET])
        assert found["matched"] == 2 and found["schemes"][0]["scheme"] == "standard-webhooks"
        assert found["schemes"][0]["settings"] == {}
    finally:
        inbox.close()
