"""The receiver under hostile input (issue 13), each case over HTTP against a real uvicorn server."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_provider_ion.webhooks.app import (
    MAX_JSON_DEPTH,
    REJECTION_LOG_PER_MINUTE,
    ReceiverApp,
    ReceiverSettings,
)
from airflow_provider_ion.webhooks.inbox import Inbox
from airflow_provider_ion.webhooks.secrets import remote
from airflow_provider_ion.webhooks.signature import sign
from tests.servers import serve
from tests.webhooks.test_app import PATH, SECRET, StaticSecrets, delivery, headers_for, post


@pytest.fixture
def inbox(tmp_path) -> Iterator[Inbox]:
    inbox = Inbox(f"sqlite:///{tmp_path}/inbox.db")
    yield inbox
    inbox.close()


@pytest.fixture
def source() -> StaticSecrets:
    return StaticSecrets(factory=SECRET)


@pytest.fixture
def receiver(inbox, source) -> ReceiverApp:
    return ReceiverApp(ReceiverSettings(max_body_bytes=96 * 1024, body_timeout=0.5), inbox=inbox,
                       secret_sources=[source])  # fmt: skip


@pytest.fixture
def url(receiver) -> Iterator[str]:
    with serve(receiver.asgi) as base:
        yield base


def signed(url: str, body: bytes, path: str = PATH) -> httpx.Response:
    return post(url, body, headers_for(body), path)


def to(client: httpx.Client, name: str, body: bytes, secret: str = SECRET) -> httpx.Response:
    return client.post(f"/ion-webhooks/v1/receivers/{name}", content=body, headers=headers_for(body, secret))


def assert_next_valid_delivery_succeeds(url: str, inbox: Inbox, event_id: str) -> None:
    body = delivery(event_id)
    response = signed(url, body)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"}), response.text
    assert inbox.get("factory", event_id) is not None


# 1. deeply nested JSON ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"event_id": 1, "resource": "RUNS", "data": ' + b'{"a":' * 15_000 + b"1" + b"}" * 15_000 + b"}",
        b'{"event_id": 1, "resource": "RUNS", "data": ' + b"[" * (MAX_JSON_DEPTH + 5) + b"]" * 105 + b"}",
    ],
    ids=["top-level", "inside-data", "just-over-the-limit"],
)  # fmt: skip
def test_deeply_nested_json_is_a_400_not_a_500(url, inbox, body) -> None:
    response = signed(url, body)
    assert (response.status_code, response.json()) == (400, {"error": "body is nested deeper than 100 levels"})
    assert inbox.stats()["total"] == 0
    assert_next_valid_delivery_succeeds(url, inbox, "after-nesting")


def test_nesting_within_the_limit_is_accepted(url, inbox) -> None:
    nested: dict = {"leaf": 1}
    for _ in range(MAX_JSON_DEPTH - 3):
        nested = {"n": nested}
    body = json.dumps({"event_id": "deep-ok", "resource": "RUNS", "data": nested}).encode()
    assert signed(url, body).status_code == 200


# 2. lone surrogates -------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["event_id", "resource", "action", "subscription_id"])
@pytest.mark.parametrize("encoded", [b'"\\ud800"', b'"x\\udfff"', b'"\xed\xa0\x80"'], ids=["escape", "low", "raw"])
def test_a_lone_surrogate_is_a_400_and_the_next_delivery_succeeds(url, inbox, field, encoded) -> None:
    fields = {"event_id": b'"sur-1"', "resource": b'"RUNS"', "action": b'"CREATE"', "subscription_id": b"1"}
    fields[field] = encoded
    body = b"{" + b", ".join(b'"%s": %s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    response = signed(url, body)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "body holds text that is not valid Unicode (a lone surrogate)"}
    assert inbox.stats()["total"] == 0
    assert_next_valid_delivery_succeeds(url, inbox, f"after-{field}")


def test_a_valid_surrogate_pair_is_fine(url, inbox) -> None:
    body = b'{"event_id": "emoji-\\ud83d\\ude00", "resource": "RUNS"}'
    assert signed(url, body).status_code == 200
    assert inbox.get("factory", "emoji-\U0001f600") is not None


# 3. the secret look-up budget ---------------------------------------------------------------------------
def test_strangers_cannot_spend_a_real_receivers_lookup_budget(inbox) -> None:
    """After a restart (nothing cached), a flood of made-up names must not silence real receivers."""
    clock = [1000.0]
    configured = StaticSecrets(factory=SECRET)  # an Airflow Variable/Connection: local, always consulted
    in_ion = remote(StaticSecrets(**{"ion-known": SECRET, "ion-late": SECRET}))  # an ION API look-up
    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[configured, in_ion])
    app.secrets.clock = lambda: clock[0]
    with serve(app.asgi) as base, httpx.Client(base_url=base) as client:
        known = delivery("k-1")
        assert to(client, "ion-known", known).status_code == 200
        forged = delivery("forged")
        for i in range(app.secrets.max_lookups + 40):
            response = to(client, f"made-up-{i}", forged, "guess")
            assert response.status_code in (404, 503), response.text
        assert in_ion.calls <= app.secrets.max_lookups + 1  # ION was asked at most the budget's worth
        # A configured receiver never needed the budget; a known one has its own.
        body = delivery("f-1")
        assert to(client, "factory", body).status_code == 200
        body = delivery("k-2")
        assert to(client, "ion-known", body).status_code == 200
        # One known only to ION and not cached yet: a retryable 503, not "unknown receiver".
        late = delivery("l-1")
        response = to(client, "ion-late", late)
        assert (response.status_code, response.json()) == (503, {"error": "receiver look-up deferred"})
        assert 1 <= int(response.headers["retry-after"]) <= 60
        clock[0] += 61  # the budget refills: ION's retry succeeds
        response = to(client, "ion-late", late)
        assert response.status_code == 200, response.text
    assert {e.event_id for e in inbox.latest(10)} == {"k-1", "f-1", "k-2", "l-1"}


# 4. unknown names: bounded cache, sane names ------------------------------------------------------------
def test_unknown_names_are_remembered_in_a_bounded_cache(inbox, source) -> None:
    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[source])
    app.secrets.max_unknown = 50
    body = delivery(1)
    with serve(app.asgi) as base, httpx.Client(base_url=base) as client:
        for i in range(200):
            assert to(client, f"forged-{i}", body).status_code == 404
        calls = source.calls
        assert to(client, "forged-199", body).status_code == 404
        assert source.calls == calls  # a recent unknown name is answered from the cache
    assert app.secrets.unknown_cached == 50


@pytest.mark.parametrize("name", ["x" * 129, "a%20b", "caf%C3%A9", "semi%3Bcolon", "a%00b", "%2E%2E%2Fetc"])
def test_bad_receiver_names_are_refused_without_a_lookup(url, source, inbox, name) -> None:
    body = delivery(1)
    response = post(url, body, headers_for(body), f"/ion-webhooks/v1/receivers/{name}")
    assert response.status_code in (400, 404), response.text  # 404: a name Starlette routes nowhere
    if response.status_code == 400:
        assert response.json()["error"].startswith("bad receiver name")
    assert source.calls == 0
    assert inbox.stats()["total"] == 0


# 5. a client stalling mid-body --------------------------------------------------------------------------
def test_a_client_stalling_mid_body_gets_408_and_its_connection_closed(url, inbox) -> None:
    host, port = urlsplit(url).hostname, urlsplit(url).port
    body = delivery("stalled")
    with socket.create_connection((host, port), timeout=10) as sock:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-ion-signature: {sign(body, SECRET)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:10])  # ...and nothing more
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):  # returns b"" once the server closed the connection
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'{"error":"body not received in time"}' in answer
    assert elapsed < 5
    assert inbox.stats()["total"] == 0
    assert_next_valid_delivery_succeeds(url, inbox, "after-stall")


# 6. canonical lower-case names --------------------------------------------------------------------------
def test_one_event_posted_to_two_spellings_of_a_name_is_stored_once(url, inbox, source, receiver) -> None:
    body = delivery("case-1")
    first = signed(url, body, "/ion-webhooks/v1/receivers/FACTORY")
    second = signed(url, body, "/ion-webhooks/v1/receivers/Factory")
    assert (first.json(), second.json()) == ({"status": "accepted"}, {"status": "duplicate"})
    assert inbox.stats()["total"] == 1
    assert inbox.get("factory", "case-1") is not None
    assert source.calls == 1  # one look-up, of the canonical name
    mixed = signed(url, delivery("case-2"), "/ion-webhooks/v1/receivers/FaCtOrY")
    assert mixed.status_code == 200
    assert receiver.stats.to_dict()["accepted"] == 2


# 7. duplicate keys --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"event_id": "a", "event_id": "b", "resource": "RUNS"}',
        b'{"event_id": "a", "resource": "RUNS", "data": {"id": 1, "id": 2}}',
        b'{"event_id": "a", "resource": "RUNS", "data": [{"x": 1}, {"y": 1, "y": 1}]}',
    ],
    ids=["top-level", "in-data", "in-a-list"],
)
def test_duplicate_json_keys_are_refused(url, inbox, body) -> None:
    response = signed(url, body)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "body has duplicate keys in one object (ambiguous JSON)"},
    )
    assert inbox.stats()["total"] == 0


# 8. a conflicting redelivery (needs the inbox branch's AppendResult.conflict) ---------------------------
def test_a_conflicting_redelivery_is_logged_with_both_hashes_and_answered_success(url, inbox, receiver, caplog) -> None:
    import hashlib

    first, second = delivery("c-1"), delivery("c-1", data={"id": 8, "title": "another body"})
    assert signed(url, first).json() == {"status": "accepted"}
    with caplog.at_level(logging.WARNING, logger="airflow_provider_ion.webhooks.inbox"):
        response = signed(url, second)
    assert (response.status_code, response.json()) == (200, {"status": "conflict"})
    assert inbox.get("factory", "c-1").payload["data"] == {"id": 7, "title": "Run 7"}  # the first body stays
    # logged once, by the inbox that detected it (the app does not repeat it)
    [warning] = [r.getMessage() for r in caplog.records if "with a different body" in r.getMessage()]
    assert hashlib.sha256(first).hexdigest() in warning and hashlib.sha256(second).hexdigest() in warning
    assert receiver.stats.conflict == 1


# quarantine of a known receiver's failed signature (needs the inbox branch's Inbox.quarantine) -----------
def test_a_known_receivers_bad_signature_is_quarantined_and_answered_401(url, inbox) -> None:
    body = delivery("q-1")
    response = post(url, body, headers_for(body, "not-the-secret"))
    assert (response.status_code, response.json()) == (401, {"error": "signature mismatch"})
    stranger = post(url, body, headers_for(body, "x"), "/ion-webhooks/v1/receivers/nobody")
    assert stranger.status_code == 404
    kept = inbox.quarantined()
    assert [(q.receiver, q.body, q.reason) for q in kept] == [("factory", body, "signature mismatch")]
    assert kept[0].headers["x-ion-signature"] == sign(body, "not-the-secret")
    assert inbox.stats()["total"] == 0


# 10. rejections at WARNING, rate-limited ----------------------------------------------------------------
def test_rejections_are_logged_at_warning_but_cannot_flood_the_log(url, caplog) -> None:
    body = delivery(1)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_ion.webhooks.app"), httpx.Client() as client:
        for _ in range(3 * REJECTION_LOG_PER_MINUTE):
            client.post(url + PATH, content=body, headers=headers_for(body, "forged"))
    lines = [r for r in caplog.records if r.getMessage().startswith("Rejected delivery")]
    assert len(lines) == REJECTION_LOG_PER_MINUTE
    assert {r.levelno for r in lines} == {logging.WARNING}
    assert "'factory': signature mismatch (401)" in lines[0].getMessage()
    assert SECRET not in caplog.text


# 11. replays: the event's own age -----------------------------------------------------------------------
def test_max_event_age_refuses_old_events(inbox, source) -> None:
    app = ReceiverApp(ReceiverSettings(max_event_age=3600), inbox=inbox, secret_sources=[source])
    now = datetime.now(UTC)
    with serve(app.asgi) as base:
        old = delivery("old", created_at=(now - timedelta(hours=2)).isoformat().replace("+00:00", "Z"))
        response = signed(base, old)
        assert (response.status_code, response.json()) == (400, {"error": "event older than max_event_age (3600 s)"})
        missing = json.dumps({"event_id": "no-time", "resource": "RUNS"}).encode()
        response = signed(base, missing)
        assert response.json() == {"error": "created_at missing or not an ISO 8601 time (max_event_age is set)"}
        for odd in ("0001-01-01T00:00:00+05:00", "yesterday", 1700000000):
            response = signed(base, delivery("odd", created_at=odd))
            assert response.status_code == 400, response.text
        fresh = delivery("fresh", created_at=(now - timedelta(minutes=5)).isoformat())
        assert signed(base, fresh).status_code == 200
    assert inbox.stats()["total"] == 1


def test_event_age_is_not_checked_by_default(url, inbox) -> None:
    assert signed(url, delivery("ancient", created_at="2001-01-01T00:00:00Z")).status_code == 200
