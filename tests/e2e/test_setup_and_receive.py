"""End to end in a real Airflow: operators create ION webhooks, the receiver in the API server verifies
deliveries with the secret the operator stored, and the secret never leaks into Airflow's records.

One Airflow (api-server, scheduler, dag-processor, triggerer; SQLite) for the module; the ION emulator
runs in the test process on 127.0.0.1.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import httpx
import pytest

from airflow_provider_ion.testing.local_airflow import AirflowStack
from airflow_provider_ion.webhooks.inbox import Inbox
from airflow_provider_ion.webhooks.signature import sign

pytestmark = pytest.mark.e2e

USER_SECRET = "user-chosen-Secret-for-qa-receiver-0123456789"

SETUP_DAG = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG
    from airflow_provider_ion.operators.webhooks import (
        IonCreateWebhookReceiverOperator,
        IonCreateWebhookSubscriptionOperator,
        IonEnsureWebhooksOperator,
    )

    with DAG("e2e_setup", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
        receiver = IonCreateWebhookReceiverOperator(
            task_id="create_receiver",
            name="factory",
            webhook_uri="{{ conn.ion_default.extra_dejson.receiver_base }}/ion-webhooks/v1/receivers/factory",
        )
        subscribe = IonCreateWebhookSubscriptionOperator(
            task_id="subscribe", receiver="{{ ti.xcom_pull('create_receiver')['id'] }}",
            resource="RUNS", action="CREATE",
        )
        qa = IonEnsureWebhooksOperator(
            task_id="ensure_qa",
            receiver={"name": "qa", "webhook_uri": "https://qa.example.com/hooks",
                      "shared_secret": "{{ var.value.qa_receiver_secret }}"},
            subscriptions=["ISSUES/CREATE"],
        )
        receiver >> subscribe >> qa
    """
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, emulator_server) -> AirflowStack:
    home = tmp_path_factory.mktemp("airflow")
    dags = home / "dags"
    dags.mkdir()
    (dags / "e2e_setup.py").write_text(SETUP_DAG)
    inbox_url = f"sqlite:///{home}/ion_inbox.db"
    stack = AirflowStack(home, dags_folder=dags, env={})
    conn = {
        "conn_type": "ion",
        "login": emulator_server.client_id,
        "password": emulator_server.client_secret,
        "host": emulator_server.base_url,
        "extra": {"token_url": emulator_server.token_url, "receiver_base": stack.base_url},
    }
    stack.env.update(
        {
            "AIRFLOW_CONN_ION_DEFAULT": json.dumps(conn),
            "AIRFLOW_VAR_QA_RECEIVER_SECRET": USER_SECRET,
            "AIRFLOW__ION_WEBHOOKS__INBOX_URL": inbox_url,
        }
    )
    emulator_server.reset()
    with stack:
        stack.inbox_url = inbox_url  # type: ignore[attr-defined]
        yield stack


@pytest.fixture(scope="module")
def setup_run(stack) -> str:
    run_id = stack.trigger("e2e_setup")
    run = stack.wait_for_run("e2e_setup", run_id, timeout=180)
    assert run["state"] == "success", stack.task_states("e2e_setup", run_id)
    return run_id


def test_setup_dag_creates_receiver_and_subscription(stack, setup_run, emulator_server) -> None:
    receivers = {r["name"]: r for r in emulator_server.store.list("receivers")}
    assert set(receivers) == {"factory", "qa"}
    assert receivers["factory"]["webhookUri"] == f"{stack.base_url}/ion-webhooks/v1/receivers/factory"
    assert receivers["qa"]["sharedSecret"] == USER_SECRET
    subs = {(s["receiverId"], s["resource"], s["action"]) for s in emulator_server.store.list("subscriptions")}
    assert subs == {(receivers["factory"]["id"], "RUNS", "CREATE"), (receivers["qa"]["id"], "ISSUES", "CREATE")}
    xcom = stack.xcom("e2e_setup", setup_run, "create_receiver")
    assert xcom["name"] == "factory" and "sharedSecret" not in xcom


def test_receiver_in_the_api_server_verifies_with_the_stored_secret(stack, setup_run, emulator_server) -> None:
    secret = next(r["sharedSecret"] for r in emulator_server.store.list("receivers") if r["name"] == "factory")
    url = f"{stack.base_url}/ion-webhooks/v1/receivers/factory"
    body = json.dumps({"event_id": 9001, "subscription_id": 1, "resource": "RUNS", "action": "CREATE",
                       "data": {"id": 1}}).encode()  # fmt: skip
    headers = {"content-type": "application/json"}
    forged = httpx.post(url, content=body, headers={**headers, "x-ion-signature": sign(body, "guess")}, timeout=30)
    assert forged.status_code == 401
    ok = httpx.post(url, content=body, headers={**headers, "x-ion-signature": sign(body, secret)}, timeout=30)
    assert ok.status_code == 200, ok.text
    again = httpx.post(url, content=body, headers={**headers, "x-ion-signature": sign(body, secret)}, timeout=30)
    assert again.json() == {"status": "duplicate"}
    with Inbox(stack.inbox_url) as inbox:
        stored = inbox.get("factory", 9001)
        assert stored is not None and stored.payload["data"] == {"id": 1}
        assert inbox.stats()["total"] == 1
    health = httpx.get(f"{stack.base_url}/ion-webhooks/health", timeout=10)
    assert health.json() == {"status": "healthy", "inbox": "ok"}
    # Not a webhook route: it asks Airflow's auth manager, as Airflow's own API does (plugin apps get
    # no authentication for free). This stack runs SimpleAuthManager with all users admin (a middleware
    # adds an admin token to requests without one), so no header passes, as on Airflow's own API; an
    # invalid token is refused: 401 from ours, where Airflow's own API answers 403.
    stats_url = f"{stack.base_url}/ion-webhooks/v1/stats"
    assert httpx.get(stats_url, timeout=10).status_code == httpx.get(f"{stack.base_url}/api/v2/dags").status_code
    bad = {"authorization": "Bearer not-a-jwt"}
    assert httpx.get(stats_url, headers=bad, timeout=10).status_code == 401
    assert httpx.get(f"{stack.base_url}/api/v2/dags", headers=bad, timeout=10).status_code == 403
    stats = httpx.get(stats_url, timeout=10).json()["receiver"]
    assert stats["accepted"] == 1 and stats["duplicate"] == 1 and stats["rejected"] == {"signature mismatch": 1}


def test_secrets_never_reach_logs_xcom_rendered_fields_or_the_database(stack, setup_run, emulator_server) -> None:
    secrets = [r["sharedSecret"] for r in emulator_server.store.list("receivers")]
    assert len(secrets) == 2 and USER_SECRET in secrets
    home = Path(stack.home)
    places: dict[str, str] = {}
    for path in home.rglob("*"):
        if path.is_file() and (path.suffix in (".log", ".json", ".txt") or "logs" in path.parts):
            places[str(path.relative_to(home))] = path.read_text(errors="replace")
    assert any("create_receiver" in name for name in places), "no task log found"
    dump = "\n".join(sqlite3.connect(home / "airflow.db").iterdump())
    places["airflow.db dump"] = dump
    for task_id in ("create_receiver", "subscribe", "ensure_qa"):
        ti = stack.api("GET", f"/dags/e2e_setup/dagRuns/{setup_run}/taskInstances/{task_id}")
        places[f"API task instance {task_id}"] = json.dumps(ti)
        entries = stack.api("GET", f"/dags/e2e_setup/dagRuns/{setup_run}/taskInstances/{task_id}/xcomEntries")
        places[f"API xcom {task_id}"] = json.dumps(entries)
    rendered = stack.api("GET", f"/dags/e2e_setup/dagRuns/{setup_run}/taskInstances/ensure_qa")["rendered_fields"]
    assert "qa" in json.dumps(rendered)  # the field was rendered and stored, with the secret masked
    leaks = [(where, i) for where, text in places.items() for i, s in enumerate(secrets) if s in text]
    assert leaks == [], f"secret found in: {leaks}"
