"""Find how a real delivery was signed, from its body, its headers and the receiver's secret.

ION publishes only "HMAC" and the header name ``x-ion-signature``; the rest of the scheme is assumed
(see README). Given one delivery that failed verification (a quarantined one), :func:`detect` tries the
candidate schemes and returns those that reproduce a signature found in the headers:

* signature-like headers: ``x-ion-signature`` and any header whose name mentions sign/signature/hmac/
  digest (``x-hub-signature-256``, ``webhook-signature``, ``stripe-signature``, ...);
* each header value split into tokens (several signatures in one header, separated by spaces, commas or
  semicolons), each token with or without a prefix (``sha256=``, ``v1=``, ``v1,``, ...);
* digests: HMAC-SHA256, -SHA512, -SHA1, hex or base64 (standard or URL-safe, padding optional);
* signed content: the raw body; Standard Webhooks' ``{webhook-id}.{webhook-timestamp}.{body}`` (key:
  the secret, or the base64 after ``whsec_``); Stripe's ``{t}.{body}`` from ``t=...,v1=...``; a
  ``*-timestamp`` header's value + ``.`` + body.

Pure (hashlib/hmac/base64 only), never logs or returns a secret. A match on the raw body carries the
``[ion_webhooks]`` settings that make the receiver verify such deliveries; a timestamped match says so
and carries none (the receiver verifies raw-body HMACs only).

Example::

    matches = detect(body, headers, ["the receiver's secret"])
    matches[0].settings  # {"signature_header": "x-ion-signature", "signature_encoding": "base64", ...}
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Match", "detect", "signature_headers"]

_ALGORITHMS = ("sha256", "sha512", "sha1")
_SIGNATURE_NAME = re.compile(r"sign|hmac|digest", re.IGNORECASE)
_TOKENS = re.compile(r"[\s;]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_MAX_HEADER = 4096


@dataclass(frozen=True)
class Match:
    """One scheme that reproduces a signature of the delivery.

    ``scheme`` is ``raw-body``, ``standard-webhooks``, ``stripe`` or ``timestamp-header``;
    ``settings`` the ``[ion_webhooks]`` options for the receiver (raw-body only, else empty).
    """

    scheme: str
    header: str
    algorithm: str
    encoding: str
    prefix: str
    several_in_header: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def describe(self) -> str:
        text = f"{self.header}: {self.prefix}<{self.encoding} HMAC-{self.algorithm}> over {self.scheme}"
        if self.several_in_header:
            text += " (several signatures in the header)"
        return text + (f"; {self.note}" if self.note else "")


def signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that may carry a signature (lower-case names)."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    return {k: v for k, v in lowered.items() if k == "x-ion-signature" or _SIGNATURE_NAME.search(k)}


def _keys(secret: str | bytes) -> list[bytes]:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    keys = [raw] if raw else []
    if raw.startswith(b"whsec_"):
        with contextlib.suppress(binascii.Error, ValueError):
            keys.append(base64.b64decode(raw[6:] + b"=" * (-len(raw[6:]) % 4)))
    return keys


def _decode(text: str) -> list[tuple[str, bytes]]:
    """(encoding, raw digest) readings of ``text``: hex and/or base64."""
    out: list[tuple[str, bytes]] = []
    if _HEX.fullmatch(text) and len(text) % 2 == 0:
        out.append(("hex", bytes.fromhex(text)))
    if _B64.fullmatch(text):
        core = text.rstrip("=").replace("-", "+").replace("_", "/")
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(("base64", base64.b64decode(core + "=" * (-len(core) % 4), validate=True)))
    return out


def _split_token(token: str) -> list[tuple[str, str]]:
    """(prefix, digest text) readings of one token: ``sha256=abc`` -> ("sha256=", "abc"), and as is."""
    readings = [("", token)]
    for sep in ("=", ","):
        head, found, tail = token.partition(sep)
        if found and tail and head and len(head) <= 16 and not tail.startswith("="):
            readings.append((head + sep, tail))
    return readings


def _messages(body: bytes, headers: Mapping[str, str], header: str) -> list[tuple[str, bytes, str]]:
    """(scheme, signed content, note) candidates for a signature found in ``header``."""
    found = [("raw-body", body, "")]
    if "webhook-id" in headers and "webhook-timestamp" in headers:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        found.append(("standard-webhooks", signed, "Standard Webhooks: id.timestamp.body"))
    stripe = dict(part.partition("=")[::2] for part in headers.get(header, "").split(",") if "=" in part)
    if "t" in stripe:
        found.append(("stripe", f"{stripe['t'].strip()}.".encode() + body, "Stripe-style t=...,v1=..."))
    for name, value in headers.items():
        if name.endswith("timestamp") and name != "webhook-timestamp":
            found.append(("timestamp-header", f"{value.strip()}.".encode() + body, f"{name} + '.' + body"))
    return found


def detect(
    body: bytes, headers: Mapping[str, str], secrets: Iterable[str | bytes], *, algorithms: Iterable[str] = _ALGORITHMS
) -> list[Match]:
    """Every scheme (among the candidates above) that reproduces a signature in ``headers``.

    Raw-body matches come first (the receiver can verify them), then timestamped ones.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    keys = [k for s in secrets for k in _keys(s)]
    if not keys:
        return []
    matches: list[Match] = []
    seen: set[tuple[str, str, str, str]] = set()
    for header, value in signature_headers(lowered).items():
        if len(value) > _MAX_HEADER:
            continue
        whole = [t for t in _TOKENS.split(value.strip()) if t]
        parts = [p for t in whole for p in t.split(",") if p]
        tokens = list(dict.fromkeys([*whole, *parts]))
        several = len(whole) > 1 or (len(parts) > 1 and all("=" in p for p in parts))
        for scheme, message, note in _messages(body, lowered, header):
            digests = {a: [hmac.new(k, message, a).digest() for k in keys] for a in algorithms}
            for token in tokens:
                for prefix, text in _split_token(token):
                    for encoding, raw in _decode(text):
                        for algorithm, candidates in digests.items():
                            if not any(hmac.compare_digest(raw, d) for d in candidates):
                                continue
                            key = (scheme, header, algorithm, encoding)  # the first (prefixed) reading wins
                            if key in seen:
                                continue
                            seen.add(key)
                            settings = (
                                {
                                    "signature_header": header,
                                    "signature_algorithm": algorithm,
                                    "signature_encoding": encoding,
                                    "signature_prefix": prefix,
                                }
                                if scheme == "raw-body"
                                else {}
                            )
                            why = note
                            if scheme != "raw-body":
                                why = (note + "; " if note else "") + "the receiver cannot verify this scheme yet"
                            matches.append(Match(scheme, header, algorithm, encoding, prefix, several, settings, why))
    matches.sort(key=lambda m: (m.scheme != "raw-body", m.header != "x-ion-signature"))
    return matches
