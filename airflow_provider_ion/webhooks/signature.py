"""Sign and verify ION webhook deliveries.

ION does not publish its signature scheme. The documented fact is an HMAC in the ``x-ion-signature``
header; everything else is an assumption kept configurable in :class:`SignatureScheme`:
HMAC-SHA256 over the **raw** request body (never a re-serialised JSON document: that is the classic
bug) keyed with the receiver's ``sharedSecret`` encoded as UTF-8, hex digest, optionally prefixed
``sha256=``.

Test vector (GitHub's public one, asserted in the tests)::

    >>> sign(b"Hello, World!", "It's a Secret to Everybody")
    'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'
    >>> verify(b"Hello, World!", "757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
    ...        ["old secret", "It's a Secret to Everybody"])
    VerifyResult(ok=True, reason='ok', secret_index=1)

Why :func:`verify` returns a value instead of raising: a receiver must turn *every* outcome into an
HTTP answer, and the ``standardwebhooks`` package shows the failure mode of exceptions (a bare
``ValueError`` on a malformed header becomes a 500, and the sender retries forever). So ``verify``
never raises for any ``str``/``bytes``/``None`` input; it returns a :class:`VerifyResult` that is
truthy only on success and carries a machine-readable ``reason``. Code that prefers exceptions calls
``result.raise_for_failure()``, which raises :class:`SignatureError` (the only exception this module
raises at verification time).

Nothing here ever puts a secret or an expected digest into a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_SCHEME",
    "MAX_HEADER_LENGTH",
    "SignatureError",
    "SignatureScheme",
    "VerifyResult",
    "sign",
    "verify",
]

Reason = Literal["ok", "missing", "malformed", "mismatch"]

#: Headers longer than this are rejected as ``malformed`` before any work: a signature header carries
#: at most a handful of digests (rotation), and the cap bounds the work an attacker can ask for.
MAX_HEADER_LENGTH = 4096

# Fixed-length digests only: SHAKE has no fixed size and HMAC refuses it anyway.
_ALGORITHMS = frozenset(name for name in hashlib.algorithms_guaranteed if not name.startswith("shake"))
_ENCODINGS = frozenset({"hex", "base64"})
# Several signatures may share the header (secret rotation): separated by whitespace and/or commas.
_SEPARATORS = re.compile(r"[\s,]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


class SignatureError(Exception):
    """A delivery's signature did not verify.

    ``reason`` is one of ``"missing"``, ``"malformed"``, ``"mismatch"``; the message is generic and
    never contains a secret or a digest, so it is safe to log or return to the sender.
    """

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        super().__init__(f"webhook signature {reason}")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :func:`verify`; truthy only when a signature matched.

    ``secret_index`` is the position (in the ``secrets`` given to :func:`verify`) of the secret that
    matched, so an operator can see when the old secret of a rotation is no longer used. It is never
    the secret itself.
    """

    ok: bool
    reason: Reason
    secret_index: int | None = None

    def __bool__(self) -> bool:
        return self.ok

    def raise_for_failure(self) -> None:
        """Raise :class:`SignatureError` unless the signature matched."""
        if not self.ok:
            raise SignatureError(self.reason)


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """How deliveries are signed: every part of it is an assumption about ION, hence a setting.

    ``algorithm`` is a :mod:`hashlib` name (``sha256``, ``sha512``, ``sha1``, ...; ``SHA-256`` is
    accepted and normalised). ``encoding`` is ``hex`` (case-insensitive on input) or ``base64``
    (standard or URL-safe alphabet, padding optional on input). ``prefix`` is written by :func:`sign`
    and optional (case-insensitive) in :func:`verify`. ``header`` is the HTTP header name, lower case.
    Invalid settings raise ``ValueError`` here, at configuration time, never during verification.
    """

    header: str = "x-ion-signature"
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = "sha256="

    def __post_init__(self) -> None:
        algorithm = self.algorithm.strip().lower().replace("-", "")
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"unsupported signature algorithm {self.algorithm!r}; use one of {sorted(_ALGORITHMS)}")
        encoding = self.encoding.strip().lower()
        if encoding not in _ENCODINGS:
            raise ValueError(f"unsupported signature encoding {self.encoding!r}; use 'hex' or 'base64'")
        header = self.header.strip().lower()
        if not header:
            raise ValueError("signature header name must not be empty")
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "encoding", encoding)
        object.__setattr__(self, "header", header)

    @property
    def digest_size(self) -> int:
        """Length in bytes of the raw digest."""
        return hashlib.new(self.algorithm).digest_size


#: ION's assumed scheme (README, "Assumptions about ION"): ``x-ion-signature: sha256=<hex>``.
DEFAULT_SCHEME = SignatureScheme()


def _to_bytes(value: str | bytes | bytearray | memoryview | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        # surrogatepass: a str that came from a lossy decode must not make verification raise.
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)


def _digest(body: bytes, secret: bytes, scheme: SignatureScheme) -> bytes:
    return hmac.new(secret, body, scheme.algorithm).digest()


def sign(body: bytes, secret: str | bytes, scheme: SignatureScheme = DEFAULT_SCHEME) -> str:
    """Return the header value for ``body`` signed with ``secret`` (prefix included).

    ``body`` must be the exact bytes that go on the wire. Used by the emulator and the tests; a
    receiver only needs :func:`verify`.
    """
    raw = _digest(_to_bytes(body), _to_bytes(secret), scheme)
    encoded = raw.hex() if scheme.encoding == "hex" else base64.b64encode(raw).decode("ascii")
    return f"{scheme.prefix}{encoded}"


def _decode(token: str, scheme: SignatureScheme) -> bytes | None:
    """One signature token to raw digest bytes, or ``None`` if it cannot be one."""
    prefix = scheme.prefix
    if prefix and token[: len(prefix)].lower() == prefix.lower():
        token = token[len(prefix) :]
    size = scheme.digest_size
    try:
        if scheme.encoding == "hex":
            if len(token) != 2 * size or not _HEX.fullmatch(token):
                return None
            return bytes.fromhex(token)
        if not _BASE64.fullmatch(token):
            return None
        token = token.rstrip("=").replace("-", "+").replace("_", "/")
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == size else None


def verify(
    body: bytes | str | None,
    header_value: str | bytes | None,
    secrets: Iterable[str | bytes] | str | bytes | None,
    scheme: SignatureScheme = DEFAULT_SCHEME,
) -> VerifyResult:
    """Check a delivery's signature header against the raw body; never raises.

    - ``secrets``: every secret currently valid (rotation); any match is accepted. A single ``str``
      is taken as one secret, not as a sequence of characters. Empty secrets are ignored, so an
      unconfigured secret can never validate an empty-key HMAC.
    - ``header_value``: one or more signatures separated by spaces and/or commas; any match is
      accepted. The prefix is optional; hex is case-insensitive.

    Reasons: ``missing`` (no header, or only whitespace/separators), ``malformed`` (no token has the
    shape of a digest of this scheme, or the header exceeds :data:`MAX_HEADER_LENGTH`), ``mismatch``
    (well-formed, but no secret produced it; also when no usable secret is configured). Comparison is
    constant-time (:func:`hmac.compare_digest`) and every candidate is compared against every secret,
    so timing does not reveal which one matched.
    """
    try:
        if header_value is None:
            return VerifyResult(False, "missing")
        if isinstance(header_value, bytes | bytearray | memoryview):
            header_value = bytes(header_value).decode("latin-1")  # HTTP header bytes are latin-1
        if not isinstance(header_value, str):
            return VerifyResult(False, "malformed")
        if len(header_value) > MAX_HEADER_LENGTH:
            return VerifyResult(False, "malformed")
        tokens = [t for t in _SEPARATORS.split(header_value) if t]
        if not tokens:
            return VerifyResult(False, "missing")
        candidates = [raw for raw in (_decode(t, scheme) for t in tokens) if raw is not None]
        if not candidates:
            return VerifyResult(False, "malformed")

        if secrets is None:
            secrets = ()
        elif isinstance(secrets, str | bytes | bytearray):
            secrets = [secrets]
        payload = _to_bytes(body)
        matched: int | None = None
        for index, secret in enumerate(secrets):
            key = _to_bytes(secret)
            if not key:
                continue
            expected = _digest(payload, key, scheme)
            for candidate in candidates:
                if hmac.compare_digest(expected, candidate) and matched is None:
                    matched = index
        if matched is None:
            return VerifyResult(False, "mismatch")
        return VerifyResult(True, "ok", matched)
    except Exception:  # defensive: a verifier that raises turns a bad request into a 500 and endless retries
        return VerifyResult(False, "malformed")
