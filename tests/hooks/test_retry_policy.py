"""The retry policy (pure) and the transports that apply it, over httpx.MockTransport."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from airflow_provider_ion.hooks._retry import (
    ATTEMPTS_EXT,
    MUTATION_EXT,
    OPERATION_EXT,
    RetryPolicy,
    RetryTransport,
    parse_retry_after,
)

NOW = 1_800_000_000.0
REQ = httpx.Request("POST", "https://ion.test/graphql")


def policy(**kw) -> RetryPolicy:
    kw.setdefault("rng", lambda: 1.0)  # the top of the jitter range: deterministic
    kw.setdefault("clock", lambda: NOW)
    return RetryPolicy(**kw)


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


NEVER_SENT = [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")]
MAYBE_SENT = [
    httpx.ReadTimeout("slow"),
    httpx.WriteTimeout("slow"),
    httpx.ReadError("reset"),
    httpx.WriteError("broken pipe"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
]


# --- the decision table ----------------------------------------------------------------------------


@pytest.mark.parametrize("is_mutation", [False, True])
@pytest.mark.parametrize("exc", NEVER_SENT, ids=lambda e: type(e).__name__)
def test_never_sent_is_retried_for_queries_and_mutations(exc, is_mutation) -> None:
    assert policy().decide(1, exc, is_mutation) == 0.5


@pytest.mark.parametrize("exc", MAYBE_SENT, ids=lambda e: type(e).__name__)
def test_maybe_sent_is_retried_for_queries_only(exc) -> None:
    assert policy().decide(1, exc, is_mutation=False) == 0.5
    assert policy().decide(1, exc, is_mutation=True) is None


@pytest.mark.parametrize("is_mutation", [False, True])
def test_429_is_retried_for_both(is_mutation) -> None:
    assert policy().decide(1, response(429), is_mutation) == 0.5


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_retry_queries_never_mutations(status) -> None:
    assert policy().decide(1, response(status), is_mutation=False) == 0.5
    assert policy().decide(1, response(status), is_mutation=True) is None


@pytest.mark.parametrize("status", [200, 201, 301, 400, 401, 403, 404, 409, 422, 500, 501, 505])
@pytest.mark.parametrize("is_mutation", [False, True])
def test_other_statuses_are_not_retried(status, is_mutation) -> None:
    assert policy().decide(1, response(status), is_mutation) is None


@pytest.mark.parametrize(
    "exc",
    [httpx.UnsupportedProtocol("ftp"), httpx.LocalProtocolError("bad"), ValueError("x")],
    ids=lambda e: type(e).__name__,
)
def test_programming_errors_are_not_retried(exc) -> None:
    assert policy().decide(1, exc, is_mutation=False) is None


def test_max_retries_bounds_the_attempts() -> None:
    p = policy(max_retries=3)
    assert [p.decide(a, response(503), False) is not None for a in (1, 2, 3, 4, 5)] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert policy(max_retries=0).decide(1, response(429), True) is None


def test_backoff_is_exponential_and_capped() -> None:
    p = policy(backoff_base=0.5, backoff_cap=30.0, max_retries=10)
    assert [p.decide(a, response(503), False) for a in range(1, 10)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0,
    ]  # fmt: skip


def test_backoff_uses_full_jitter() -> None:
    draws = iter([0.0, 0.25, 0.999])
    p = policy(backoff_base=1.0, rng=lambda: next(draws))
    assert p.decide(3, response(503), False) == 0.0
    assert p.decide(3, response(503), False) == 1.0
    assert p.decide(3, response(503), False) == pytest.approx(3.996)
    real = RetryPolicy(backoff_base=1.0)
    delays = {real.backoff(4) for _ in range(200)}
    assert all(0 <= d <= 8.0 for d in delays) and len(delays) > 100


def test_retry_after_seconds_wins_over_backoff_and_is_capped() -> None:
    assert policy().decide(1, response(429, **{"Retry-After": "3"}), True) == 3.0
    assert policy().decide(1, response(503, **{"Retry-After": "2"}), False) == 2.0
    assert policy(backoff_cap=30).decide(1, response(429, **{"Retry-After": "3600"}), True) == 30.0
    assert policy(retry_after_cap=5).decide(1, response(429, **{"Retry-After": "60"}), True) == 5.0


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(NOW + 7, usegmt=True)
    assert policy().decide(1, response(429, **{"Retry-After": date}), True) == pytest.approx(7.0)


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    assert policy().decide(2, response(429, **{"Retry-After": "soon"}), True) == 1.0


def test_retry_after_does_not_make_a_mutation_5xx_retryable() -> None:
    assert policy().decide(1, response(503, **{"Retry-After": "1"}), True) is None


# --- Retry-After parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # in the past: now
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 32 Foo 2015 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value, expected) -> None:
    got = parse_retry_after(value, now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_parse_retry_after_naive_date_is_gmt() -> None:
    value = email.utils.formatdate(NOW + 10, usegmt=True).replace(" GMT", "")
    assert parse_retry_after(value, now=NOW) == pytest.approx(10.0)


# --- the transports ----------------------------------------------------------------------------------


def scripted(outcomes):
    """A MockTransport answering with ``outcomes`` in order (exceptions are raised)."""
    seen: list[httpx.Request] = []
    it = iter(outcomes)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        outcome = next(it)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return handler, seen


def request(mutation: bool) -> httpx.Request:
    return httpx.Request(
        "POST", "https://ion.test/graphql", json={"query": "x"},
        extensions={MUTATION_EXT: mutation, OPERATION_EXT: "Op"},
    )  # fmt: skip


def test_sync_transport_retries_then_returns_with_attempt_count() -> None:
    handler, seen = scripted([httpx.Response(503), httpx.ConnectError("x"), httpx.Response(200, json={})])
    sleeps: list[float] = []
    t = RetryTransport(httpx.MockTransport(handler), policy(), sleep=sleeps.append)
    got = t.handle_request(request(mutation=False))
    assert got.status_code == 200 and len(seen) == 3
    assert got.extensions[ATTEMPTS_EXT] == 3
    assert sleeps == [0.5, 1.0]
    assert all(r.content == b'{"query":"x"}' for r in seen)  # the body is resent intact


def test_sync_transport_mutation_gives_up_on_first_503() -> None:
    handler, seen = scripted([httpx.Response(503), httpx.Response(200)])
    t = RetryTransport(httpx.MockTransport(handler), policy(), sleep=lambda _: None)
    assert t.handle_request(request(mutation=True)).status_code == 503
    assert len(seen) == 1


def test_sync_transport_reraises_with_attempts() -> None:
    handler, seen = scripted([httpx.ConnectError("x")] * 3)
    t = RetryTransport(httpx.MockTransport(handler), policy(max_retries=2), sleep=lambda _: None)
    with pytest.raises(httpx.ConnectError) as info:
        t.handle_request(request(mutation=True))
    assert info.value.ion_attempts == 3 and len(seen) == 3


def test_sync_transport_mutation_read_timeout_is_not_retried() -> None:
    handler, seen = scripted([httpx.ReadTimeout("x"), httpx.Response(200)])
    t = RetryTransport(httpx.MockTransport(handler), policy(), sleep=lambda _: None)
    with pytest.raises(httpx.ReadTimeout):
        t.handle_request(request(mutation=True))
    assert len(seen) == 1
