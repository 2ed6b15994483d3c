"""``airflow-ion receiver serve`` on a host without an Airflow metadata database (issue 13, item 9).

Secrets come from the environment (``AIRFLOW_VAR_ION_WEBHOOK_SECRET_<NAME>``); a look-up of an unknown name
must not create an empty ``airflow.db`` in ``AIRFLOW_HOME`` nor log a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from airflow_provider_ion.webhooks.signature import sign

from .conftest import SECRET
from .receivers import ReceiverProcess


def _post(receiver: ReceiverProcess, name: str, body: bytes, secret: str = SECRET) -> httpx.Response:
    headers = {"content-type": "application/json", "x-ion-signature": sign(body, secret)}
    return httpx.post(receiver.url(name), content=body, headers=headers, timeout=30)


def test_unknown_names_without_an_airflow_db_log_one_line_and_create_no_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inbox_url = f"sqlite:///{tmp_path / 'inbox.db'}"
    with ReceiverProcess(home, inbox_url, {"factory": SECRET}) as receiver:
        for i in range(5):
            body = json.dumps({"event_id": i, "resource": "RUNS"}).encode()
            assert _post(receiver, f"nobody-{i}", body).status_code == 404
        body = json.dumps({"event_id": 1, "resource": "RUNS"}).encode()
        assert _post(receiver, "FACTORY", body).status_code == 200  # the environment Variable still works
        log = receiver.log_text()
    assert not (home / "airflow.db").exists(), "an empty airflow.db was created"
    assert "Traceback" not in log, log[-3000:]
    assert "no such table" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if "No usable Airflow metadata database" in line]
    assert len(lines) == 1, log[-3000:]
    assert SECRET not in log
