"""The receiver app under a real uvicorn server, with a real SQLite (and PostgreSQL) inbox."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_ion.webhooks.app import ReceiverApp, ReceiverSettings, bearer_token_guard
from airflow_provider_ion.webhooks.inbox import Inbox
from airflow_provider_ion.webhooks.secrets import ReceiverSecrets
from airflow_provider_ion.webhooks.signature import sign
from tests.servers import serve

SECRET = "s3cr3t-for-the-factory-floor-0123456789"
PATH = "/ion-webhooks/v1/receivers/factory"


class StaticSecrets:
    """A secret source with a call counter; ``secrets`` can be swapped to simulate a rotation in ION."""

    def __init__(self, **secrets: str) -> None:
        self.secrets = dict(secrets)
        self.calls = 0

    def __call__(self, receiver: str) -> ReceiverSecrets | None:
        self.calls += 1
        secret = self.secrets.get(receiver)
        return ReceiverSecrets((secret,), source="test") if secret else None


def delivery(event_id: int | str = 1, **fields) -> bytes:
    body = {"event_id": event_id, "subscription_id": 42, "resource": "RUNS", "action": "CREATE",
            "data": {"id": 7, "title": "Run 7"}, "created_at": "2026-11-29T12:00:00Z", **fields}  # fmt: skip
    return json.dumps(body).encode()


def headers_for(body: bytes, secret: str = SECRET, **extra: str) -> dict[str, str]:
    return {"content-type": "application/json", "x-ion-signature": sign(body, secret), **extra}


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
    return ReceiverApp(
        ReceiverSettings(max_body_bytes=64 * 1024), inbox=inbox, secret_sources=[source],
        authorize_admin=bearer_token_guard("admin-token"),
    )  # fmt: skip


@pytest.fixture
def url(receiver) -> Iterator[str]:
    with serve(receiver.asgi) as base:
        yield base


def post(url: str, body: bytes, headers: dict[str, str], path: str = PATH) -> httpx.Response:
    return httpx.post(url + path, content=body, headers=headers, timeout=10)


def test_accepts_a_signed_delivery_and_stores_it(url, inbox, receiver) -> None:
    body = delivery(101)
    response = post(url, body, headers_for(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted"}
    stored = inbox.get("factory", 101)
    assert stored is not None
    assert (stored.resource, stored.action, stored.subscription_id) == ("RUNS", "CREATE", "42")
    assert stored.payload["data"] == {"id": 7, "title": "Run 7"}
    assert receiver.stats.accepted == 1


def test_redelivery_is_acknowledged_and_stored_once(url, inbox, receiver) -> None:
    body = delivery(202)
    first = post(url, body, headers_for(body))
    second = post(url, body, headers_for(body))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"status": "duplicate"}
    assert inbox.stats()["total"] == 1
    assert (receiver.stats.accepted, receiver.stats.duplicate) == (1, 1)


def test_answers_the_receivers_expected_response_code(inbox) -> None:
    def source(name: str) -> ReceiverSecrets:
        return ReceiverSecrets((SECRET,), expected_response_code=202, source="test")

    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[source])
    with serve(app.asgi) as base:
        body = delivery(303)
        assert post(base, body, headers_for(body)).status_code == 202


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("wrong secret", 401, "signature mismatch"),
        ("tampered body", 401, "signature mismatch"),
        ("missing header", 401, "signature missing"),
        ("malformed header", 401, "signature malformed"),
        ("wrong content type", 415, "content type must be application/json"),
        ("invalid json", 400, "body is not valid JSON"),
        ("json array", 400, "body must be a JSON object"),
        ("missing event_id", 400, "missing field(s): event_id"),
        ("bad event_id", 400, "event_id must be a string or an integer"),
        ("unknown receiver", 404, "unknown receiver"),
    ],
)
def test_rejects_bad_input_with_a_clear_answer(url, inbox, receiver, case, status, reason) -> None:
    body, path = delivery(1), PATH
    headers = headers_for(body)
    if case == "wrong secret":
        headers = headers_for(body, "not-the-secret")
    elif case == "tampered body":
        body = body.replace(b"Run 7", b"Run 8")
    elif case == "missing header":
        del headers["x-ion-signature"]
    elif case == "malformed header":
        headers["x-ion-signature"] = "sha256=not hex at all!"
    elif case == "wrong content type":
        headers["content-type"] = "text/plain"
    elif case == "invalid json":
        body = b'{"event_id": 1,'
        headers = headers_for(body)
    elif case == "json array":
        body = b"[1, 2]"
        headers = headers_for(body)
    elif case == "missing event_id":
        body = json.dumps({"resource": "RUNS", "action": "CREATE"}).encode()
        headers = headers_for(body)
    elif case == "bad event_id":
        body = delivery({"nested": True})
        headers = headers_for(body)
    elif case == "unknown receiver":
        path = "/ion-webhooks/v1/receivers/nobody"
    response = post(url, body, headers, path)
    assert (response.status_code, response.json()) == (status, {"error": reason})
    assert SECRET not in response.text
    assert inbox.stats()["total"] == 0
    assert sum(receiver.stats.rejected.values()) == 1


def test_only_post_is_allowed(url) -> None:
    assert httpx.get(url + PATH).status_code == 405
    assert httpx.put(url + PATH, content=b"{}").status_code == 405


def test_declared_oversized_body_is_refused_before_reading(url, inbox) -> None:
    body = delivery(1, padding="x" * 70_000)
    response = post(url, body, headers_for(body))
    assert (response.status_code, response.json()) == (413, {"error": "body too large"})
    assert inbox.stats()["total"] == 0


def test_streamed_oversized_body_is_cut_off_at_the_cap(url, inbox) -> None:
    """Chunked upload with no Content-Length: the answer comes while the client is still sending."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nx-ion-signature: sha256=00\r\n\r\n".encode()
        )
        chunk = b"x" * 16 * 1024
        sent = 0
        for _ in range(8):  # 128 KiB, twice the cap: enough to cross it
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        # The rest (up to 100 MiB) is never sent: the server must answer now, having read ~cap bytes.
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert inbox.stats()["total"] == 0


def test_inbox_down_answers_503_then_ions_retry_succeeds(source, tmp_path) -> None:
    inbox = Inbox(f"sqlite:///{tmp_path}/inbox.db", busy_timeout=0.2)
    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[source])
    with serve(app.asgi) as url:
        _inbox_down_then_up(url, inbox, tmp_path)


def _inbox_down_then_up(url: str, inbox: Inbox, tmp_path) -> None:
    body = delivery(404)
    inbox.latest_seq()  # create the schema
    blocker = sqlite3.connect(tmp_path / "inbox.db", timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")  # a real storage fault: the database is locked
    try:
        response = post(url, body, headers_for(body))
        assert response.status_code == 503
        assert response.json() == {"error": "inbox unavailable"}
        assert response.headers["retry-after"] == "5"
    finally:
        blocker.rollback()
        blocker.close()
    retry = post(url, body, headers_for(body))
    assert retry.status_code == 200
    assert inbox.get("factory", 404) is not None
    assert httpx.get(url + "/ion-webhooks/health").json() == {"status": "healthy", "inbox": "ok"}


def test_unreachable_inbox_answers_503_and_health_says_so(source) -> None:
    down = Inbox("postgresql+psycopg://postgres@127.0.0.1:1/test", busy_timeout=0.2)
    app = ReceiverApp(ReceiverSettings(), inbox=down, secret_sources=[source])
    with serve(app.asgi) as base:
        body = delivery(1)
        response = post(base, body, headers_for(body))
        assert (response.status_code, response.json()) == (503, {"error": "inbox unavailable"})
        health = httpx.get(base + "/ion-webhooks/health")
        assert (health.status_code, health.json()) == (503, {"status": "unhealthy", "inbox": "unavailable"})


def test_secret_rotation_is_picked_up_at_most_once_a_minute(inbox, source) -> None:
    clock = [1000.0]
    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[source])
    app.secrets.clock = lambda: clock[0]
    with serve(app.asgi) as base, httpx.Client(base_url=base) as client:
        _rotate(client, source, clock)


def _rotate(client: httpx.Client, source: StaticSecrets, clock: list[float]) -> None:
    body = delivery(1)
    assert client.post(PATH, content=body, headers=headers_for(body)).status_code == 200
    assert source.calls == 1
    source.secrets["factory"] = "rotated-secret-in-ion-0123456789abcdef"
    body = delivery(2)
    signed_new = headers_for(body, "rotated-secret-in-ion-0123456789abcdef")
    # Within the minute: no new lookup, however many (possibly forged) requests arrive.
    for _ in range(20):
        assert client.post(PATH, content=body, headers=signed_new).status_code == 401
    assert source.calls == 1
    clock[0] += 61
    assert client.post(PATH, content=body, headers=signed_new).status_code == 200
    assert source.calls == 2


def test_rejections_are_counted_in_the_inbox_in_batches(inbox, source) -> None:
    app = ReceiverApp(ReceiverSettings(rejection_flush_interval=0.2), inbox=inbox, secret_sources=[source])
    body = delivery(1)
    with serve(app.asgi) as base, httpx.Client(base_url=base) as client:
        for _ in range(3):
            assert client.post(PATH, content=body, headers=headers_for(body, "forged")).status_code == 401
        for i in range(2):
            assert client.post(f"/ion-webhooks/v1/receivers/made-up-{i}", content=body).status_code == 415
            response = client.post(f"/ion-webhooks/v1/receivers/made-up-{i}", content=body, headers=headers_for(body))
            assert response.status_code == 404
        assert inbox.rejection_counts() == {}  # not one write per refused request
        deadline = time.monotonic() + 5
        while not inbox.rejection_counts() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert inbox.rejection_counts() == {
        "factory": {"signature mismatch": 3},
        "(unknown receiver)": {"unknown receiver": 2, "content type must be application/json": 2},
    }


def test_allow_list_and_trusted_proxy(inbox, source) -> None:
    body = delivery(1)
    closed = ReceiverApp(ReceiverSettings(allowed_cidrs=("203.0.113.0/24",)), inbox=inbox, secret_sources=[source])
    with serve(closed.asgi) as base:
        response = post(base, body, headers_for(body))
        assert (response.status_code, response.json()) == (403, {"error": "source address not allowed"})
        # X-Forwarded-For is ignored unless the peer is a trusted proxy.
        spoofed = post(base, body, headers_for(body, **{"x-forwarded-for": "203.0.113.9"}))
        assert spoofed.status_code == 403
    proxied = ReceiverApp(
        ReceiverSettings(allowed_cidrs=("203.0.113.0/24",), trusted_proxies=("127.0.0.1/32",)),
        inbox=inbox, secret_sources=[source],
    )  # fmt: skip
    with serve(proxied.asgi) as base:
        ok = post(base, body, headers_for(body, **{"x-forwarded-for": "198.51.100.1, 203.0.113.9"}))
        assert ok.status_code == 200
        other = post(base, body, headers_for(body, **{"x-forwarded-for": "198.51.100.1"}))
        assert other.status_code == 403
        # A client-written first line does not win over the line the proxy appended (two header lines).
        lines = [*headers_for(body).items(), ("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "198.51.100.1")]
        faked = httpx.post(base + PATH, content=body, headers=lines, timeout=10)
        assert faked.status_code == 403


def test_settings_reject_bad_networks() -> None:
    with pytest.raises(ValueError, match="allowed_cidrs: 'ten-dot' is not an IP network"):
        ReceiverSettings(allowed_cidrs=("ten-dot",))


def test_stats_need_the_admin_token(url, receiver) -> None:
    body = delivery(9)
    post(url, body, headers_for(body))
    assert httpx.get(url + "/ion-webhooks/v1/stats").status_code == 401
    wrong = httpx.get(url + "/ion-webhooks/v1/stats", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(url + "/ion-webhooks/v1/stats", headers={"authorization": "Bearer admin-token"})
    assert ok.json() == {"receiver": {"accepted": 1, "duplicate": 0, "conflict": 0, "rejected": {}}}


def test_concurrent_deliveries_are_all_stored(url, inbox) -> None:
    errors: list[int] = []

    def worker(start: int) -> None:
        with httpx.Client(base_url=url, timeout=20) as client:
            for event_id in range(start, start + 25):
                body = delivery(event_id)
                status = client.post(PATH, content=body, headers=headers_for(body)).status_code
                if status != 200:
                    errors.append(status)

    threads = [threading.Thread(target=worker, args=(i * 1000,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert inbox.stats()["total"] == 200


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=2048),
    # Any latin-1 text an HTTP client can put in a header (control characters cannot travel).
    signature=st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300)),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]),
    name=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=40),
)
def test_random_input_never_crashes_the_app(fuzz_client, body, signature, content_type, name) -> None:
    client = fuzz_client
    headers = {"content-type": content_type}
    if signature is not None:
        headers["x-ion-signature"] = signature.strip(" \t").encode("latin-1")  # HTTP trims the edges
    response = client.post(f"/ion-webhooks/v1/receivers/{name}", content=body, headers=headers)
    assert response.status_code < 500


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.dictionaries(st.sampled_from(["event_id", "resource", "action", "data", "x"]),
                             st.one_of(st.none(), st.integers(), st.text(max_size=30), st.booleans(),
                                       st.lists(st.integers(), max_size=3))))  # fmt: skip
def test_random_signed_json_never_crashes_the_app(fuzz_client, event) -> None:
    client = fuzz_client
    body = json.dumps(event).encode()
    response = client.post(PATH, content=body, headers=headers_for(body))
    assert response.status_code in (200, 400)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory) -> Iterator[httpx.Client]:
    """One real server for all examples; a 5xx from it fails the example."""
    path = tmp_path_factory.mktemp("fuzz") / "inbox.db"
    app = ReceiverApp(
        ReceiverSettings(max_body_bytes=1024), inbox=Inbox(f"sqlite:///{path}"),
        secret_sources=[StaticSecrets(factory=SECRET)],
    )  # fmt: skip
    with serve(app.asgi) as base, httpx.Client(base_url=base) as client:
        yield client


def test_standalone_lifespan_freezes_the_startup_heap_once_and_closes_the_inbox(inbox, source, monkeypatch) -> None:
    """Served on its own, the app freezes the startup heap (full GCs stalled every delivery) and, on
    shutdown, lets the inbox writer finish; mounted elsewhere it gets no lifespan and changes nothing."""
    from starlette.testclient import TestClient

    from airflow_provider_ion.webhooks import app as app_module

    frozen: list[bool] = []
    monkeypatch.setattr(app_module.gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(app_module, "_gc_frozen", False)
    off = ReceiverApp(ReceiverSettings(freeze_gc_at_startup=False), inbox=inbox, secret_sources=[source])
    with TestClient(off.asgi):
        assert frozen == []
    receiver = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[source])
    for _ in range(2):  # once per process
        with TestClient(receiver.asgi) as client:
            body = delivery(7)
            assert client.post(PATH, content=body, headers=headers_for(body)).status_code == 200
            assert inbox._writer is not None
        assert inbox._writer is None  # closed at shutdown; the inbox stays usable
    assert frozen == [True]
    assert inbox.get("factory", 7) is not None
