"""Making ION changes by hand: ``GET /_emulator/`` (the index), ``/_emulator/objects/...``,
``/_emulator/events`` and ``airflow-ion emulator create|update|delete|get|list|events``, on a real emulator."""

from __future__ import annotations

import json

import httpx
import pytest

from airflow_provider_ion.cli import main
from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS


def _cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, object]:
    code = main(["emulator", *args, "--url", url])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


def test_index_lists_every_control_route_with_what_it_does(emulator) -> None:
    index = httpx.get(f"{emulator.base_url}/_emulator/").json()
    routes = {r["path"]: r for r in index["routes"]}
    control = [p for r in emulator.app.routes if (p := getattr(r, "path", "")).startswith("/_emulator/")]
    assert set(routes) == set(control)
    assert all(r["what"] and r["methods"] for r in routes.values()), routes
    assert routes["/_emulator/objects/{kind}/{id}"]["methods"] == ["DELETE", "GET", "PATCH"]
    assert {k["kind"] for k in index["kinds"]} == {
        "run", "issue", "purchase-order", "part-inventory", "run-step-field"
    }  # fmt: skip
    assert httpx.get(f"{emulator.base_url}/_emulator").json() == index


def test_create_update_delete_fire_the_webhooks_ion_would(emulator) -> None:
    """Each change through the control API fires <RESOURCE>/<ACTION> to a subscribed receiver."""
    receiver = emulator.store.create_receiver({"name": "r", "webhookUri": "http://127.0.0.1:9/hook"})
    for action in ("CREATE", "UPDATE", "DELETE"):
        emulator.store.create_subscription({"receiverId": receiver["id"], "resource": "RUNS", "action": action})
    base = f"{emulator.base_url}/_emulator/objects"
    run = httpx.post(f"{base}/run", json={"title": "Run 1", "workcenter": "WC-1"})
    assert run.status_code == 201 and run.json()["workcenter"] == "WC-1"
    run_id = run.json()["id"]
    changed = httpx.patch(f"{base}/runs/{run_id}", json={"status": "IN_PROGRESS"}).json()
    assert changed["status"] == "IN_PROGRESS" and changed["_etag"] != run.json()["_etag"]
    assert httpx.get(f"{base}/Run/{run_id}").json() == changed
    assert httpx.delete(f"{base}/run/{run_id}").json()["id"] == run_id
    assert httpx.get(f"{base}/run/{run_id}").status_code == 404
    events = httpx.get(f"{emulator.base_url}/_emulator/events").json()["events"]
    assert [(e["resource"], e["action"]) for e in events] == [
        ("RUNS", "CREATE"),
        ("RUNS", "UPDATE"),
        ("RUNS", "DELETE"),
    ]
    assert events[1]["payload"]["data"]["status"] == "IN_PROGRESS"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/objects/rocket", {"title": "x"}, 404, "unknown kind 'rocket'; one of: run, issue"),
        ("POST", "/objects/issue", {"title": "x", "runId": 99}, 404, "Run 99 not found"),
        ("POST", "/objects/issue", {"nope": 1}, 400, "nope"),
        ("POST", "/objects/issue", [1], 400, "body must be a JSON object"),
        ("PATCH", "/objects/run/1", {}, 404, "Run 1 not found"),
        ("GET", "/events?limit=0", None, 400, "limit must be 1-1000"),
    ],
)
def test_bad_requests_say_what_was_wrong(emulator, method, path, body, status, message) -> None:
    response = httpx.request(method, f"{emulator.base_url}/_emulator{path}", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_cli_makes_each_use_case_object(emulator, capsys) -> None:
    url = emulator.base_url
    code, run = _cli(capsys, url, "create", "run", "--title", "Run 1", "--workcenter", "WC-1")
    assert code == 0 and run["workcenter"] == "WC-1"
    # A run started at a workcenter; a run with a problem; a purchase order placed; a part received;
    # a value entered in a field.
    assert _cli(capsys, url, "update", "run", str(run["id"]), "--status", "IN_PROGRESS")[1]["status"] == "IN_PROGRESS"
    issue = _cli(capsys, url, "create", "issue", "--title", "Torque", "--run-id", str(run["id"]))[1]
    assert issue["runId"] == run["id"]
    order = _cli(
        capsys, url, "create", "purchase-order", "--supplier", "Acme", "--status", "PLACED", "--total-cost", "12.5"
    )[1]
    assert order["totalCost"] == 12.5
    part = _cli(capsys, url, "create", "part-inventory", "--part-id", "7", "--purchase-order-id", str(order["id"]))[1]
    assert part["purchaseOrderId"] == order["id"] and part["quantity"] == 1.0
    field = _cli(capsys, url, "create", "run-step-field", "--run-id", str(run["id"]), "--name", "torque")[1]
    assert _cli(capsys, url, "update", "run-step-field", str(field["id"]), "--value", "12.5")[1]["value"] == "12.5"
    assert [r["id"] for r in _cli(capsys, url, "list", "issue")[1]["objects"]] == [issue["id"]]
    assert _cli(capsys, url, "delete", "issue", str(issue["id"]))[0] == 0
    assert [c["resource"] for c in emulator.changes] == [
        "RUNS", "RUNS", "ISSUES", "PURCHASE_ORDERS", "PART_INVENTORIES", "RUN_STEPS", "RUN_STEPS", "ISSUES"
    ]  # fmt: skip
    assert [c["action"] for c in emulator.changes] == [
        "CREATE", "UPDATE", "CREATE", "CREATE", "CREATE", "CREATE", "UPDATE", "DELETE"
    ]  # fmt: skip


def test_cli_errors_are_one_line_and_exit_1(emulator, capsys, monkeypatch) -> None:
    code, err = _cli(capsys, emulator.base_url, "create", "issue", "--title", "x", "--run-id", "41")
    assert code == 1 and err.strip() == "airflow-ion emulator create: Run 41 not found"
    code, err = _cli(capsys, "http://127.0.0.1:9", "list", "run")
    assert code == 1 and "no emulator at http://127.0.0.1:9" in err
    monkeypatch.setenv("ION_EMULATOR_URL", emulator.base_url)
    assert main(["emulator", "events", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"events": []}


def test_every_kind_has_cli_commands() -> None:
    from airflow_provider_ion.testing.emulator.client_cli import cli_name, find_kind

    for kind in DOMAIN_KINDS.values():
        assert find_kind(cli_name(kind)) is kind and find_kind(kind.table) is kind
