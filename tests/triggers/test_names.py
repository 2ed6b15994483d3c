"""A resource or action ION does not know is a WARNING naming it and the closest valid names; RUN == RUNS."""

from __future__ import annotations

import pytest

from airflow_provider_ion.triggers import names
from airflow_provider_ion.triggers.matching import EventFilter
from airflow_provider_ion.webhooks.inbox import Inbox


class Collect:
    """Collects WARNING lines (Airflow's log setup routes stdlib logging past caplog)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, msg: str, *args) -> None:
        self.lines.append(msg % args)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(autouse=True)
def _fresh_cache():
    names._cache.clear()
    yield
    names._cache.clear()


def test_checked_against_ions_enum_through_the_connection(ion_default_conn, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__ION_CONN_ID", ion_default_conn)
    log = Collect()
    assert names.warn_unknown(log, "my_dag", ["ISSUE", "RUNS", "RUNZ"], ["CREATE", "CREATED"]) == 2
    text = log.text
    assert "resource 'RUNZ' is not a value ION knows" in text and "RUNS" in text.split("RUNZ")[1]
    assert "action 'CREATED'" in text and "closest valid: CREATE" in text
    assert "'ISSUE'" not in text  # the singular spelling of ISSUES is not unknown


def test_checked_against_the_inbox_when_ion_cannot_be_reached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__ION_WEBHOOKS__ION_CONN_ID", "none")
    with Inbox(f"sqlite:///{tmp_path}/inbox.db") as inbox:
        log = Collect()
        assert names.warn_unknown(log, "t", ["ISSUE"], None, inbox) == 0  # nothing seen yet: no basis
        inbox.append("factory", "1", {"resource": "ISSUES", "action": "CREATE"}, resource="ISSUES", action="CREATE")
        assert names.warn_unknown(log, "t", ["ISUES", "issue"], ["CREATE"], inbox) == 1
        assert "resource 'ISUES' is not a value the inbox's recent events knows" in log.text
        assert "closest valid: ISSUES" in log.text


def test_either_spelling_matches() -> None:
    event = {"receiver": "factory", "resource": "RUN", "action": "CREATE", "payload": {}}
    assert EventFilter.build(resource="RUNS", action="create").matches(event)
    assert EventFilter.build(resource="run").matches({**event, "resource": "RUNS"})
    assert not EventFilter.build(resource="RUNS").matches({**event, "resource": "ISSUES"})
