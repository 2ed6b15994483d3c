"""IonHook against the ION emulator over real HTTP: token caching, refresh, retries, the mutation
rule, pagination and the typed calls. Counts come from the emulator (``emulator.stats``)."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_ion.exceptions import (
    IonAuthError,
    IonConcurrencyError,
    IonGraphQLError,
    IonRetryExhausted,
    IonTransportError,
)
from airflow_provider_ion.hooks.ion import IonHook, clear_token_cache
from airflow_provider_ion.hooks.schema import live_schema


@pytest.fixture
def conn_id(emulator, ion_connection) -> str:
    conn_id = ion_connection(
        "ion_emulator",
        login=emulator.client_id,
        password=emulator.client_secret,
        host=emulator.base_url,
        token_url=emulator.token_url,
    )
    # Learn the schema first (one introspection per connection and process), then start the counts
    # from zero: the tests below count the requests of the calls they make.
    with IonHook(conn_id) as warm:
        assert live_schema(warm) is not None
    clear_token_cache()
    emulator.reset()
    return conn_id


def make_hook(conn_id: str, **kw) -> IonHook:
    kw.setdefault("backoff_base", 0.001)
    kw.setdefault("backoff_cap", 0.005)
    return IonHook(conn_id, **kw)


@pytest.fixture
def hook(conn_id):
    with make_hook(conn_id) as h:
        yield h


def receivers(emulator) -> list[dict]:
    return emulator.store.list("receivers")


# --- tokens ---------------------------------------------------------------------------------------


def test_1000_sequential_calls_cost_one_token(emulator, hook) -> None:
    for _ in range(1000):
        hook.execute("Ping")
    stats = emulator.stats
    assert stats["token_requests"] == 1
    assert stats["graphql_requests"] == 1000


def test_hooks_and_threads_share_one_token(emulator, conn_id) -> None:
    hooks = [make_hook(conn_id) for _ in range(8)]
    threads = [threading.Thread(target=lambda h=h: [h.execute("Ping") for _ in range(5)]) for h in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in hooks:
        h.close()
    assert emulator.stats["token_requests"] == 1
    assert emulator.stats["graphql_requests"] == 40


def test_token_is_refreshed_before_it_expires(emulator, hook) -> None:
    emulator.token_lifetime = 1
    hook.execute("Ping")
    time.sleep(1.0)  # refresh point: 1 s - min(30 s, 10%) = 0.9 s
    hook.execute("Ping")
    stats = emulator.stats
    assert stats["token_requests"] == 2
    assert stats["unauthorized"] == 0  # refreshed proactively, never sent a dead token


def test_revoked_token_is_refreshed_once(emulator, hook) -> None:
    hook.execute("Ping")
    emulator.expire_tokens()
    assert "webhookReceivers" in hook.execute("Ping")
    stats = emulator.stats
    assert (stats["token_requests"], stats["unauthorized"], stats["graphql_requests"]) == (2, 1, 3)


def test_401_after_refresh_fails_clearly(emulator, hook) -> None:
    emulator.add_fault("status", status=401, times=2)
    with pytest.raises(IonAuthError) as info:
        hook.execute("Ping")
    assert "ion_emulator" in str(info.value) and "even after one refresh" in str(info.value)
    assert emulator.client_secret not in str(info.value) + repr(info.value)
    stats = emulator.stats
    assert (stats["token_requests"], stats["graphql_requests"]) == (2, 2)


def test_wrong_secret_is_an_auth_error(emulator, ion_connection) -> None:
    conn = ion_connection(
        "ion_wrong", login=emulator.client_id, password="not-the-secret-at-all",
        host=emulator.base_url, token_url=emulator.token_url,
    )  # fmt: skip
    with make_hook(conn) as hook, pytest.raises(IonAuthError) as info:
        hook.execute("Ping")
    text = str(info.value) + repr(info.value)
    assert "ion_wrong" in text and emulator.token_url in text and "client secret (password)" in text
    assert "not-the-secret-at-all" not in text
    assert emulator.stats["graphql_requests"] == 0


def test_token_endpoint_503_is_retried(emulator, hook) -> None:
    emulator.add_fault("status", status=503, endpoint="token", times=2)
    hook.execute("Ping")
    assert emulator.stats["token_requests"] == 3


# --- retries and the mutation rule -----------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_queries_are_retried(emulator, hook, status) -> None:
    emulator.add_fault("status", status=status, operation="ListWebhookReceivers", times=2)
    assert hook.list_receivers() == []
    assert emulator.stats["graphql_operations"]["ListWebhookReceivers"] == 3


def test_query_retries_run_out(emulator, conn_id) -> None:
    emulator.add_fault("status", status=503, operation="Ping", times=10)
    with make_hook(conn_id, max_retries=2) as hook, pytest.raises(IonRetryExhausted) as info:
        hook.execute("Ping")
    assert (info.value.status_code, info.value.attempts) == (503, 3)
    assert emulator.stats["graphql_requests"] == 3


def test_query_read_timeout_is_retried(emulator, conn_id) -> None:
    emulator.add_fault("delay", delay=0.6, operation="Ping")
    with make_hook(conn_id, timeout=0.2) as hook:
        assert "webhookReceivers" in hook.execute("Ping")
    assert emulator.stats["graphql_requests"] == 2


def test_query_dropped_connection_is_retried(emulator, hook) -> None:
    emulator.add_fault("drop", operation="Ping")
    assert "webhookReceivers" in hook.execute("Ping")
    assert emulator.stats["graphql_requests"] == 2


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 503, "when": "after"},
        {"kind": "status", "status": 502, "when": "after"},
        {"kind": "drop", "when": "after"},
    ],
    ids=["503-after", "502-after", "dropped-after"],
)
def test_create_is_not_retried_once_ion_may_have_executed_it(emulator, hook, fault) -> None:
    emulator.add_fault(**fault, operation="CreateWebhookReceiver")
    with pytest.raises(IonTransportError) as info:
        hook.create_receiver("qa", "https://example.test/hook")
    assert info.value.may_have_executed
    assert "re-read ION's state and reconcile" in str(info.value)
    assert len(receivers(emulator)) == 1  # executed once, never twinned
    assert emulator.stats["graphql_operations"]["CreateWebhookReceiver"] == 1
    # What the operators do next: re-read and find it.
    assert [r["name"] for r in hook.find_receivers_by_name("qa")] == ["qa"]


def test_create_read_timeout_is_not_retried(emulator, conn_id) -> None:
    emulator.add_fault("delay", delay=0.6, operation="CreateWebhookReceiver")
    with make_hook(conn_id, timeout=0.2) as hook, pytest.raises(IonTransportError) as info:
        hook.create_receiver("qa", "https://example.test/hook")
    assert info.value.may_have_executed
    time.sleep(0.5)  # let the emulator finish the delayed request
    assert len(receivers(emulator)) == 1
    assert emulator.stats["graphql_operations"]["CreateWebhookReceiver"] == 1


@pytest.mark.parametrize("status", [429, 503])
def test_create_is_retried_when_ion_refused_it_before_executing(emulator, hook, status) -> None:
    emulator.add_fault("status", status=status, when="before", operation="CreateWebhookReceiver")
    if status == 503:  # a 5xx says nothing about whether it ran: no retry, even if "before"
        with pytest.raises(IonTransportError):
            hook.create_receiver("qa", "https://example.test/hook")
        assert len(receivers(emulator)) == 0
        return
    created = hook.create_receiver("qa", "https://example.test/hook")
    assert [str(r["id"]) for r in receivers(emulator)] == [created["id"]]
    assert emulator.stats["graphql_operations"]["CreateWebhookReceiver"] == 2


# --- pagination ------------------------------------------------------------------------------------


@pytest.fixture
def many_receivers(emulator) -> int:
    with emulator.store.bulk() as store:
        for i in range(1200):
            store.create_receiver({"name": f"r{i:04d}", "webhookUri": f"https://example.test/{i}"})
    return 1200


def test_paginate_1200(emulator, hook, many_receivers) -> None:
    names = [r["name"] for r in hook.list_receivers()]
    assert names == [f"r{i:04d}" for i in range(1200)]
    assert emulator.stats["graphql_operations"]["ListWebhookReceivers"] == 12
    assert len(list(hook.paginate("ListWebhookReceivers", page_size=500))) == 1200


# --- typed calls and error classes ------------------------------------------------------------------


def test_receiver_and_subscription_lifecycle(emulator, hook) -> None:
    created = hook.create_receiver(
        "qa", "https://example.test/hook", description="QA", headers={"X-Env": "test"}, active=True
    )
    assert created["sharedSecret"] and created["headers"][0]["key"] == "X-Env"
    rid = created["id"]
    assert hook.get_receiver(rid)["name"] == "qa"
    assert "sharedSecret" not in hook.get_receiver(rid)
    assert hook.get_receiver_secret(rid) == created["sharedSecret"]
    assert [r["id"] for r in hook.find_receivers_by_name("qa")] == [rid]
    assert hook.find_receivers_by_name("nobody") == []

    updated = hook.update_receiver(rid, created["_etag"], active=False, webhook_uri="https://example.test/v2")
    assert (updated["active"], updated["webhookUri"]) == (False, "https://example.test/v2")
    with pytest.raises(IonConcurrencyError) as info:
        hook.update_receiver(rid, created["_etag"], active=True)  # stale etag
    assert info.value.object_id == rid
    with pytest.raises(TypeError, match="unknown field 'colour'"):
        hook.update_receiver(rid, updated["_etag"], colour="red")

    sub = hook.create_subscription(rid, "RUNS", "UPDATE")
    assert (sub["resource"], sub["action"], sub["receiverId"], sub["active"]) == ("RUNS", "UPDATE", rid, True)
    hook.create_subscription(rid, "ISSUES", "CREATE", active=False)
    assert len(hook.list_subscriptions(rid)) == 2
    assert [s["resource"] for s in hook.list_subscriptions(resource="ISSUES")] == ["ISSUES"]
    assert [s["resource"] for s in hook.list_subscriptions(rid, active=False)] == ["ISSUES"]
    assert hook.get_subscription(sub["id"])["id"] == sub["id"]
    off = hook.update_subscription(sub["id"], sub["_etag"], active=False)
    assert off["active"] is False
    with pytest.raises(IonConcurrencyError):
        hook.update_subscription(sub["id"], sub["_etag"], active=True)

    emulator.store.add_event(sub["id"], status="SUCCESS")
    emulator.store.add_event(sub["id"], status="FAILED")
    events = hook.list_events(receiver_id=rid)
    assert [e["status"] for e in events] == ["SUCCESS", "FAILED"]
    assert [e["status"] for e in hook.list_events(subscription_id=sub["id"], status="FAILED")] == ["FAILED"]
    assert len(hook.list_events(since="2000-01-01T00:00:00+00:00")) == 2
    assert hook.get_event(events[0]["id"])["status"] == "SUCCESS"

    assert hook.get_receiver(4242) is None
    assert hook.get_subscription(4242) is None
    assert hook.get_event(4242) is None
    assert hook.get_receiver_secret(4242) is None


def test_enum_values_by_introspection(emulator, hook) -> None:
    assert hook.enum_values("WebhookSubscriptionActions") == ["CREATE", "UPDATE", "DELETE"]
    assert "RUNS" in hook.enum_values("ResourceEnum")
    assert hook.enum_values("NoSuchType") is None
    before = emulator.stats["graphql_requests"]
    hook.enum_values("ResourceEnum")
    assert emulator.stats["graphql_requests"] == before  # cached per hook


def test_graphql_errors_from_the_emulator(emulator, hook) -> None:
    with pytest.raises(IonGraphQLError) as info:
        hook.create_receiver("", "not a url")
    assert info.value.errors and info.value.operation_name == "CreateWebhookReceiver"
    with pytest.raises(IonGraphQLError) as info:
        hook.execute("query { noSuchField }")
    assert info.value.errors


def test_test_connection_against_the_emulator(emulator, conn_id, ion_connection) -> None:
    ok, message = IonHook(conn_id).test_connection()
    assert ok and "Ping" in message and emulator.token_url in message
    wrong = ion_connection(
        "ion_bad", login="someone", password="wrong-secret-value", host=emulator.base_url,
        token_url=emulator.token_url,
    )  # fmt: skip
    ok, message = IonHook(wrong).test_connection()
    assert not ok and "refused the client credentials" in message and "wrong-secret-value" not in message
