"""``airflow-ion doctor`` and the Test button against emulator profiles (read-only, no secret shown)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from airflow_provider_ion.cli import main
from airflow_provider_ion.exceptions import IonSchemaError
from airflow_provider_ion.hooks.doctor import run_checks
from airflow_provider_ion.hooks.ion import IonHook
from airflow_provider_ion.testing.emulator.profiles import Profile
from airflow_provider_ion.testing.emulator.server import EmulatorServer
from tests.conftest import define_ion_connection


def statuses(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_default_profile_is_all_published(profiled_emulators, monkeypatch, capsys) -> None:
    server = profiled_emulators("default")
    define_ion_connection(monkeypatch, server)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "✗" not in out and "!" not in out.split("check", 1)[1].split("as published,")[0]
    assert "0 different (adapted), 0 to fix" in out
    assert server.client_secret not in out
    before = len(server.store.list("receivers")) + len(server.store.list("subscriptions"))
    assert before == 0  # read-only


@pytest.mark.parametrize(
    ("profile", "differs"),
    [
        ("singular-resources", {"resource enum"}),
        ("int-ids", {"id types", "document GetWebhookReceiver"}),
        ("header-mutations", {"receiver headers"}),
        ("legacy-token-path", {"token"}),
        ("no-introspection", {"introspection"}),
        ("connection-totalcount", {"totalCount", "document Ping"}),
    ],
)
def test_each_profile_difference_is_named(profiled_emulators, monkeypatch, profile, differs) -> None:
    server = profiled_emulators(profile)
    conn_id = define_ion_connection(monkeypatch, server, "ion_doctor")
    with IonHook(conn_id) as hook:
        found = statuses(run_checks(hook))
    assert {name for name, status in found.items() if status == "differs"} >= differs
    assert "fail" not in found.values()


@dataclass(frozen=True)
class RenamedUriProfile(Profile):
    """An ION whose receivers call the field webhookUrl: a required field the documents cannot adapt."""

    def sdl(self, webhook_sdl: str, domain_sdl: str) -> str:
        return super().sdl(re.sub(r"\bwebhookUri\b", "webhookUrl", webhook_sdl), domain_sdl)


def test_missing_required_field_fails_naming_closest_and_no_secret_anywhere(monkeypatch, capsys) -> None:
    with EmulatorServer(profile=RenamedUriProfile("renamed-uri", "webhookUrl")) as server:
        conn_id = define_ion_connection(monkeypatch, server, "ion_doctor")
        with IonHook(conn_id) as hook:
            ok, message = hook.test_connection()
        assert not ok
        assert (
            "CreateWebhookReceiver" in message and "WebhookReceiver.webhookUri" in message and "webhookUrl" in message
        )
        assert main(["doctor", "--conn-id", conn_id, "--json"]) == 1
        out = capsys.readouterr().out
        rows = {r["name"]: r for r in json.loads(out)}
        assert rows["document ListWebhookReceivers"]["mark"] == "✗"
        assert "webhookUrl" in rows["document ListWebhookReceivers"]["detail"]
        assert server.client_secret not in out
        with IonHook(conn_id) as hook, pytest.raises(IonSchemaError, match="closest names there: webhookUrl"):
            hook.list_receivers()


def test_bad_credentials_fail_at_the_token(profiled_emulators, monkeypatch, capsys) -> None:
    server = profiled_emulators("default")
    define_ion_connection(monkeypatch, server, "ion_doctor")
    body = json.loads(__import__("os").environ["AIRFLOW_CONN_ION_DOCTOR"])
    body["password"] = "wrong-secret-value"
    monkeypatch.setenv("AIRFLOW_CONN_ION_DOCTOR", json.dumps(body))
    assert main(["doctor", "--conn-id", "ion_doctor"]) == 1
    out = capsys.readouterr().out
    assert "✗ token" in out and "wrong-secret-value" not in out
    with IonHook("ion_doctor") as hook:
        ok, message = hook.test_connection()
    assert not ok and message.startswith("token:") and "wrong-secret-value" not in message
