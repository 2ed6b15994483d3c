"""Every error class, and that no secret reaches a message, a repr or a log.

The emulator cannot provoke some of these (an HTTP-date Retry-After sequence, a 403, GraphQL errors
that echo a secret); respx answers in place of the network for those, below our retry transport.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time

import httpx
import pytest
import respx
from graphql import build_schema

from airflow_provider_ion.exceptions import (
    IonAuthError,
    IonConcurrencyError,
    IonError,
    IonGraphQLError,
    IonNotFoundError,
    IonPaginationError,
    IonRetryExhausted,
    IonTransportError,
)
from airflow_provider_ion.graphql import schema_sdl
from airflow_provider_ion.hooks import _retry
from airflow_provider_ion.hooks.ion import IonHook
from airflow_provider_ion.hooks.schema import pin_schema

from .conftest import CLIENT_SECRET, SHARED_SECRET

API = "http://ion.test"
GRAPHQL = f"{API}/graphql"
TOKEN_URL = "http://auth.test/realms/api-keys/protocol/openid-connect/token"
TOKEN = "tok-Abcdefghijklmnop-0123456789"
CREATE = {"input": {"name": "qa", "webhookUri": "https://x.test/h", "sharedSecret": SHARED_SECRET}}


def ok_token(route: respx.Route, token: str = TOKEN) -> None:
    route.mock(return_value=httpx.Response(200, json={"access_token": token, "expires_in": 300}))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry delays instead of sleeping them."""
    recorded: list[float] = []
    monkeypatch.setattr(_retry, "_sync_sleep", recorded.append)
    return recorded


@pytest.fixture
def hook(ion_connection) -> IonHook:
    conn_id = ion_connection("ion_mock", host=API, token_url=TOKEN_URL, max_retries=3)
    hook = IonHook(conn_id, backoff_base=0.001, backoff_cap=0.002)
    # These tests mock single HTTP exchanges: give the hook the published schema instead of introspecting.
    pin_schema(conn_id, hook.graphql_url, build_schema(schema_sdl()))
    return hook


@pytest.fixture
def net():
    with respx.mock(assert_all_called=False) as router:
        yield router


def assert_clean(exc: BaseException, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    out = capsys.readouterr()
    for where in (str(exc), repr(exc), caplog.text, out.out, out.err, json.dumps(getattr(exc, "errors", []))):
        for secret in (CLIENT_SECRET, SHARED_SECRET, TOKEN):
            assert secret not in where


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# --- auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "unauthorized_client", "error_description": "Invalid client secret"}),
        (400, {"error": "invalid_client"}),
        (401, None),
    ],
)
def test_token_endpoint_refusal(hook, net, caplog, capsys, status, body) -> None:
    net.post(TOKEN_URL).mock(return_value=httpx.Response(status, json=body) if body else httpx.Response(status))
    graphql = net.post(GRAPHQL)
    with pytest.raises(IonAuthError) as info:
        hook.execute("Ping")
    text = str(info.value)
    assert "Connection 'ion_mock'" in text and TOKEN_URL in text and f"HTTP {status}" in text
    assert "client id (login 'client-id') and client secret (password)" in text
    if body:
        assert body["error"] in text
    assert info.value.status_code == status and info.value.conn_id == "ion_mock"
    assert not graphql.called
    assert_clean(info.value, caplog, capsys)


def test_token_request_form(hook, net) -> None:
    token = net.post(TOKEN_URL)
    ok_token(token)
    net.post(GRAPHQL).mock(return_value=httpx.Response(200, json={"data": {"x": 1}}))
    hook.execute("Ping")
    form = dict(httpx.QueryParams(token.calls[0].request.content.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "client-id",
        "client_secret": CLIENT_SECRET,
        "audience": API,
    }


def test_token_endpoint_unavailable_exhausts(hook, net, sleeps, caplog, capsys) -> None:
    route = net.post(TOKEN_URL).mock(return_value=httpx.Response(503))
    with pytest.raises(IonRetryExhausted) as info:
        hook.execute("Ping")
    assert route.call_count == 4 and len(sleeps) == 3
    assert "token request" in str(info.value) and "HTTP 503 after 4 attempts" in str(info.value)
    assert_clean(info.value, caplog, capsys)


def test_graphql_401_twice_refreshes_once_then_fails(hook, net, caplog, capsys) -> None:
    token = net.post(TOKEN_URL)
    token.side_effect = [
        httpx.Response(200, json={"access_token": TOKEN, "expires_in": 300}),
        httpx.Response(200, json={"access_token": TOKEN + "2", "expires_in": 300}),
    ]
    graphql = net.post(GRAPHQL).mock(return_value=httpx.Response(401, json={"errors": [{"message": "no"}]}))
    with pytest.raises(IonAuthError) as info:
        hook.execute("Ping")
    assert token.call_count == 2 and graphql.call_count == 2
    sent = [c.request.headers["authorization"] for c in graphql.calls]
    assert sent == [f"Bearer {TOKEN}", f"Bearer {TOKEN}2"]
    assert "even after one refresh" in str(info.value) and "ion_mock" in str(info.value)
    assert info.value.status_code == 401
    assert_clean(info.value, caplog, capsys)


def test_graphql_401_once_is_healed_by_a_fresh_token(hook, net) -> None:
    token = net.post(TOKEN_URL)
    token.side_effect = [
        httpx.Response(200, json={"access_token": "old-token", "expires_in": 300}),
        httpx.Response(200, json={"access_token": "new-token", "expires_in": 300}),
    ]
    graphql = net.post(GRAPHQL)
    graphql.side_effect = [httpx.Response(401), httpx.Response(200, json={"data": {"ok": True}})]
    assert hook.execute("Ping") == {"ok": True}
    assert graphql.calls[-1].request.headers["authorization"] == "Bearer new-token"


def test_403_is_an_auth_error_naming_the_operation(hook, net, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(return_value=httpx.Response(403))
    with pytest.raises(IonAuthError, match=r"refused access.*CreateWebhookReceiver") as info:
        hook.execute("CreateWebhookReceiver", CREATE)
    assert graphql.call_count == 1
    assert_clean(info.value, caplog, capsys)


def test_raw_auth_scheme_sends_the_bare_token(ion_connection, net) -> None:
    conn_id = ion_connection("ion_raw", host=API, token_url=TOKEN_URL, auth_scheme="raw")
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(return_value=httpx.Response(200, json={"data": {"x": 1}}))
    IonHook(conn_id).execute("Ping")
    assert graphql.calls[0].request.headers["authorization"] == TOKEN


# --- GraphQL errors ----------------------------------------------------------------------------------


def errors(*errs: dict) -> httpx.Response:
    return httpx.Response(200, json={"data": None, "errors": list(errs)})


def test_graphql_error_shows_first_message_and_path(hook, net, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(
        return_value=errors(
            {
                "message": "Bad webhookUri",
                "path": ["createWebhookReceiver", "input"],
                "extensions": {"code": "BAD_USER_INPUT"},
            },
            {"message": "second"},
        )
    )
    with pytest.raises(IonGraphQLError) as info:
        hook.execute("CreateWebhookReceiver", CREATE)
    exc = info.value
    assert type(exc) is IonGraphQLError
    assert str(exc) == (
        "CreateWebhookReceiver failed: Bad webhookUri (path: createWebhookReceiver.input) [BAD_USER_INPUT] "
        "(+1 more error)"
    )
    assert exc.codes == ["BAD_USER_INPUT"] and len(exc.errors) == 2
    assert exc.operation_name == "CreateWebhookReceiver"
    assert_clean(exc, caplog, capsys)


def test_a_secret_echoed_by_the_server_is_redacted(hook, net, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(return_value=errors({"message": f"sharedSecret {SHARED_SECRET} is weak"}))
    with pytest.raises(IonGraphQLError) as info:
        hook.execute("CreateWebhookReceiver", CREATE)
    assert "sharedSecret *** is weak" in str(info.value)
    assert_clean(info.value, caplog, capsys)


def test_not_found(hook, net) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(return_value=errors({"message": "gone", "extensions": {"code": "NOT_FOUND"}}))
    with pytest.raises(IonNotFoundError):
        hook.execute("GetWebhookReceiver", {"id": "9"})
    assert hook.get_receiver(9) is None
    assert hook.get_subscription(9) is None
    assert hook.get_event(9) is None
    assert hook.get_receiver_secret(9) is None


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(409, json={"errors": [{"message": "stale", "extensions": {"code": "CONCURRENCY_CONFLICT"}}]}),
        httpx.Response(409, text="Conflict"),
        errors({"message": "stale", "extensions": {"code": "CONCURRENCY_CONFLICT", "id": "12"}}),
    ],
    ids=["409-json", "409-bare", "200-code"],
)
def test_concurrency_conflict(hook, net, sleeps, answer, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(return_value=answer)
    with pytest.raises(IonConcurrencyError) as info:
        hook.update_receiver(12, "etag-1", active=False, shared_secret=SHARED_SECRET)
    assert info.value.object_id == "12"
    assert "re-read it for the current _etag" in str(info.value)
    assert graphql.call_count == 1 and sleeps == []
    assert_clean(info.value, caplog, capsys)


# --- HTTP failures and retries -------------------------------------------------------------------


def test_query_retries_a_429_sequence_with_http_date_retry_after(hook, net, sleeps) -> None:
    ok_token(net.post(TOKEN_URL))
    past = email.utils.formatdate(time.time() - 5, usegmt=True)
    future = email.utils.formatdate(time.time() + 3600, usegmt=True)
    graphql = net.post(GRAPHQL)
    graphql.side_effect = [
        httpx.Response(429, headers={"Retry-After": past}),
        httpx.Response(429, headers={"Retry-After": future}),
        httpx.Response(200, json={"data": {"ok": 1}}),
    ]
    assert hook.execute("Ping") == {"ok": 1}
    assert graphql.call_count == 3
    assert sleeps == [0.0, 0.002]  # a past date means now; a far one is capped at backoff_cap


def test_mutation_is_retried_on_429(hook, net, sleeps) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL)
    graphql.side_effect = [
        httpx.Response(429, json={"errors": [{"message": "Too Many Requests"}]}, headers={"Retry-After": "0"}),
        httpx.Response(200, json={"data": {"createWebhookReceiver": {"webhookReceiver": {"id": "1"}}}}),
    ]
    assert hook.create_receiver("qa", "https://x.test/h") == {"id": "1"}
    assert graphql.call_count == 2


def test_429_exhausted_is_retry_exhausted_even_with_a_json_body(hook, net, sleeps, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(
        return_value=httpx.Response(429, json={"errors": [{"message": "Too Many Requests"}]})
    )
    with pytest.raises(IonRetryExhausted) as info:
        hook.execute("CreateWebhookReceiver", CREATE)
    exc = info.value
    assert (exc.status_code, exc.attempts, exc.may_have_executed) == (429, 4, False)
    assert graphql.call_count == 4 and len(sleeps) == 3
    assert "CreateWebhookReceiver" in str(exc) and "HTTP 429 after 4 attempts" in str(exc)
    assert_clean(exc, caplog, capsys)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_query_5xx_exhausted(hook, net, sleeps, status) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(return_value=httpx.Response(status, text="<html>gateway</html>"))
    with pytest.raises(IonRetryExhausted) as info:
        hook.execute("ListWebhookReceivers")
    assert (info.value.status_code, info.value.attempts, info.value.operation_name) == (
        status, 4, "ListWebhookReceivers",
    )  # fmt: skip
    assert graphql.call_count == 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_mutation_5xx_is_not_retried(hook, net, sleeps, status, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(return_value=httpx.Response(status))
    with pytest.raises(IonTransportError) as info:
        hook.execute("CreateWebhookReceiver", CREATE)
    exc = info.value
    assert type(exc) is IonTransportError
    assert exc.may_have_executed and exc.attempts == 1 and exc.status_code == status
    assert "ION may have executed this mutation" in str(exc)
    assert graphql.call_count == 1 and sleeps == []
    assert_clean(exc, caplog, capsys)


def test_mutation_read_timeout_is_not_retried(hook, net, sleeps) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(IonTransportError) as info:
        hook.execute("CreateWebhookReceiver", CREATE)
    assert info.value.may_have_executed and "ReadTimeout" in str(info.value)
    assert graphql.call_count == 1


def test_query_read_timeout_is_retried(hook, net, sleeps) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL)
    graphql.side_effect = [httpx.ReadTimeout("slow"), httpx.Response(200, json={"data": {"ok": 1}})]
    assert hook.execute("Ping") == {"ok": 1}


def test_unexpected_status_is_a_transport_error(hook, net) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(return_value=httpx.Response(418, text="teapot"))
    with pytest.raises(IonTransportError) as info:
        hook.execute("Ping")
    assert type(info.value) is IonTransportError and info.value.status_code == 418


def test_non_graphql_answer(hook, net) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(return_value=httpx.Response(200, text="<html>login page</html>"))
    with pytest.raises(IonTransportError, match="did not answer with GraphQL"):
        hook.execute("Ping")


def test_gql_debug_logs_never_carry_the_payload(hook, net, caplog, capsys) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(
        return_value=httpx.Response(
            200,
            json={"data": {"createWebhookReceiver": {"webhookReceiver": {"id": "1", "sharedSecret": SHARED_SECRET}}}},
        )
    )
    created = hook.create_receiver("qa", "https://x.test/h", shared_secret=SHARED_SECRET)
    assert created["sharedSecret"] == SHARED_SECRET  # returned to the caller, masked for logs
    out = capsys.readouterr()
    for where in (caplog.text, out.out, out.err):
        assert SHARED_SECRET not in where and CLIENT_SECRET not in where and TOKEN not in where


def test_shared_secrets_are_registered_with_airflows_masker(hook, net) -> None:
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(
        return_value=httpx.Response(200, json={"data": {"webhookReceiver": {"id": "1", "sharedSecret": SHARED_SECRET}}})
    )
    assert hook.get_receiver_secret(1) == SHARED_SECRET
    assert SHARED_SECRET not in str(airflow_redact(f"x {SHARED_SECRET} y"))


# --- real connection failures (no mock) ------------------------------------------------------------


def test_connect_error_on_a_closed_port_is_retried_then_exhausted(ion_connection, sleeps, caplog, capsys) -> None:
    conn_id = ion_connection(
        "ion_closed", host="http://127.0.0.1:1", token_url="http://127.0.0.1:1/token", max_retries=2
    )
    with pytest.raises(IonRetryExhausted) as info:
        IonHook(conn_id).execute("CreateWebhookReceiver", CREATE)
    assert "cannot reach the ION token endpoint http://127.0.0.1:1/token" in str(info.value)
    assert info.value.attempts == 3 and len(sleeps) == 2 and not info.value.may_have_executed
    assert_clean(info.value, caplog, capsys)


def test_test_connection_reports_failures_without_secrets(ion_connection) -> None:
    conn_id = ion_connection("ion_tc", host="http://127.0.0.1:1", token_url="http://127.0.0.1:1/t", max_retries=0)
    ok, message = IonHook(conn_id).test_connection()
    assert not ok and "cannot reach the ION token endpoint" in message and CLIENT_SECRET not in message
    ok, message = IonHook("ion_absent").test_connection()
    assert not ok and "ion_absent" in message


def test_test_connection_on_a_broken_connection(ion_connection) -> None:
    conn_id = ion_connection("ion_broken", login=None, environment="staging")
    ok, message = IonHook(conn_id).test_connection()
    assert not ok and "has no client id (login)" in message


# --- pagination guards ---------------------------------------------------------------------------


def page(nodes, cursor, more):
    return httpx.Response(
        200,
        json={"data": {"webhookReceivers": {
            "totalCount": 9, "pageInfo": {"hasNextPage": more, "endCursor": cursor},
            "edges": [{"node": n} for n in nodes],
        }}},
    )  # fmt: skip


def test_a_repeated_cursor_stops_pagination(hook, net) -> None:
    ok_token(net.post(TOKEN_URL))
    graphql = net.post(GRAPHQL)
    graphql.side_effect = [page([{"id": "1"}], "c1", True), page([{"id": "2"}], "c1", True)]
    seen = []
    with pytest.raises(IonPaginationError, match="cursor 'c1' twice"):
        seen.extend(hook.paginate("ListWebhookReceivers", page_size=1))
    assert seen == [{"id": "1"}, {"id": "2"}]
    sent = [json.loads(c.request.content)["variables"] for c in graphql.calls]
    assert sent == [{"first": 1, "after": None}, {"first": 1, "after": "c1"}]


def test_connection_path(hook, net) -> None:
    ok_token(net.post(TOKEN_URL))
    net.post(GRAPHQL).mock(
        return_value=httpx.Response(200, json={"data": {"a": {"b": {"edges": [{"node": {"id": 1}}]}}, "c": 1}})
    )
    with pytest.raises(ValueError, match="2 top-level fields"):
        list(hook.paginate("query Q($first: Int, $after: String) { a { b { edges { node { id } } } } c }"))
    assert list(
        hook.paginate(
            "query Q($first: Int, $after: String) { a { b { edges { node { id } } } } c }", connection_path="a.b"
        )
    ) == [{"id": 1}]


def test_every_error_is_an_ion_error_and_an_airflow_exception() -> None:
    from airflow.exceptions import AirflowException

    for cls in (IonAuthError, IonConcurrencyError, IonGraphQLError, IonNotFoundError, IonPaginationError,
                IonRetryExhausted, IonTransportError):  # fmt: skip
        assert issubclass(cls, IonError) and issubclass(cls, AirflowException)
