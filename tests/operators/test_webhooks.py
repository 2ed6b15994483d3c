"""Webhook operators, each run in a real DAG run (dag.test()) against the ION emulator over HTTP."""

from __future__ import annotations

import pytest

from airflow_provider_ion.operators.webhooks import (
    IonCreateWebhookReceiverOperator,
    IonCreateWebhookSubscriptionOperator,
    IonDisableWebhookReceiverOperator,
    IonDisableWebhookSubscriptionOperator,
    IonEnableWebhookReceiverOperator,
    IonEnableWebhookSubscriptionOperator,
    IonEnsureWebhooksOperator,
    IonGraphQLOperator,
)
from airflow_provider_ion.webhook_state import check_webhook_uri, secret_variable_key, without_secret
from tests.dag_runner import run_operator

pytestmark = pytest.mark.usefixtures("airflow_db", "ion_default_conn")

URI = "https://airflow.example.com/ion-webhooks/v1/receivers/factory"


def stored_variable(key: str) -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(key, default_var=None)


def create(name: str = "factory", **kwargs):
    return run_operator(
        IonCreateWebhookReceiverOperator, name=name, webhook_uri=kwargs.pop("webhook_uri", URI), **kwargs
    )


def test_create_receiver_returns_it_without_secret_and_stores_the_secret(emulator) -> None:
    result = create()
    assert result.state == "success"
    receiver = result["op"].xcom
    assert receiver["name"] == "factory" and receiver["webhookUri"] == URI and receiver["active"] is True
    assert "sharedSecret" not in receiver
    generated = emulator.store.get("receivers", receiver["id"])["sharedSecret"]
    assert generated and stored_variable(secret_variable_key("factory")) == generated


def test_create_receiver_twice_creates_no_twin(emulator) -> None:
    first = create()["op"].xcom
    second = create()["op"].xcom
    assert first["id"] == second["id"]
    assert len(emulator.store.list("receivers")) == 1


def test_if_exists_update_aligns_fields_and_fail_refuses(emulator) -> None:
    create()
    updated = create(webhook_uri=URI + "-v2", description="new", if_exists="update")["op"].xcom
    assert updated["webhookUri"] == URI + "-v2" and updated["description"] == "new"
    assert create(if_exists="fail").state == "failed"
    assert len(emulator.store.list("receivers")) == 1


def test_user_supplied_secret_is_used_and_stored(emulator) -> None:
    secret = "user-chosen-secret-0123456789abcdef"
    receiver = create(name="own-secret", shared_secret=secret)["op"].xcom
    assert emulator.store.get("receivers", receiver["id"])["sharedSecret"] == secret
    assert stored_variable(secret_variable_key("own-secret")) == secret


# ---- the shared secret: the Variable always holds the secret ION signs with -------------------------
OLD_SECRET = "old-secret-0123456789abcdef0123456789"
NEW_SECRET = "new-secret-0123456789abcdef0123456789"


def test_reuse_with_a_different_secret_is_refused_and_nothing_desyncs(emulator) -> None:
    """Regression: reuse kept ION's old secret but stored the new one, so every delivery got 401."""
    receiver = create(name="rotating", shared_secret=OLD_SECRET)["op"].xcom
    assert create(name="rotating", shared_secret=NEW_SECRET).state == "failed"
    assert emulator.store.get("receivers", receiver["id"])["sharedSecret"] == OLD_SECRET
    assert stored_variable(secret_variable_key("rotating")) == OLD_SECRET


def test_reuse_secret_error_names_the_receiver_and_the_choices(emulator) -> None:
    from airflow_provider_ion.exceptions import IonWebhookStateError
    from airflow_provider_ion.hooks.ion import IonHook
    from airflow_provider_ion.webhook_state import ensure_receiver

    create(name="rotating", shared_secret=OLD_SECRET)
    with IonHook() as hook, pytest.raises(IonWebhookStateError) as caught:
        ensure_receiver(hook, name="rotating", webhook_uri=URI, shared_secret=NEW_SECRET)
    message = str(caught.value)
    assert "'rotating'" in message and "if_exists='update'" in message and "drop shared_secret" in message
    assert NEW_SECRET not in message and OLD_SECRET not in message


def test_reuse_with_the_same_secret_or_none_stores_ions_secret(emulator) -> None:
    receiver = create(name="rotating", shared_secret=OLD_SECRET)["op"].xcom
    emulator.store.update_receiver({"id": receiver["id"], "etag": receiver["_etag"], "active": False})
    assert create(name="rotating", shared_secret=OLD_SECRET).state == "success"  # re-enables it
    assert emulator.store.get("receivers", receiver["id"])["active"] is True
    from airflow.models.variable import Variable

    Variable.delete(secret_variable_key("rotating"))
    assert create(name="rotating").state == "success"  # no secret given: ION's is read back and stored
    assert stored_variable(secret_variable_key("rotating")) == OLD_SECRET


def test_update_rotates_the_secret_in_ion_and_in_the_variable(emulator) -> None:
    receiver = create(name="rotating", shared_secret=OLD_SECRET)["op"].xcom
    assert create(name="rotating", shared_secret=NEW_SECRET, if_exists="update").state == "success"
    assert emulator.store.get("receivers", receiver["id"])["sharedSecret"] == NEW_SECRET
    assert stored_variable(secret_variable_key("rotating")) == NEW_SECRET


def test_ensure_path_refuses_a_different_secret_under_reuse(emulator) -> None:
    spec = {"name": "rotating", "webhook_uri": URI, "shared_secret": OLD_SECRET}
    assert run_operator(IonEnsureWebhooksOperator, receiver=spec, subscriptions=["RUNS/CREATE"]).state == "success"
    receiver = emulator.store.list("receivers")[0]
    changed = {**spec, "shared_secret": NEW_SECRET}
    assert run_operator(IonEnsureWebhooksOperator, receiver=changed, subscriptions=["RUNS/CREATE"]).state == "failed"
    assert emulator.store.get("receivers", receiver["id"])["sharedSecret"] == OLD_SECRET
    assert stored_variable(secret_variable_key("rotating")) == OLD_SECRET
    rotated = {**changed, "if_exists": "update"}
    assert run_operator(IonEnsureWebhooksOperator, receiver=rotated, subscriptions=["RUNS/CREATE"]).state == "success"
    assert emulator.store.get("receivers", receiver["id"])["sharedSecret"] == NEW_SECRET
    assert stored_variable(secret_variable_key("rotating")) == NEW_SECRET


@pytest.mark.parametrize("uri", ["http://airflow.example.com/hook", "ftp://x/y", "not a url"])
def test_non_https_uri_is_refused_unless_loopback(uri: str) -> None:
    with pytest.raises(ValueError, match="webhook_uri"):
        check_webhook_uri(uri)
    assert check_webhook_uri("http://127.0.0.1:8080/hook") and check_webhook_uri("http://localhost/x")


def test_plain_http_receiver_fails_the_task_clearly(emulator) -> None:
    result = create(name="plain", webhook_uri="http://airflow.example.com/hook")
    assert result.state == "failed"
    assert emulator.store.list("receivers") == []


def test_subscription_by_receiver_name_is_reused_and_reenabled(emulator) -> None:
    receiver = create()["op"].xcom
    sub = run_operator(IonCreateWebhookSubscriptionOperator, receiver="factory", resource="RUNS", action="CREATE")
    first = sub["op"].xcom
    assert (first["resource"], first["action"], first["active"]) == ("RUNS", "CREATE", True)
    assert first["receiverId"] == receiver["id"]
    again = run_operator(
        IonCreateWebhookSubscriptionOperator, receiver=receiver["id"], resource="RUNS", action="CREATE"
    )
    assert again["op"].xcom["id"] == first["id"]
    run_operator(IonDisableWebhookSubscriptionOperator, subscription_id=first["id"])
    revived = run_operator(IonCreateWebhookSubscriptionOperator, receiver="factory", resource="RUNS", action="CREATE")
    assert revived["op"].xcom["id"] == first["id"] and revived["op"].xcom["active"] is True
    assert len(emulator.store.list("subscriptions")) == 1


def test_unknown_resource_fails_listing_the_valid_ones(emulator) -> None:
    from airflow_provider_ion.hooks.ion import IonHook
    from airflow_provider_ion.webhook_state import ensure_subscription

    receiver = create()["op"].xcom
    with IonHook() as hook, pytest.raises(ValueError, match=r"resource 'WIDGET' is not one ION knows.*RUNS"):
        ensure_subscription(hook, receiver["id"], "WIDGET", "CREATE")
    assert (
        run_operator(IonCreateWebhookSubscriptionOperator, receiver="factory", resource="WIDGET", action="CREATE").state
        == "failed"
    )
    # Either spelling, any case: resolved to the value the live enum has (RUNS here).
    with IonHook() as hook:
        assert ensure_subscription(hook, receiver["id"], "run", "create").obj["resource"] == "RUNS"


def test_disable_and_enable_receiver_write_only_when_needed(emulator) -> None:
    receiver = create()["op"].xcom
    etag = emulator.store.get("receivers", receiver["id"])["_etag"]
    disabled = run_operator(IonDisableWebhookReceiverOperator, receiver="factory")["op"].xcom
    assert (disabled["active"], disabled["change"]) == (False, "disabled")
    again = run_operator(IonDisableWebhookReceiverOperator, receiver=receiver["id"])["op"].xcom
    assert again["change"] == "unchanged"
    enabled = run_operator(IonEnableWebhookReceiverOperator, receiver="factory")["op"].xcom
    assert (enabled["active"], enabled["change"]) == (True, "enabled")
    assert emulator.store.get("receivers", receiver["id"])["_etag"] != etag


def test_disable_and_enable_subscription_by_receiver_resource_action(emulator) -> None:
    create()
    run_operator(IonCreateWebhookSubscriptionOperator, receiver="factory", resource="ISSUES", action="CREATE")
    off = run_operator(IonDisableWebhookSubscriptionOperator, receiver="factory", resource="ISSUES", action="CREATE")[
        "op"
    ].xcom
    assert [(s["active"], s["change"]) for s in off] == [(False, "disabled")]
    on = run_operator(IonEnableWebhookSubscriptionOperator, receiver="factory", resource="ISSUES", action="CREATE")
    assert [(s["active"], s["change"]) for s in on["op"].xcom] == [(True, "enabled")]
    missing = run_operator(IonEnableWebhookSubscriptionOperator, receiver="factory", resource="RUNS", action="DELETE")
    assert missing.state == "failed"
    tolerated = run_operator(
        IonDisableWebhookSubscriptionOperator, receiver="factory", resource="RUNS", action="DELETE", missing_ok=True
    )
    assert (tolerated.state, tolerated["op"].xcom) == ("success", [])
    no_receiver = run_operator(IonDisableWebhookReceiverOperator, receiver="never-created", missing_ok=True)
    assert no_receiver.state == "success"
    assert run_operator(IonDisableWebhookReceiverOperator, receiver="never-created").state == "failed"


def test_ensure_creates_then_is_a_no_op_then_prunes(emulator) -> None:
    spec = {"name": "factory", "webhook_uri": URI}
    first = run_operator(IonEnsureWebhooksOperator, receiver=spec, subscriptions=[["RUNS", "CREATE"], "ISSUES/CREATE"])[
        "op"
    ].xcom
    assert len(first["created"]) == 3  # the receiver and two subscriptions
    assert "sharedSecret" not in first["receiver"]
    second = run_operator(IonEnsureWebhooksOperator, receiver=spec, subscriptions=[["RUNS", "CREATE"], "ISSUES/CREATE"])
    assert second["op"].xcom["created"] == [] and len(second["op"].xcom["unchanged"]) == 2
    # Someone disables one and adds another by hand; ensure with prune restores the declared state.
    run_operator(IonDisableWebhookSubscriptionOperator, receiver="factory", resource="RUNS", action="CREATE")
    run_operator(IonCreateWebhookSubscriptionOperator, receiver="factory", resource="PURCHASE_ORDERS", action="CREATE")
    kept = run_operator(IonEnsureWebhooksOperator, receiver="factory", subscriptions=["RUNS/CREATE", "ISSUES/CREATE"])
    assert [e["resource"] for e in kept["op"].xcom["enabled"]] == ["RUNS"]
    assert kept["op"].xcom["disabled"] == []
    pruned = run_operator(
        IonEnsureWebhooksOperator, receiver="factory", subscriptions=["RUNS/CREATE", "ISSUES/CREATE"], prune=True
    )["op"].xcom
    assert [(e["resource"], e["action"]) for e in pruned["disabled"]] == [("PURCHASE_ORDERS", "CREATE")]
    active = {(s["resource"], s["action"]) for s in emulator.store.list("subscriptions") if s["active"]}
    assert active == {("RUNS", "CREATE"), ("ISSUES", "CREATE")}


def test_graphql_operator_returns_data_without_secrets(emulator) -> None:
    create()
    result = run_operator(
        IonGraphQLOperator,
        document="query { webhookReceivers(first: 5) { edges { node { name sharedSecret } } } }",
    )
    nodes = result["op"].xcom["webhookReceivers"]["edges"]
    assert nodes == [{"node": {"name": "factory"}}]
    named = run_operator(IonGraphQLOperator, document="ListWebhookReceivers", variables={"first": 5})
    assert named["op"].xcom["webhookReceivers"]["pageInfo"]["totalCount"] == 1


def test_without_secret_is_recursive() -> None:
    obj = {"a": [{"sharedSecret": "x", "b": 1}], "sharedSecret": "y"}
    assert without_secret(obj) == {"a": [{"b": 1}]}


# ---- concurrency: someone else writes between the operator's read and its write ----------------
def _interfere(emulator, monkeypatch, times: int) -> list[int]:
    """After each of the next ``times`` receiver reads, change that receiver in ION (a real write)."""
    from airflow_provider_ion.hooks.ion import IonHook

    original = IonHook.get_receiver
    done: list[int] = []

    def read_then_someone_writes(self, receiver_id):
        current = original(self, receiver_id)
        if current is not None and len(done) < times:
            emulator.store.update_receiver(
                {"id": current["id"], "etag": current["_etag"], "description": f"edited by someone else #{len(done)}"}
            )
            done.append(1)
        return current

    monkeypatch.setattr(IonHook, "get_receiver", read_then_someone_writes)
    return done


def test_conflicting_writer_is_outlasted_with_fresh_etags(emulator, monkeypatch) -> None:
    receiver = create()["op"].xcom
    writes = _interfere(emulator, monkeypatch, times=2)
    result = run_operator(IonDisableWebhookReceiverOperator, receiver=receiver["id"], max_conflict_retries=3)
    assert result.state == "success"
    assert len(writes) == 2
    stored = emulator.store.get("receivers", receiver["id"])
    assert stored["active"] is False and stored["description"] == "edited by someone else #1"


def test_conflicts_past_the_bound_fail_naming_the_receiver(emulator, monkeypatch) -> None:
    from airflow_provider_ion.exceptions import IonConcurrencyError
    from airflow_provider_ion.hooks.ion import IonHook
    from airflow_provider_ion.webhook_state import set_receiver_active

    receiver = create()["op"].xcom
    _interfere(emulator, monkeypatch, times=100)
    with (
        IonHook() as hook,
        pytest.raises(IonConcurrencyError, match=r"ION receiver 'factory' \(id \d+\) kept changing"),
    ):
        set_receiver_active(hook, receiver["id"], False, attempts=3)
    assert run_operator(IonDisableWebhookReceiverOperator, receiver="factory").state == "failed"
    assert emulator.store.get("receivers", receiver["id"])["active"] is True


# ---- faults: the create reached ION but the answer did not reach us ------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 503, "when": "after"},
        {"kind": "status", "status": 502, "when": "after"},
        {"kind": "drop"},
    ],
    ids=["503-after-create", "502-after-create", "dropped-connection"],
)
def test_ambiguous_create_failure_is_reconciled_not_repeated(emulator, fault) -> None:
    emulator.add_fault(**fault, operation="CreateWebhookReceiver")
    result = create()
    assert result.state == "success"
    assert len(emulator.store.list("receivers")) == 1
    assert emulator.stats["graphql_operations"].get("CreateWebhookReceiver") == 1
    assert stored_variable(secret_variable_key("factory")) == emulator.store.list("receivers")[0]["sharedSecret"]


def test_429_on_create_is_retried_by_the_hook(emulator) -> None:
    emulator.add_fault("status", status=429, retry_after=0, operation="CreateWebhookReceiver")
    assert create().state == "success"
    assert len(emulator.store.list("receivers")) == 1


def test_task_retry_after_a_failed_attempt_finds_the_receiver(emulator) -> None:
    """The create reached ION, and even the read-back failed: the task fails; its retry reuses."""
    emulator.add_fault("status", status=503, when="after", operation="CreateWebhookReceiver")
    # The first lookup (before the create) succeeds; the read-back after the failed create fails too.
    emulator.add_fault("status", status=500, operation="ListWebhookReceivers", skip=1)
    result = create(retries=1)
    assert result.state == "success"
    assert len(emulator.store.list("receivers")) == 1
    assert emulator.stats["graphql_operations"]["CreateWebhookReceiver"] == 1


# ---- ION as it may turn out to be: the operators on emulator profiles --------------------------
@pytest.mark.parametrize("profile", ["singular-resources", "int-ids", "header-mutations", "etag-in-200"])
def test_operators_on_profiles(profile, profiled_emulators, monkeypatch) -> None:
    from tests.conftest import define_ion_connection

    server = profiled_emulators(profile)
    define_ion_connection(monkeypatch, server)
    spec = {"name": "factory", "webhook_uri": URI, "headers": {"X-Plant": "1"}}
    first = run_operator(IonEnsureWebhooksOperator, receiver=spec, subscriptions=["RUNS/CREATE", "issue/update"])
    assert first.state == "success"
    assert len(first["op"].xcom["created"]) == 3
    live = {(s["resource"], s["action"]) for s in server.store.list("subscriptions")}
    plural = profile != "singular-resources"
    assert live == ({("RUNS", "CREATE"), ("ISSUES", "UPDATE")} if plural else {("RUN", "CREATE"), ("ISSUE", "UPDATE")})
    again = run_operator(
        IonEnsureWebhooksOperator, receiver="factory", subscriptions=["RUN/CREATE", "ISSUES/UPDATE"], prune=True
    )
    assert again["op"].xcom["created"] == [] and again["op"].xcom["disabled"] == []
    [stored] = server.store.list("receivers")
    assert [(h["key"], h["value"]) for h in stored["headers"]] == [("X-Plant", "1")]
    writes = _interfere(server, monkeypatch, times=2)  # stale etags: 409 or inside a 200, per profile
    result = run_operator(IonDisableWebhookReceiverOperator, receiver="factory", max_conflict_retries=3)
    assert result.state == "success" and len(writes) == 2
    assert server.store.get("receivers", stored["id"])["active"] is False
