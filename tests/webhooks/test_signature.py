"""Signing and verifying ION deliveries: the public vector, the edge cases, and properties."""

from __future__ import annotations

import base64
import dataclasses
import doctest
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_ion.webhooks import signature
from airflow_provider_ion.webhooks.signature import (
    DEFAULT_SCHEME,
    MAX_HEADER_LENGTH,
    SignatureError,
    SignatureScheme,
    VerifyResult,
    sign,
    verify,
)

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_HEX = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
REASONS = {"ok", "missing", "malformed", "mismatch"}

SCHEMES = [
    SignatureScheme(algorithm=algorithm, encoding=encoding, prefix=prefix)
    for algorithm, prefix in [("sha256", "sha256="), ("sha512", "sha512="), ("sha1", "sha1="), ("sha256", "")]
    for encoding in ("hex", "base64")
]


def test_github_vector():
    assert sign(GITHUB_BODY, GITHUB_SECRET) == "sha256=" + GITHUB_HEX
    assert verify(GITHUB_BODY, "sha256=" + GITHUB_HEX, [GITHUB_SECRET]) == VerifyResult(True, "ok", 0)


def test_module_docstring_examples():
    result = doctest.testmod(signature)
    assert result.attempted >= 2 and result.failed == 0


def test_default_scheme():
    assert SignatureScheme("x-ion-signature", "sha256", "hex", "sha256=") == DEFAULT_SCHEME
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_SCHEME.header = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "header",
    [
        GITHUB_HEX,
        "sha256=" + GITHUB_HEX,
        "SHA256=" + GITHUB_HEX.upper(),
        GITHUB_HEX.upper(),
        f"  sha256={GITHUB_HEX}  ",
        GITHUB_HEX.encode(),  # bytes header values (raw ASGI headers)
    ],
)
def test_prefix_optional_and_hex_case_insensitive(header):
    assert verify(GITHUB_BODY, header, [GITHUB_SECRET]).ok


def test_rotation_accepts_any_secret_and_reports_which():
    body = b'{"event_id": 1}'
    header = sign(body, "old-secret")
    result = verify(body, header, ["new-secret", "old-secret"])
    assert result and result.secret_index == 1
    assert verify(body, sign(body, "new-secret"), ["new-secret", "old-secret"]).secret_index == 0
    assert verify(body, header, ["new-secret"]).reason == "mismatch"


@pytest.mark.parametrize(
    "template",
    ["{bad} {good}", "{good},{bad}", "{bad}, {good}", "v1,{bad} {good}", "garbage {good}", "{good}\t{bad}"],
)
def test_multi_signature_header(template):
    body = b"payload"
    good, bad = sign(body, "s3cret"), sign(body, "other")
    assert verify(body, template.format(good=good, bad=bad), ["s3cret"]).ok


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.algorithm}-{s.encoding}-{s.prefix or 'noprefix'}")
def test_each_algorithm_and_encoding(scheme):
    body = b'{"event_id": 42, "resource": "RUNS"}'
    header = sign(body, "k", scheme)
    raw = hmac.new(b"k", body, getattr(hashlib, scheme.algorithm)).digest()
    encoded = raw.hex() if scheme.encoding == "hex" else base64.b64encode(raw).decode()
    assert header == scheme.prefix + encoded
    assert verify(body, header, ["k"], scheme).ok
    assert verify(body + b" ", header, ["k"], scheme).reason == "mismatch"
    # a digest of another algorithm has the wrong length: not a signature of this scheme at all
    other = "sha1" if scheme.algorithm != "sha1" else "sha256"
    assert verify(body, sign(body, "k", SignatureScheme(algorithm=other)), ["k"], scheme).reason == "malformed"


def test_base64_variants_accepted():
    scheme = SignatureScheme(encoding="base64", prefix="")
    body = b"\xff" * 100
    for secret in ("a", "b", "c", "d", "e"):
        raw = hmac.new(secret.encode(), body, "sha256").digest()
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(raw).rstrip(b"=")):
            assert verify(body, encoded.decode(), [secret], scheme).ok


def test_tampered_body_and_wrong_secret():
    body = b'{"event_id": 1, "data": {"qty": 1}}'
    header = sign(body, "right")
    assert verify(body.replace(b"1}", b"2}"), header, ["right"]).reason == "mismatch"
    assert verify(body, header, ["wrong"]).reason == "mismatch"
    # re-serialised JSON is a different body: the raw bytes are what is signed
    assert verify(b'{"event_id":1,"data":{"qty":1}}', header, ["right"]).reason == "mismatch"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        (" , ,\t", "missing"),
        (b"", "missing"),
        ("garbage", "malformed"),
        ("sha256=", "malformed"),
        ("sha256=zz" + GITHUB_HEX[2:], "malformed"),
        (GITHUB_HEX[:-2], "malformed"),
        (GITHUB_HEX + "00", "malformed"),
        ("sha256=" + "é" * 64, "malformed"),
        ("sha256=" + "٣" * 64, "malformed"),  # unicode digits are not hex digits
        ("\x00" * 64, "malformed"),
        ("x" * (MAX_HEADER_LENGTH + 1), "malformed"),
        (f"{GITHUB_HEX} " * (MAX_HEADER_LENGTH // 64), "malformed"),  # too long even if it holds a match
        ("0" * 64, "mismatch"),
        (b"\xff\xfe" * 40, "malformed"),
    ],
)
def test_bad_headers(header, reason):
    result = verify(GITHUB_BODY, header, [GITHUB_SECRET])
    assert not result
    assert result.reason == reason
    with pytest.raises(SignatureError) as info:
        result.raise_for_failure()
    assert info.value.reason == reason


def test_long_header_within_limit_still_verifies():
    header = " ".join(["sha256=" + "0" * 64] * 40 + ["sha256=" + GITHUB_HEX])
    assert len(header) < MAX_HEADER_LENGTH
    assert verify(GITHUB_BODY, header, [GITHUB_SECRET]).ok


def test_secret_edge_cases():
    body = b"x"
    # a bare str is one secret, not an iterable of one-character secrets
    assert verify(body, sign(body, "ab"), "ab").ok
    assert not verify(body, sign(body, "a"), "ab")
    assert verify(body, sign(body, b"raw-bytes"), [b"raw-bytes"]).ok
    # an empty (unconfigured) secret never validates, nor do no secrets at all
    assert verify(body, sign(body, ""), [""]).reason == "mismatch"
    assert verify(body, sign(body, "k"), []).reason == "mismatch"
    assert verify(body, sign(body, "k"), None).reason == "mismatch"
    # lone surrogates (from a lossy decode somewhere) must not raise
    assert verify("\ud800", sign("\ud800", "\udfff"), ["\udfff"]).ok
    assert verify(None, sign(b"", "k"), ["k"]).ok


def test_no_secret_or_digest_in_messages_or_reprs():
    wrong = verify(GITHUB_BODY, "sha256=" + "0" * 64, [GITHUB_SECRET])
    good = verify(GITHUB_BODY, GITHUB_HEX, [GITHUB_SECRET])
    texts = [repr(wrong), str(wrong), repr(good), str(good), repr(DEFAULT_SCHEME)]
    try:
        wrong.raise_for_failure()
    except SignatureError as error:
        texts += [str(error), repr(error)]
    for text in texts:
        assert GITHUB_SECRET not in text and GITHUB_HEX not in text.lower()
    good.raise_for_failure()  # no-op on success


def test_scheme_settings_validated_at_configuration_time():
    assert SignatureScheme(algorithm="SHA-512", encoding="Base64", header="X-Ion-Signature") == SignatureScheme(
        algorithm="sha512", encoding="base64", header="x-ion-signature"
    )
    for bad in [{"algorithm": "md42"}, {"algorithm": "shake_128"}, {"encoding": "base32"}, {"header": " "}]:
        with pytest.raises(ValueError):
            SignatureScheme(**bad)


# -- properties --------------------------------------------------------------------------------------------

schemes = st.sampled_from(SCHEMES)
secrets_text = st.text(min_size=1, max_size=64)


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=4096), secret=secrets_text, scheme=schemes, others=st.lists(secrets_text, max_size=3))
def test_round_trip(body, secret, scheme, others):
    result = verify(body, sign(body, secret, scheme), [*others, secret], scheme)
    assert result.ok and result.reason == "ok"


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=2048),
    secret=secrets_text,
    data=st.data(),
    scheme=schemes,
)
def test_any_one_byte_change_fails(body, secret, data, scheme):
    header = sign(body, secret, scheme)
    index = data.draw(st.integers(0, len(body) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    tampered = body[:index] + bytes([new_byte]) + body[index + 1 :]
    assert verify(tampered, header, [secret], scheme).reason == "mismatch"


@settings(max_examples=300, deadline=None)
@given(
    header=st.one_of(st.none(), st.text(), st.binary(), st.text(alphabet="0123456789abcdefABCDEF=sha ,", max_size=300)),
    body=st.one_of(st.none(), st.binary(max_size=256), st.text(max_size=256)),
    secrets=st.one_of(st.none(), st.text(), st.lists(st.one_of(st.text(), st.binary()), max_size=3)),
    scheme=schemes,
)
def test_arbitrary_input_never_raises(header, body, secrets, scheme):
    result = verify(body, header, secrets, scheme)
    assert isinstance(result, VerifyResult)
    assert result.reason in REASONS
    assert result.ok == (result.reason == "ok")
