"""Signature scheme detection (pure): each candidate scheme is found, the settings it names verify."""

from __future__ import annotations

import base64
import hmac

import pytest

from airflow_provider_ion.webhooks.signature import SignatureScheme, sign, verify
from airflow_provider_ion.webhooks.signature_detect import detect, signature_headers

BODY = b'{"event_id": 123456, "subscription_id": 42, "resource": "RUNS", "action": "CREATE", "data": {}}'
SECRET = "k3y-Shared-Secret"


def hm(message: bytes, key: bytes = SECRET.encode(), algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, algorithm).digest()


def settings_verify(match, headers: dict[str, str]) -> bool:
    s = match.settings
    scheme = SignatureScheme(
        header=s["signature_header"], algorithm=s["signature_algorithm"],
        encoding=s["signature_encoding"], prefix=s["signature_prefix"],
    )  # fmt: skip
    return bool(verify(BODY, {k.lower(): v for k, v in headers.items()}[scheme.header], [SECRET], scheme))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Ion-Signature": "sha256=" + hm(BODY).hex()}, ("x-ion-signature", "sha256", "hex", "sha256=")),
        ({"x-ion-signature": hm(BODY).hex()}, ("x-ion-signature", "sha256", "hex", "")),
        ({"x-ion-signature": hm(BODY).hex().upper()}, ("x-ion-signature", "sha256", "hex", "")),
        ({"x-ion-signature": base64.b64encode(hm(BODY)).decode()}, ("x-ion-signature", "sha256", "base64", "")),
        (
            {"x-ion-signature": base64.urlsafe_b64encode(hm(BODY)).decode().rstrip("=")},
            ("x-ion-signature", "sha256", "base64", ""),
        ),
        (
            {"x-ion-signature": "sha512=" + hm(BODY, algorithm="sha512").hex()},
            ("x-ion-signature", "sha512", "hex", "sha512="),
        ),
        ({"X-Hub-Signature": "sha1=" + hm(BODY, algorithm="sha1").hex()}, ("x-hub-signature", "sha1", "hex", "sha1=")),
        (
            {"x-signature": "v1=" + base64.b64encode(hm(BODY)).decode()},
            ("x-signature", "sha256", "base64", "v1="),
        ),
    ],
)
def test_raw_body_schemes_name_settings_that_verify(headers: dict[str, str], expected: tuple) -> None:
    [match, *_] = detect(BODY, headers, [SECRET])
    assert match.scheme == "raw-body"
    assert (match.header, match.algorithm, match.encoding, match.prefix) == expected
    assert settings_verify(match, headers)


def test_several_signatures_in_one_header_and_rotation() -> None:
    old = sign(BODY, "old-secret-value")
    new = sign(BODY, SECRET)
    matches = detect(BODY, {"x-ion-signature": f"{old}, {new}"}, ["nope", SECRET])
    assert matches and matches[0].several_in_header and matches[0].prefix == "sha256="
    assert detect(BODY, {"x-ion-signature": f"{old} {new}"}, ["old-secret-value"])[0].several_in_header


def test_standard_webhooks_id_timestamp_body() -> None:
    msg_id, ts = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "1714000000"
    for key, secret in (
        (SECRET.encode(), SECRET),
        (b"\x01\x02raw-key", "whsec_" + base64.b64encode(b"\x01\x02raw-key").decode()),
    ):
        signature = base64.b64encode(hm(f"{msg_id}.{ts}.".encode() + BODY, key)).decode()
        headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{signature} v1,Zm9v"}
        [match] = detect(BODY, headers, [secret])
        assert (match.scheme, match.header, match.encoding, match.prefix) == (
            "standard-webhooks",
            "webhook-signature",
            "base64",
            "v1,",
        )
        assert match.settings == {} and "cannot verify" in match.note


def test_stripe_t_v1() -> None:
    t = "1714000000"
    v1 = hm(f"{t}.".encode() + BODY).hex()
    [match] = detect(BODY, {"Stripe-Signature": f"t={t},v1={v1},v0=deadbeef"}, [SECRET])
    assert (match.scheme, match.header, match.prefix, match.encoding) == ("stripe", "stripe-signature", "v1=", "hex")


def test_timestamp_header() -> None:
    ts = "2026-12-02T06:00:00Z"
    headers = {"x-ion-timestamp": ts, "x-ion-signature": hm(f"{ts}.".encode() + BODY).hex()}
    [match] = detect(BODY, headers, [SECRET])
    assert (match.scheme, match.header) == ("timestamp-header", "x-ion-signature")


def test_nothing_matches_with_the_wrong_secret_or_a_changed_body() -> None:
    headers = {"x-ion-signature": sign(BODY, SECRET)}
    assert detect(BODY, headers, ["wrong"]) == []
    assert detect(BODY + b" ", headers, [SECRET]) == []
    assert detect(BODY, headers, []) == [] and detect(BODY, headers, [""]) == []
    assert detect(BODY, {"x-ion-signature": "x" * 10000}, [SECRET]) == []


def test_signature_like_headers_and_no_secret_in_results() -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Ion-Signature": "a",
        "X-Hmac-Sha256": "b",
        "Webhook-Signature": "c",
        "X-Tenant": "d",
    }
    assert set(signature_headers(headers)) == {"x-ion-signature", "x-hmac-sha256", "webhook-signature"}
    [match] = detect(BODY, {"x-ion-signature": sign(BODY, SECRET)}, [SECRET])
    assert SECRET not in repr(match) and SECRET not in match.describe()
