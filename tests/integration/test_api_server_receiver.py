"""Deliveries into the receiver mounted in a real ``airflow api-server`` (the plugin), then the inbox.

Only the API server runs (no scheduler or triggerer: nothing here needs them), configured the way a
deployment would be: ``AIRFLOW__ION_WEBHOOKS__*`` and the secret as an Airflow Variable in the
environment.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from airflow_provider_ion.webhooks.inbox import Inbox

from .conftest import SECRET

pytestmark = pytest.mark.e2e


def test_emulator_delivers_into_the_api_server_plugin(ion, subscribe, tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    inbox_url = f"sqlite:///{home / 'ion_inbox.db'}"
    env = {
        "AIRFLOW__ION_WEBHOOKS__INBOX_URL": inbox_url,
        "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
        "AIRFLOW_VAR_ION_WEBHOOK_SECRET_FACTORY": SECRET,
    }
    with AirflowStack(home, dags_folder=dags, env=env, components=("api-server",)) as stack:
        subscribe(f"{stack.base_url}/ion-webhooks/v1/receivers/factory", "RUNS/CREATE", "ISSUES/CREATE")
        ion.add_delivery_fault("duplicate", copies=2, times=None)
        ion.add_delivery_fault("drop", when="after", times=1)
        run = ion.store.create_object("runs", {"title": "R-1"})
        ion.store.create_object("issues", {"title": "I-1", "runId": run["id"]})
        for i in range(3):
            ion.fire("RUNS", "CREATE", {"id": 100 + i})
        assert ion.wait_for_deliveries(60), ion.stats["deliveries"]
        # The stats route asks Airflow's auth manager (all users are admins in this stack: a middleware adds
        # an admin token when a request has none); an invalid token is 401, where Airflow's own API says 403.
        stats_url = f"{stack.base_url}/ion-webhooks/v1/stats"
        stats = httpx.get(stats_url, timeout=10)
        assert stats.status_code == 200 and stats.json()["receiver"]["accepted"] == 5, stats.text
        bad = {"authorization": "Bearer not-a-jwt"}
        assert httpx.get(stats_url, headers=bad, timeout=10).status_code == 401
        assert httpx.get(f"{stack.base_url}/api/v2/dags", headers=bad, timeout=10).status_code == 403

    events = ion.store.list("events")
    assert len(events) == 5 and {e["status"] for e in events} == {"SUCCESS"}, events
    with Inbox(inbox_url) as inbox:
        rows = inbox.latest(50, receiver="factory")
        assert sorted(int(r.event_id) for r in rows) == sorted(e["id"] for e in events)
        assert inbox.stats()["total"] == 5
        issue = next(r for r in rows if r.resource == "ISSUES")
        assert issue.payload["data"]["title"] == "I-1" and issue.action == "CREATE"
