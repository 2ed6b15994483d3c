"""The page's replay verifies again with the settings now in force (same function as the CLI) and
the page shows what signature_detect finds for quarantined deliveries, never a secret."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_ion.testing.emulator.delivery_attempt import request_headers
from airflow_provider_ion.testing.emulator.profiles import get_profile
from airflow_provider_ion.ui.app import UiState
from airflow_provider_ion.ui.page import detected_settings, replay_quarantined
from airflow_provider_ion.webhooks.inbox import Inbox
from airflow_provider_ion.webhooks.signature import DEFAULT_SCHEME, SignatureScheme

SECRET = "ui-replay-secret-0123456789abcdef"
BASE64 = SignatureScheme("x-ion-signature", "sha256", "base64", "")


def _quarantine_base64(inbox: Inbox, event_ids: list[int]) -> list[str]:
    profile = get_profile("signature-base64")
    for event_id in event_ids:
        body = json.dumps({"event_id": event_id, "resource": "RUNS", "action": "CREATE"}).encode()
        headers = request_headers({"contentType": "application/json", "sharedSecret": SECRET}, body,
                                  profile.scheme, profile.signature_style)  # fmt: skip
        assert inbox.quarantine("factory", body, headers, "signature mismatch")
    return [str(q.id) for q in inbox.quarantined("factory")]


def test_replay_appends_only_what_verifies_with_the_current_settings(tmp_path: Path) -> None:
    settings = {"scheme": DEFAULT_SCHEME}
    with Inbox(f"sqlite:///{tmp_path}/inbox.db") as inbox:
        state = UiState(inbox=inbox, secrets_for=lambda r: (SECRET,), current_scheme=lambda: settings["scheme"])
        ids = _quarantine_base64(inbox, [1, 2, 3])

        found = detected_settings(state, ["factory"])["factory"]
        assert (found["deliveries"], found["matched"]) == (3, 3)
        assert found["schemes"][0]["settings"]["signature_encoding"] == "base64"
        assert SECRET not in json.dumps(found)

        # The default (hex) settings still in force: nothing is stored, everything stays in quarantine.
        result = replay_quarantined(state, ids)
        assert result["replayed"] == [] and sorted(result["refused"]) == sorted(ids)
        assert inbox.latest(10, receiver="factory") == [] and len(inbox.quarantined("factory")) == 3

        settings["scheme"] = BASE64  # the detected settings are now configured
        inbox.append("factory", 2, json.dumps({"event_id": 2, "resource": "RUNS", "action": "CREATE"}).encode())
        result = replay_quarantined(state, [*ids, "no-such-id"])
        assert (len(result["replayed"]), len(result["duplicates"]), result["refused"]) == (2, 1, {})
        assert result["missing"] == ["no-such-id"]
        assert sorted(int(e.event_id) for e in inbox.latest(10, receiver="factory")) == [1, 2, 3]
        assert inbox.quarantined("factory") == []


def test_replay_without_a_secret_refuses_and_says_why(tmp_path: Path) -> None:
    with Inbox(f"sqlite:///{tmp_path}/inbox.db") as inbox:
        state = UiState(inbox=inbox, secrets_for=lambda r: (), current_scheme=lambda: BASE64)
        ids = _quarantine_base64(inbox, [7])
        result = replay_quarantined(state, ids)
        assert result["refused"] == {ids[0]: "no shared secret is configured for receiver 'factory'"}
        assert detected_settings(state, ["factory"])["factory"]["has_secret"] is False
        assert len(inbox.quarantined("factory")) == 1
