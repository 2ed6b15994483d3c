"""The webhook audit, each case run in a real DAG run (dag.test()) against the ION emulator over HTTP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_ion.operators.audit import IonWebhookAuditOperator
from airflow_provider_ion.operators.audit_checks import (
    FINDING_CODES,
    AuditSnapshot,
    audit_findings,
    format_findings_table,
    normalize_expected,
)
from tests.dag_runner import DagRunResult, run_operator

URI = "https://airflow.example.com/ion-webhooks/v1/receivers/"


# --- helpers ---------------------------------------------------------------------------------------
def receiver(emulator, name: str, *, active: bool = True, uri: str | None = None) -> dict[str, Any]:
    return emulator.store.create_receiver({"name": name, "webhookUri": uri or URI + name, "active": active})


def subscribe(emulator, rec: dict[str, Any], pair: str, *, active: bool = True) -> dict[str, Any]:
    resource, action = pair.split("/")
    values = {"receiverId": rec["id"], "resource": resource, "action": action, "active": active}
    return emulator.store.create_subscription(values)


def age_event(emulator, event: dict[str, Any], hours: float) -> None:
    """Backdate a seeded event (the emulator stamps createdAt itself); test-only reach into the store."""
    stamp = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
    with emulator.store.bulk() as store:
        store._tables["events"][event["id"]]["createdAt"] = stamp


def sent(emulator) -> int:
    """GraphQL requests the emulator answered, less the 401s (a token cached by an earlier test is resent)."""
    stats = emulator.stats
    return stats["graphql_requests"] - stats["unauthorized"]


def audit(**kwargs: Any) -> DagRunResult:
    kwargs.setdefault("check_inbox", False)  # the session's AIRFLOW_HOME may hold other tests' inbox
    return run_operator(IonWebhookAuditOperator, task_id="audit", **kwargs)


def report_of(result: DagRunResult) -> dict[str, Any]:
    """The report pushed under XCom key 'report' (present even when the task failed)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == result.dag_id,
                XComModel.run_id == result.run_id,
                XComModel.task_id == "audit",
                XComModel.key == "report",
            )
        ).one()
        return XComModel.deserialize_value(row)


def by_code(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["code"], []).append(finding)
    return found


def seed_fixable_drift(emulator) -> list[dict[str, Any]]:
    """Drift that fix=True can repair entirely; returns the expected spec."""
    factory = receiver(emulator, "factory")
    subscribe(emulator, factory, "RUNS/UPDATE", active=False)  # subscription_disabled
    subscribe(emulator, factory, "ISSUES/CREATE")
    subscribe(emulator, factory, "PARTS/UPDATE")  # subscription_unexpected (prune)
    subscribe(emulator, factory, "ISSUES/CREATE")  # duplicate_subscription
    sleepy = receiver(emulator, "sleepy", active=False)  # receiver_disabled
    subscribe(emulator, sleepy, "RUNS/CREATE")  # active_subscription_on_disabled_receiver
    return [
        {
            "receiver": {"name": "factory", "webhook_uri": URI + "factory"},
            "subscriptions": ["RUNS/CREATE", "RUNS/UPDATE", "ISSUES/CREATE"],  # RUNS/CREATE: subscription_missing
            "prune": True,
        },
        {"receiver": "sleepy", "subscriptions": ["RUNS/CREATE"]},
        {"receiver": {"name": "new-line", "webhook_uri": URI + "new-line"}, "subscriptions": ["RECEIPTS/CREATE"]},
    ]


# --- pure parts (no DAG run) -----------------------------------------------------------------------
def test_operator_module_import_is_light() -> None:
    code = (
        "import sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_ion.operators.audit\n"
        "new = set(sys.modules) - before\n"
        "heavy = sorted(m for m in new if m.split('.')[0] in ('gql', 'graphql', 'httpx', 'sqlalchemy')\n"
        "               or m.startswith(('airflow_provider_ion.webhooks.inbox', 'airflow_provider_ion.hooks.ion')))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_malformed_spec_fails_at_parse_time() -> None:
    with pytest.raises(ValueError, match="receiver"):
        IonWebhookAuditOperator(task_id="a", expected={"subscriptions": ["RUNS/CREATE"]})
    with pytest.raises(ValueError, match="RESOURCE/ACTION"):
        IonWebhookAuditOperator(task_id="a", expected={"receiver": "x", "subscriptions": ["RUNS"]})
    with pytest.raises(ValueError, match="fail_on"):
        IonWebhookAuditOperator(task_id="a", fail_on="sometimes")
    assert normalize_expected('{"receiver": "x", "subscriptions": [["RUNS", "CREATE"]]}')[0].subscriptions == (
        ("RUNS", "CREATE"),
    )


def test_signature_rejections_and_lag_from_inbox_figures() -> None:
    """The inbox parts of the checks, on figures (rejections are not persisted by the inbox yet)."""
    snapshot = AuditSnapshot(
        receivers=[],
        subscriptions=[],
        failing_events=[],
        inbox={"checked": True, "consumers": {"fast": {"lag": 3}, "slow": {"lag": 50, "cursor": 1}}},
        rejections={"factory": {"signature mismatch": 4, "body too large": 1}, "other": {"body too large": 2}},
    )
    found = audit_findings(snapshot, max_consumer_lag=10)
    assert [(f.code, f.object["name"]) for f in found] == [
        ("consumer_lagging", "slow"),
        ("signature_rejections", "factory"),
    ]
    assert found[1].details["reasons"]["signature mismatch"] == 4
    assert "consumer_lagging" in format_findings_table([f.to_dict() for f in found])
    assert all(f.code in FINDING_CODES for f in found)


# --- DAG runs against the emulator -----------------------------------------------------------------
pytestmark_db = pytest.mark.usefixtures("airflow_db", "ion_default_conn")


@pytestmark_db
def test_clean_setup_has_no_findings_and_costs_four_requests(emulator) -> None:
    factory = receiver(emulator, "factory")
    for pair in ("RUNS/CREATE", "ISSUES/CREATE"):
        ok = subscribe(emulator, factory, pair)
    emulator.store.add_event(ok["id"], status="SUCCESS")
    emulator.store.add_event(ok["id"], status="PENDING")
    expected = {"receiver": {"name": "factory", "webhook_uri": URI + "factory"}, "subscriptions": ["RUNS/CREATE"]}
    before = sent(emulator)
    result = audit(expected=expected)
    assert result["audit"].state == "success"
    report = result["audit"].xcom
    assert report == report_of(result)
    assert report["findings"] == [] and report["summary"] == {"error": 0, "warning": 0, "info": 0}
    assert report["counts"] == {
        "receivers": 1,
        "subscriptions": 2,
        "active_subscriptions": 2,
        "events": 2,
        "failing_events": 0,
    }
    # the connection's one schema introspection (per process), then receivers, subscriptions,
    # events-in-window count, failing events: one page each
    assert report["requests"] == 1 + 4 == sent(emulator) - before
    assert report["inbox"] == {"checked": False, "reason": "disabled"}


@pytestmark_db
def test_each_kind_of_drift_is_found(emulator, tmp_path) -> None:
    spec = seed_fixable_drift(emulator)
    spec.append({"receiver": "twin", "subscriptions": []})
    spec.append({"receiver": "gone-by-name", "subscriptions": ["RUNS/CREATE"]})
    spec.append({"receiver": {"name": "dupes", "webhook_uri": URI + "moved"}, "subscriptions": []})
    receiver(emulator, "twin"), receiver(emulator, "twin")
    dupes = receiver(emulator, "dupes")
    d1, d2 = subscribe(emulator, dupes, "RUNS/CREATE"), subscribe(emulator, dupes, "RUNS/CREATE")
    subscribe(emulator, dupes, "RUNS/CREATE", active=False)
    receiver(emulator, "idle")
    plain = receiver(emulator, "plain", uri="http://airflow.example.com/hook")
    local = receiver(emulator, "local", uri="http://127.0.0.1:8080/hook")
    p1, _ = subscribe(emulator, plain, "RUNS/CREATE"), subscribe(emulator, local, "RUNS/CREATE")
    for status in ("FAILED", "FAILED", "RETRYING", "SUCCESS", "PENDING"):
        emulator.store.add_event(d1["id"], status=status, last_response_code=500, last_error="HTTP 500")
    emulator.store.add_event(d2["id"], status="FAILED", last_response_code=401)
    age_event(emulator, emulator.store.add_event(d1["id"], status="FAILED"), hours=30)  # outside the window
    for _ in range(2):
        emulator.store.add_event(p1["id"], status="RETRYING")
    from airflow_provider_ion.webhooks.inbox import Inbox

    inbox_url = f"sqlite:///{tmp_path / 'inbox.db'}"
    with Inbox(inbox_url) as inbox:
        for n in range(5):
            inbox.append("factory", n, {"event_id": n, "resource": "RUNS", "action": "CREATE"})
        inbox.set_cursor("slow-consumer", 1)
        inbox.set_cursor("fast-consumer", 5)
        # What the receiver writes when it refuses deliveries (it batches them in memory first).
        inbox.add_rejections({("factory", "signature mismatch"): 4, ("factory", "body too large"): 1})

    result = audit(expected=spec, fail_on="never", check_inbox=True, inbox_url=inbox_url, max_consumer_lag=2)
    assert result["audit"].state == "success"
    report = result["audit"].xcom
    found = by_code(report)
    print(format_findings_table(report["findings"]))

    def one(code: str) -> dict[str, Any]:
        assert len(found.get(code, [])) == 1, (code, found.get(code))
        return found[code][0]

    assert one("subscription_missing")["object"]["resource"] == "RUNS" and one("subscription_missing")["fixable"]
    assert one("subscription_disabled")["object"]["action"] == "UPDATE"
    assert one("subscription_unexpected")["object"]["resource"] == "PARTS"
    assert one("receiver_disabled")["object"]["name"] == "sleepy"
    assert one("active_subscription_on_disabled_receiver")["object"]["name"] == "sleepy"
    missing = {f["object"]["name"]: f for f in found["receiver_missing"]}
    assert missing["new-line"]["fixable"] and not missing["gone-by-name"]["fixable"]
    assert one("duplicate_receiver_name")["object"]["ids"] and one("duplicate_receiver_name")["severity"] == "error"
    mismatch = one("receiver_uri_mismatch")
    assert mismatch["object"]["expected"] == URI + "moved" and not mismatch["fixable"]
    dups = {f["object"]["receiver_name"]: f for f in found["duplicate_subscription"]}
    assert set(dups) == {"factory", "dupes"}
    assert dups["dupes"]["object"]["ids"] == [str(d1["id"]), str(d2["id"])]
    assert dups["dupes"]["details"] == {"keep": str(d1["id"]), "disable": [str(d2["id"])]}
    idle = {f["object"]["name"] for f in found["receiver_without_subscriptions"]}
    assert idle == {"idle", "twin"}
    https = {f["object"]["name"]: f["severity"] for f in found["receiver_uri_not_https"]}
    assert https == {"plain": "error", "local": "info"}
    failures = {f["object"]["name"]: f for f in found["delivery_failures"]}
    assert failures["dupes"]["severity"] == "error"
    assert failures["dupes"]["details"]["by_status"] == {"FAILED": 3, "RETRYING": 1}  # the 30 h old one is out
    assert failures["dupes"]["details"]["by_response_code"] == {"500": 3, "401": 1}
    assert failures["plain"]["severity"] == "warning" and failures["plain"]["details"]["total"] == 2
    lag = one("consumer_lagging")
    assert lag["object"]["name"] == "slow-consumer" and lag["details"]["lag"] == 4
    rejected = one("signature_rejections")
    assert rejected["object"]["name"] == "factory"
    assert rejected["details"]["reasons"] == {"signature mismatch": 4, "body too large": 1}
    assert report["inbox"]["checked"] is True
    assert set(found) <= set(FINDING_CODES)
    assert report["summary"]["error"] == sum(f["severity"] == "error" for f in report["findings"])
    assert report["counts"]["failing_events"] == 6 and report["counts"]["events"] == 8
    # severity order: errors first
    order = [f["severity"] for f in report["findings"]]
    assert order == sorted(order, key=["error", "warning", "info"].index)


@pytestmark_db
def test_fix_repairs_the_drift_and_the_next_audit_is_clean(emulator) -> None:
    spec = seed_fixable_drift(emulator)
    first = audit(expected=spec, fix=True)
    assert first["audit"].state == "success", "every finding was fixable"
    report = first["audit"].xcom
    assert report["findings"] and all(f["fixed"] for f in report["findings"])
    assert report["summary"] == {"error": 0, "warning": 0, "info": 0}
    changes = {(c["change"], c.get("resource"), c.get("action"), c.get("reason")) for c in report["fixed"]}
    assert ("created", "RUNS", "CREATE", None) in changes
    assert ("enabled", "RUNS", "UPDATE", None) in changes
    assert ("disabled", "PARTS", "UPDATE", None) in changes
    assert ("disabled", "ISSUES", "CREATE", "duplicate") in changes
    assert ("created", "RECEIPTS", "CREATE", None) in changes
    assert report["requests"] > report["read_requests"] == 1 + 4  # + the schema introspection

    names = {r["name"]: r for r in emulator.store.list("receivers")}
    assert names["sleepy"]["active"] and "new-line" in names
    issues = emulator.store.list("subscriptions", {"resource": {"eq": "ISSUES"}})
    assert [s["active"] for s in issues] == [True, False], "the oldest duplicate is kept"

    second = audit(expected=spec)
    assert second["audit"].state == "success"
    assert second["audit"].xcom["findings"] == [] and second["audit"].xcom["fixed"] == []


@pytestmark_db
def test_fail_on(emulator) -> None:
    rec = receiver(emulator, "dupes")
    subscribe(emulator, rec, "RUNS/CREATE"), subscribe(emulator, rec, "RUNS/CREATE")  # a warning only
    assert audit(fail_on="error")["audit"].state == "success"
    failed = audit(fail_on="warning")
    assert failed["audit"].state == "failed" and failed["audit"].xcom is None
    assert report_of(failed)["summary"] == {"error": 0, "warning": 1, "info": 0}, "report pushed before failing"

    expected = {"receiver": "dupes", "subscriptions": ["ISSUES/CREATE"]}  # an error: missing subscription
    errored = audit(expected=expected)
    assert errored["audit"].state == "failed" and report_of(errored)["summary"]["error"] == 1
    assert audit(expected=expected, fail_on="never")["audit"].state == "success"


@pytestmark_db
def test_report_holds_no_secret(emulator) -> None:
    spec = seed_fixable_drift(emulator)
    spec[0]["receiver"]["shared_secret"] = "spec-secret-0123456789abcdefghij"
    spec[0]["receiver"]["if_exists"] = "update"
    reports = [report_of(audit(expected=spec, fix=True)), report_of(audit(expected=spec, fail_on="never"))]
    secrets = [r["sharedSecret"] for r in emulator.store.list("receivers")]
    assert len(secrets) == 3 and "spec-secret-0123456789abcdefghij" in secrets
    text = json.dumps(reports)
    assert "sharedSecret" not in text and "shared_secret" not in text
    assert [s for s in secrets if s in text] == []


@pytestmark_db
def test_scale_5000_subscriptions_50000_events_bounded_requests(emulator) -> None:
    receivers, per_receiver, events = 50, 100, 50_000
    pairs = [(r, a) for r in ("RUNS", "RUN_STEPS", "PARTS", "ISSUES", "RECEIPTS") for a in ("CREATE", "UPDATE")]
    started = time.monotonic()
    with emulator.store.bulk() as store:
        subs = []
        for n in range(receivers):
            rec = store.create_receiver({"name": f"line-{n}", "webhookUri": f"{URI}line-{n}"})
            for k in range(per_receiver):
                resource, action = pairs[k % len(pairs)]
                # 10 distinct pairs per receiver: the rest are inactive copies (no duplicates findings)
                values = {"receiverId": rec["id"], "resource": resource, "action": action, "active": k < len(pairs)}
                subs.append(store.create_subscription(values))
        statuses = ["SUCCESS"] * 18 + ["FAILED", "RETRYING"]
        seeded = [store.add_event(subs[i % len(subs)]["id"], status=statuses[i % 20]) for i in range(events)]
        old = datetime.now(UTC) - timedelta(hours=48)
        for event in seeded[: events // 2]:  # half of the trail is older than the window
            store._tables["events"][event["id"]]["createdAt"] = old.isoformat()
    seed_seconds = time.monotonic() - started
    in_window = events - events // 2
    failing_in_window = sum(1 for e in seeded[events // 2 :] if e["status"] in ("FAILED", "RETRYING"))

    before = sent(emulator)
    started = time.monotonic()
    result = audit(fail_on="never")
    seconds = time.monotonic() - started
    report = result["audit"].xcom
    requests = sent(emulator) - before
    bound = (  # + 1: the connection's schema introspection (once per process)
        1
        + math.ceil(receivers / 500)
        + math.ceil(receivers * per_receiver / 500)
        + 1
        + math.ceil(failing_in_window / 500)
    )
    print(
        f"\nscale: {receivers * per_receiver} subscriptions, {events} events ({in_window} in window, "
        f"{failing_in_window} failing): {requests} GraphQL requests (bound {bound}), audit {report['seconds']:.2f} s "
        f"in the task, {seconds:.2f} s DAG run, seeding {seed_seconds:.2f} s"
    )
    assert result["audit"].state == "success"
    assert report["counts"]["subscriptions"] == 5000 and report["counts"]["events"] == in_window
    assert report["counts"]["failing_events"] == failing_in_window
    assert requests == report["requests"] <= bound
    assert {f["code"] for f in report["findings"]} == {"delivery_failures"}
    assert len(report["findings"]) == receivers


@pytestmark_db
@pytest.mark.parametrize("profile", ["singular-resources", "int-ids", "no-introspection", "connection-totalcount"])
def test_audit_on_profiles(profile, profiled_emulators, monkeypatch) -> None:
    from tests.conftest import define_ion_connection

    server = profiled_emulators(profile)
    define_ion_connection(monkeypatch, server)
    spelled = "RUN" if profile == "singular-resources" else "RUNS"
    factory = server.store.create_receiver({"name": "factory", "webhookUri": URI + "factory"})
    ok = server.store.create_subscription({"receiverId": factory["id"], "resource": spelled, "action": "CREATE"})
    server.store.add_event(ok["id"], status="SUCCESS")
    server.store.add_event(ok["id"], status="FAILED")
    expected = {"receiver": {"name": "factory", "webhook_uri": URI + "factory"}, "subscriptions": ["RUNS/CREATE"]}
    result = audit(expected=expected, fail_on="never")
    assert result["audit"].state == "success"
    report = result["audit"].xcom
    assert [f["code"] for f in report["findings"]] == ["delivery_failures"]
    assert report["counts"]["events"] == 2 and report["counts"]["failing_events"] == 1
