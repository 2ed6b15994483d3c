"""Webhook delivery from the emulator to a real HTTP receiver on 127.0.0.1.

The receiver here is a small recording Starlette app under uvicorn (it answers what the test queues
and remembers every request), so each test can prove one rule of the sender: body and signature,
matching, retries with the audit trail read back through IonHook, the HTTPS rule and every fault.
The last tests deliver into the provider's own receiver app and inbox.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_ion.testing.emulator.server import EmulatorServer
from airflow_provider_ion.webhooks.signature import SignatureScheme, verify
from tests.servers import serve

from .conftest import GraphQL

SECRET = "receiver-secret-0123456789abcdef"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Recorder:
    """What the receiver saw, and what it will answer (``statuses`` first, then ``default_status``)."""

    requests: list[Seen] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    default_status: int = 200
    delay: float = 0.0
    disconnects: int = 0
    inflight: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.statuses.clear()
            self.default_status, self.delay, self.disconnects, self.inflight, self.max_inflight = 200, 0.0, 0, 0, 0

    def event_ids(self) -> list[int]:
        with self.lock:
            return [seen.event["event_id"] for seen in self.requests]

    async def handle(self, request: Request) -> Response:
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            try:
                body = await request.body()
            except ClientDisconnect:
                with self.lock:
                    self.disconnects += 1
                return Response(status_code=400)
            if self.delay:
                await asyncio.sleep(self.delay)
            with self.lock:
                self.requests.append(Seen(request.url.path, dict(request.headers), body, time.monotonic()))
                status = self.statuses.popleft() if self.statuses else self.default_status
            return Response(b"ok", status_code=status)
        finally:
            with self.lock:
                self.inflight -= 1


@pytest.fixture(scope="module")
def recorder_server() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = Starlette(routes=[Route("/hooks/{name}", recorder.handle, methods=["POST"])])
    with serve(app) as url:
        yield recorder, url


@pytest.fixture
def recorder(recorder_server) -> Recorder:
    recorder_server[0].clear()
    return recorder_server[0]


@pytest.fixture
def hook_url(recorder_server) -> str:
    return recorder_server[1] + "/hooks/"


@pytest.fixture
def ion(emulator: EmulatorServer) -> EmulatorServer:
    """The session emulator with a short retry schedule (reset puts the defaults back)."""
    emulator.configure_deliveries(retry_schedule=(0.05, 0.1, 0.2), max_attempts=4, timeout=5)
    return emulator


def subscribe(ion: EmulatorServer, url: str, *pairs: str, **receiver: object) -> dict:
    """A receiver at ``url`` subscribed to each ``"RESOURCE/ACTION"``; returns the receiver."""
    created = ion.store.create_receiver({"name": "factory", "webhookUri": url, "sharedSecret": SECRET, **receiver})
    for pair in pairs:
        resource, action = pair.split("/")
        ion.store.create_subscription({"receiverId": created["id"], "resource": resource, "action": action})
    return created


def ion_hook(conn_id: str):
    from airflow_provider_ion.hooks.ion import IonHook

    return IonHook(conn_id)


# ---- what is sent --------------------------------------------------------------------------------


def test_signed_body_headers_and_audit_trail(ion, recorder, hook_url, gql: GraphQL, ion_default_conn) -> None:
    headers = [{"key": "X-Tenant", "value": "acme"}, {"key": "X-Ion-Signature", "value": "spoofed"}]
    receiver = subscribe(ion, hook_url + "factory", "RUNS/CREATE", headers=headers)
    created = gql('mutation { createRun(input: {title: "R-1", workcenter: "WC-1"}) { run { id title } } }')
    assert created.status_code == 200 and "errors" not in created.json(), created.text
    assert ion.wait_for_deliveries(10)

    [seen] = recorder.requests
    assert seen.path == "/hooks/factory"
    event = seen.event
    # event ids come from the clock, so a restarted emulator never repeats one (like ION's)
    assert seen.body.startswith(b'{"event_id": %d, "subscription_id": 1, "resource": "RUNS"' % event["event_id"])
    assert isinstance(event["event_id"], int) and event["event_id"] > 10**15
    assert list(event) == ["event_id", "subscription_id", "resource", "action", "data", "created_at"]
    assert (event["action"], event["data"]["title"], event["data"]["workcenter"]) == ("CREATE", "R-1", "WC-1")
    assert verify(seen.body, seen.headers["x-ion-signature"], [SECRET])  # the receiver's own secret wins
    assert seen.headers["x-tenant"] == "acme" and seen.headers["content-type"] == "application/json"

    with ion_hook(ion_default_conn) as hook:
        [row] = hook.list_events(receiver_id=receiver["id"])
        full = hook.get_event(row["id"])
    assert (row["status"], row["attempts"], row["lastResponseCode"], row["lastError"]) == ("SUCCESS", 1, 200, None)
    assert row["deliveredAt"] is not None and int(row["id"]) == event["event_id"]
    assert full is not None and full["resource"] == "RUNS"
    stored = ion.store.get("events", row["id"])
    assert stored is not None and stored["payload"] == event


def test_mutation_answers_before_the_delivery(ion, recorder, hook_url, gql: GraphQL) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    recorder.delay = 1.0
    started = time.monotonic()
    gql('mutation { createRun(input: {title: "slow receiver"}) { run { id } } }').raise_for_status()
    assert time.monotonic() - started < 0.5
    assert [e["status"] for e in ion.store.list("events")] == ["PENDING"]
    assert ion.wait_for_deliveries(10)
    assert ion.store.list("events")[0]["status"] == "SUCCESS"


def test_scheme_is_configurable(ion, recorder, hook_url) -> None:
    scheme = SignatureScheme(header="x-custom-sig", algorithm="sha512", encoding="base64", prefix="")
    ion.configure_deliveries(scheme=scheme)
    subscribe(ion, hook_url + "factory", "ISSUES/CREATE")
    ion.fire("ISSUES", "CREATE", {"id": 7})
    assert ion.wait_for_deliveries(10)
    [seen] = recorder.requests
    assert "x-ion-signature" not in seen.headers
    assert verify(seen.body, seen.headers["x-custom-sig"], [SECRET], scheme)


def test_one_delivery_per_active_matching_subscription(ion, recorder, hook_url) -> None:
    active = subscribe(ion, hook_url + "a", "RUNS/CREATE", "RUNS/CREATE", "RUNS/UPDATE")
    off = ion.store.create_subscription({"receiverId": active["id"], "resource": "ISSUES", "action": "CREATE"})
    ion.store.update_subscription({"id": off["id"], "etag": off["_etag"], "active": False})
    inactive = ion.store.create_receiver({"name": "b", "webhookUri": hook_url + "b", "active": False})
    ion.store.create_subscription({"receiverId": inactive["id"], "resource": "RUNS", "action": "CREATE"})

    run = ion.store.create_object("runs", {"title": "R"})
    ion.store.update_object("runs", {"id": run["id"], "etag": run["_etag"], "status": "DONE"})
    assert ion.fire("ISSUES", "CREATE", {"id": 1}) == []
    assert ion.fire("PARTS", "DELETE", {"id": 1}) == []
    assert ion.wait_for_deliveries(10)

    seen = sorted((s.path, s.event["subscription_id"], s.event["action"]) for s in recorder.requests)
    assert seen == [("/hooks/a", 1, "CREATE"), ("/hooks/a", 2, "CREATE"), ("/hooks/a", 3, "UPDATE")]
    assert len({s.event["event_id"] for s in recorder.requests}) == 3
    assert ion.stats["deliveries"]["events"] == 3


# ---- retries and the audit trail ------------------------------------------------------------------


def test_retries_until_success_with_audit_trail(ion, recorder, hook_url, ion_default_conn) -> None:
    ion.configure_deliveries(retry_schedule=(0.8, 0.1), max_attempts=5)
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    recorder.statuses.extend([503, 500])
    with ion_hook(ion_default_conn) as hook:
        hook.list_receivers()  # token and schema learned before the clock starts
        [event] = ion.fire("RUNS", "CREATE", {"id": 1})
        assert event["status"] == "PENDING" and event["attempts"] == 0

        deadline = time.monotonic() + 0.5  # well inside the first 0.8 s wait
        while ion.store.get("events", event["id"])["attempts"] == 0 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.01)
        midway = hook.get_event(event["id"])
        assert midway is not None
        assert (midway["status"], midway["attempts"], midway["lastResponseCode"]) == ("RETRYING", 1, 503)
        assert midway["lastError"] == "HTTP 503 (expected 200)"
        assert ion.wait_for_deliveries(10)
        done = hook.get_event(event["id"])
    assert done is not None
    assert (done["status"], done["attempts"], done["lastResponseCode"], done["lastError"]) == ("SUCCESS", 3, 200, None)
    times = [s.at for s in recorder.requests]
    assert len(times) == 3 and times[1] - times[0] >= 0.75 and times[2] - times[1] >= 0.08
    assert len({s.body for s in recorder.requests}) == 1  # the same bytes on every attempt
    stats = ion.stats["deliveries"]
    assert (stats["attempts"], stats["retries"], stats["succeeded"], stats["failed"]) == (3, 2, 1, 0)


def test_failed_after_max_attempts(ion, recorder, hook_url, ion_default_conn) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    recorder.default_status = 500
    [event] = ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    with ion_hook(ion_default_conn) as hook:
        [failed] = hook.list_events(status="FAILED")
    assert (failed["id"], failed["attempts"], failed["lastResponseCode"]) == (str(event["id"]), 4, 500)
    assert failed["deliveredAt"] is None
    assert len(recorder.requests) == 4
    assert ion.stats["deliveries"]["failed"] == 1


def test_unreachable_receiver_fails_with_the_connection_error(ion, hook_url) -> None:
    from airflow_provider_ion.testing.local_airflow import free_port

    ion.configure_deliveries(max_attempts=2)
    subscribe(ion, f"http://127.0.0.1:{free_port()}/nobody", "RUNS/CREATE")
    [event] = ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    stored = ion.store.get("events", event["id"])
    assert stored is not None and (stored["status"], stored["attempts"], stored["lastResponseCode"]) == (
        "FAILED",
        2,
        None,
    )
    assert stored["lastError"].startswith("connection failed")


def test_success_is_the_expected_response_code(ion, recorder, hook_url) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE", expectedResponseCode=202)
    recorder.default_status = 200
    [strict] = ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    assert ion.store.get("events", strict["id"])["status"] == "FAILED"  # type: ignore[index]

    ion.configure_deliveries(accept_any_2xx=True)
    [lenient] = ion.fire("RUNS", "CREATE", {"id": 2})
    recorder.default_status = 202
    [exact] = ion.fire("RUNS", "CREATE", {"id": 3})
    assert ion.wait_for_deliveries(10)
    assert ion.store.get("events", lenient["id"])["status"] == "SUCCESS"  # type: ignore[index]
    assert ion.store.get("events", exact["id"])["status"] == "SUCCESS"  # type: ignore[index]


def test_plain_http_only_to_loopback(ion, recorder, hook_url) -> None:
    # Refused before any connection is opened: nothing leaves 127.0.0.1 (even with loopback_only off,
    # which the session's emulator has on).
    ion.configure_deliveries(loopback_only=False)
    subscribe(ion, "http://receiver.example.com/hooks/factory", "RUNS/CREATE")
    [remote] = ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    event = ion.store.get("events", remote["id"])
    assert event is not None and (event["status"], event["attempts"]) == ("FAILED", 1)
    assert "HTTPS" in event["lastError"]

    ion.store.reset()
    ion.configure_deliveries(loopback_only=True)
    subscribe(ion, "https://receiver.example.com/hooks/factory", "RUNS/CREATE")
    [guarded] = ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    assert "loopback" in ion.store.get("events", guarded["id"])["lastError"]  # type: ignore[index]

    ion.store.reset()
    ion.configure_deliveries(allow_http_loopback=False)
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    [local] = ion.fire("RUNS", "CREATE", {"id": 2})
    assert ion.wait_for_deliveries(10)
    assert ion.store.get("events", local["id"])["status"] == "FAILED"  # type: ignore[index]
    assert recorder.requests == []


def test_reset_cancels_queued_deliveries(ion, recorder, hook_url) -> None:
    ion.configure_deliveries(retry_schedule=(60,))
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    recorder.default_status = 503
    ion.fire("RUNS", "CREATE", {"id": 1})
    deadline = time.monotonic() + 5
    while not recorder.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ion.deliveries.pending == 1 and not ion.wait_for_deliveries(0.1)
    ion.reset()
    assert ion.wait_for_deliveries(0) and ion.stats["deliveries"]["pending"] == 0
    assert ion.delivery_settings.retry_schedule[0] == 10  # the defaults again


# ---- concurrency and order ------------------------------------------------------------------------


def test_bounded_concurrency_and_order(ion, recorder, hook_url) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    ion.configure_deliveries(concurrency=2)
    recorder.delay = 0.1
    for i in range(8):
        ion.fire("RUNS", "CREATE", {"id": i})
    assert ion.wait_for_deliveries(10)
    assert recorder.max_inflight == 2

    recorder.clear()
    ion.configure_deliveries(concurrency=1)
    fired = [ion.fire("RUNS", "CREATE", {"id": i})[0]["id"] for i in range(20)]
    assert ion.wait_for_deliveries(10)
    assert recorder.event_ids() == fired  # one at a time: exactly in order


# ---- faults --------------------------------------------------------------------------------------


def test_duplicate_fault_sends_identical_copies(ion, recorder, hook_url) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    ion.add_delivery_fault("duplicate", copies=3)
    [event] = ion.fire("RUNS", "CREATE", {"id": 1})
    ion.fire("RUNS", "CREATE", {"id": 2})
    assert ion.wait_for_deliveries(10)
    assert sorted(recorder.event_ids()) == [event["id"]] * 3 + [event["id"] + 1]
    copies = [s for s in recorder.requests if s.event["event_id"] == event["id"]]
    assert len({(s.body, s.headers["x-ion-signature"]) for s in copies}) == 1
    assert ion.store.get("events", event["id"])["attempts"] == 1  # type: ignore[index]
    assert ion.stats["deliveries"]["duplicates_sent"] == 2


def test_delay_fault(ion, recorder, hook_url) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    ion.add_delivery_fault("delay", delay=0.5)
    started = time.monotonic()
    ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    assert recorder.requests[0].at - started >= 0.45


@pytest.mark.parametrize("when", ["before", "after"])
def test_drop_fault_is_a_failed_attempt_then_retried(ion, recorder, hook_url, when) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    ion.add_delivery_fault("drop", when=when)
    [event] = ion.fire("RUNS", "CREATE", {"id": 1})
    assert ion.wait_for_deliveries(10)
    stored = ion.store.get("events", event["id"])
    assert stored is not None and (stored["status"], stored["attempts"]) == ("SUCCESS", 2)
    if when == "before":  # the receiver never had the whole body
        deadline = time.monotonic() + 5
        while recorder.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.disconnects == 1 and len(recorder.requests) == 1
    else:  # the receiver answered, the answer was lost: at-least-once means it sees the event twice
        assert recorder.event_ids() == [event["id"], event["id"]]
    assert ion.stats["deliveries"]["dropped"] == 1


def test_reorder_fault_shuffles_a_batch(ion, recorder, hook_url) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE")
    ion.configure_deliveries(concurrency=1)
    ion.add_delivery_fault("reorder", times=10, batch=10, seed=7)
    fired = [ion.fire("RUNS", "CREATE", {"id": i})[0]["id"] for i in range(12)]
    assert ion.wait_for_deliveries(10)
    arrived = recorder.event_ids()
    assert sorted(arrived) == fired and arrived[:10] != fired[:10]
    assert ion.stats["deliveries"]["reordered"] == 10


def test_unlimited_fault_and_filters(ion, recorder, hook_url) -> None:
    subscribe(ion, hook_url + "factory", "RUNS/CREATE", "ISSUES/CREATE")
    ion.add_delivery_fault("duplicate", times=None, resource="ISSUES")
    for i in range(3):
        ion.fire("RUNS", "CREATE", {"id": i})
        ion.fire("ISSUES", "CREATE", {"id": i})
    assert ion.wait_for_deliveries(10)
    resources = [s.event["resource"] for s in recorder.requests]
    assert (resources.count("RUNS"), resources.count("ISSUES")) == (3, 6)
    assert len(ion.deliveries.faults) == 1 and ion.clear_delivery_faults() == 1


def test_graphql_fault_skip(ion, gql: GraphQL) -> None:
    query = "query ListWebhookReceivers { webhookReceivers { pageInfo { totalCount } } }"
    ion.add_fault("status", status=503, operation="ListWebhookReceivers", skip=1)
    assert gql(query).status_code == 200
    assert gql(query).status_code == 503
    assert gql(query).status_code == 200


# ---- control routes --------------------------------------------------------------------------------


def test_control_routes(ion, recorder, hook_url, http: httpx.Client) -> None:
    base = ion.base_url + "/_emulator"
    subscribe(ion, hook_url + "factory", "PARTS/UPDATE")
    settings = http.post(base + "/deliveries/settings", json={"retry_schedule": [0.05], "max_attempts": 2})
    assert settings.json()["settings"]["max_attempts"] == 2
    assert http.post(base + "/deliveries/settings", json={"max_attempts": 0}).status_code == 400
    fault = http.post(base + "/deliveries/faults", json={"kind": "duplicate", "copies": 2, "times": 1})
    assert fault.status_code == 201 and fault.json()["fault"]["copies"] == 2
    assert http.post(base + "/deliveries/faults", json={"kind": "explode"}).status_code == 400

    fired = http.post(base + "/fire", json={"resource": "PARTS", "action": "UPDATE", "data": {"id": 3}})
    assert fired.status_code == 202 and [e["subscriptionId"] for e in fired.json()["events"]] == [1]
    assert http.post(base + "/fire", json={"resource": "PARTS"}).status_code == 400
    assert http.post(base + "/deliveries/wait", json={"timeout": 10}).json() == {"idle": True, "pending": 0}
    assert [s.event["data"] for s in recorder.requests] == [{"id": 3}, {"id": 3}]

    overview = http.get(base + "/deliveries").json()
    assert overview["stats"]["succeeded"] == 1 and overview["faults"] == []
    assert http.get(base + "/stats").json()["deliveries"]["sent"] == 2
    assert http.delete(base + "/deliveries/faults").json() == {"cleared": 0}


def test_cli_delivery_flags() -> None:
    from airflow_provider_ion.cli import build_parser
    from airflow_provider_ion.testing.emulator.cli import delivery_settings

    args = build_parser().parse_args(
        ["emulator", "--retry-schedule", "0.1,0.5,2", "--delivery-concurrency", "4", "--signature-prefix", ""]
    )
    settings = delivery_settings(args)
    assert (settings.retry_schedule, settings.max_attempts, settings.concurrency) == ((0.1, 0.5, 2.0), 4, 4)
    assert settings.scheme.prefix == "" and settings.delay_after(9) == 2.0
    with pytest.raises(ValueError):
        delivery_settings(build_parser().parse_args(["emulator", "--retry-schedule", "soon"]))


# ---- into the provider's receiver and inbox -------------------------------------------------------


def test_delivers_into_the_receiver_app_and_inbox(ion, tmp_path: Path) -> None:
    from airflow_provider_ion.webhooks.app import ReceiverApp, ReceiverSettings
    from airflow_provider_ion.webhooks.inbox import Inbox
    from airflow_provider_ion.webhooks.secrets import ReceiverSecrets

    inbox = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    app = ReceiverApp(
        ReceiverSettings(ion_conn_id=None),
        inbox=inbox,
        secret_sources=[lambda name: ReceiverSecrets((SECRET,)) if name == "factory" else None],
    )
    with serve(app.asgi) as base, inbox:
        subscribe(ion, f"{base}/ion-webhooks/v1/receivers/factory", "RUNS/CREATE", "RUNS/UPDATE")
        ion.add_delivery_fault("duplicate", copies=3, times=None)
        ion.add_delivery_fault("drop", when="after", times=2)
        run = ion.store.create_object("runs", {"title": "R-1"})
        ion.store.update_object("runs", {"id": run["id"], "etag": run["_etag"], "title": "R-1b"})
        for i in range(20):
            ion.fire("RUNS", "CREATE", {"id": 100 + i})
        assert ion.wait_for_deliveries(20)
        events = ion.store.list("events")
        assert len(events) == 22 and {e["status"] for e in events} == {"SUCCESS"}
        stored = inbox.latest(100, receiver="factory")
        assert sorted(int(e.event_id) for e in stored) == sorted(e["id"] for e in events)
        assert app.stats.duplicate >= 22 * 2 and app.stats.rejected == {}
        update = inbox.get("factory", events[1]["id"])
        assert update is not None and update.payload["data"]["title"] == "R-1b"


# ---- HTTPS -----------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_https_receiver(ion, recorder, tmp_path: Path) -> None:
    import uvicorn

    from airflow_provider_ion.testing.emulator.server import bind_socket

    cert_file, key_file = _self_signed(tmp_path)
    app = Starlette(routes=[Route("/hooks/{name}", recorder.handle, methods=["POST"])])
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        ion.configure_deliveries(max_attempts=1)
        subscribe(ion, f"https://127.0.0.1:{sock.getsockname()[1]}/hooks/factory", "RUNS/CREATE")
        [untrusted] = ion.fire("RUNS", "CREATE", {"id": 1})
        assert ion.wait_for_deliveries(10)
        event = ion.store.get("events", untrusted["id"])
        assert event is not None and event["status"] == "FAILED" and "CERTIFICATE" in event["lastError"].upper()

        ion.configure_deliveries(verify_tls=False)
        [trusted] = ion.fire("RUNS", "CREATE", {"id": 2})
        assert ion.wait_for_deliveries(10)
        assert ion.store.get("events", trusted["id"])["status"] == "SUCCESS"  # type: ignore[index]
        [seen] = recorder.requests
        assert verify(seen.body, seen.headers["x-ion-signature"], [SECRET])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
