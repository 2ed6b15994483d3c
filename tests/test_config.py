"""One settings module: every component reads ``[ion_webhooks]`` the same way (issue: inbox read four ways)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_ion import config
from airflow_provider_ion.get_provider_info import get_provider_info


@pytest.fixture
def only_documented_inbox_var(monkeypatch, tmp_path):
    """Only ``AIRFLOW__ION_WEBHOOKS__INBOX_URL`` is set: no private alias, no AIRFLOW_HOME default file."""
    url = f"sqlite:///{tmp_path / 'configured.db'}"
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", url)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRFLOW_ION_INBOX_URL", raising=False)
    return url


def test_every_component_uses_the_documented_variable(only_documented_inbox_var):
    from airflow_provider_ion.operators.audit import IonWebhookAuditOperator
    from airflow_provider_ion.triggers._reader import resolve_inbox_url
    from airflow_provider_ion.webhooks.app import ReceiverSettings
    from airflow_provider_ion.webhooks.inbox import Inbox

    url = only_documented_inbox_var
    assert ReceiverSettings.from_airflow_config().inbox_url == url
    assert resolve_inbox_url() == url
    assert IonWebhookAuditOperator(task_id="audit", expected=[])._inbox_url() == url
    inbox = Inbox.from_url()
    try:
        assert inbox.safe_url == url
    finally:
        inbox.close()


def test_inbox_cli_uses_the_documented_variable(only_documented_inbox_var, tmp_path):
    from airflow_provider_ion.webhooks.inbox import Inbox

    inbox = Inbox(only_documented_inbox_var)
    inbox.append("factory", 7, b'{"event_id": 7, "resource": "RUNS"}')
    inbox.close()
    out = subprocess.run(
        [sys.executable, "-m", "airflow_provider_ion.cli", "inbox", "stats"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "factory" in out


def test_every_option_is_declared_for_airflow_config_list():
    declared = get_provider_info()["config"][config.SECTION]["options"]
    assert set(declared) == set(config.OPTIONS)
    for name, option in declared.items():
        assert option["description"] and option["type"] in {"string", "integer", "float", "boolean"}, name


def test_unknown_option_and_bad_values_name_the_option(monkeypatch):
    with pytest.raises(KeyError, match="inbox_ulr"):
        config.get("inbox_ulr")
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__POLL_INTERVAL", "fast")
    with pytest.raises(ValueError, match=r"poll_interval must be a number, got 'fast'"):
        config.get_float("poll_interval")
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__FREEZE_GC_AT_STARTUP", "maybe")
    with pytest.raises(ValueError, match="freeze_gc_at_startup must be true or false"):
        config.get_bool("freeze_gc_at_startup")


def test_defaults_when_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__ION_WEBHOOKS__INBOX_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert config.inbox_url() == f"sqlite:///{tmp_path / 'ion_inbox.db'}"
    assert config.inbox_url("sqlite:////explicit.db") == "sqlite:////explicit.db"
    assert config.get_float("poll_interval") == 0.2
    assert config.get_list("required_fields") == ("event_id", "resource")


def test_an_option_in_airflow_config_not_in_the_environment_is_read(monkeypatch):
    """airflow.cfg counts, not only AIRFLOW__ION_WEBHOOKS__* (Airflow 3.1 has no ``airflow.sdk.conf``)."""
    try:
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf

    monkeypatch.delenv("AIRFLOW__ION_WEBHOOKS__POLL_INTERVAL", raising=False)
    if not conf.has_section(config.SECTION):
        conf.add_section(config.SECTION)
    conf.set(config.SECTION, "poll_interval", "0.7")
    try:
        assert config.get_float("poll_interval") == 0.7
    finally:
        conf.remove_option(config.SECTION, "poll_interval")
