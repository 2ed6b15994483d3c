"""A full disk under the inbox of the receiver mounted in a real ``airflow api-server`` (the plugin).

Only the inbox (``AIRFLOW__ION_WEBHOOKS__INBOX_URL``) lives on a small tmpfs the test mounts (root only)
and fills; Airflow's own metadata DB stays in ``AIRFLOW_HOME`` on the ordinary disk. During the outage
signed deliveries get 503 with ``Retry-After`` while Airflow's own API keeps answering; once space is freed
the SAME API server process answers 200 again; every event acknowledged with 200 is in the inbox.

Prints the recovery time (space freed -> first 200) with ``pytest -s``.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from airflow_provider_ion.webhooks.inbox import Inbox
from tests.storage_faults import Load, fill, http_sender, small_tmpfs, stored_keys

from .conftest import SECRET

pytestmark = pytest.mark.e2e


def test_api_server_receiver_answers_503_on_a_full_disk_then_recovers(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    with small_tmpfs(tmp_path / "inbox-fs") as fs:
        inbox_url = f"sqlite:///{fs / 'ion_inbox.db'}"
        env = {
            "AIRFLOW__ION_WEBHOOKS__INBOX_URL": inbox_url,
            "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
            "AIRFLOW_VAR_ION_WEBHOOK_SECRET_FAULTS": SECRET,
        }
        with AirflowStack(home, dags_folder=dags, env=env, components=("api-server",)) as stack:
            assert not str(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).startswith(f"sqlite:///{fs}")
            api_server = stack.procs["api-server"]
            with Load(http_sender(stack.base_url, SECRET)) as load:
                load.wait(lambda: len(load.acked) >= 20, 30, "no deliveries before the fault")
                filler = fill(fs)
                full_at = time.monotonic()
                load.wait(lambda: load.refusals_since(full_at) >= 5, 30, "a full disk never answered 503")
                # Airflow itself is not on the full file system: its API keeps answering during the outage.
                health = httpx.get(f"{stack.base_url}/api/v2/monitor/health", timeout=10)
                assert health.status_code == 200, health.text
                filler.unlink()
                freed_at = time.monotonic()
                load.wait(lambda: load.first_ok_after(freed_at) is not None, 30, "no 200 after freeing space")
                recovered_at = load.first_ok_after(freed_at)
                load.wait(lambda: len([x for x in load.ok_times if x > freed_at]) >= 20, 30, "no 200s after")
            assert not load.unexpected, load.unexpected
            assert api_server.poll() is None and stack.procs["api-server"] is api_server, "API server restarted"
            assert recovered_at is not None
            first_refusal = min(x for x in load.refused_times if x >= full_at)
            print(
                f"\n[faults] api-server sqlite disk full: first 503 {first_refusal - full_at:.3f}s after filling; "
                f"{load.refusals_since(full_at)} answered 503; first 200 {recovered_at - freed_at:.3f}s after "
                f"freeing space; {len(load.acked)} acknowledged"
            )
        with Inbox(inbox_url) as inbox:
            missing = load.acked - stored_keys(inbox)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
