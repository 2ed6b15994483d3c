"""One delivery attempt: the signed HTTP POST of an event to its receiver, and what came of it.

Kept apart from the worker (:mod:`.delivery`) so the wire format lives in one place: headers (the
receiver's custom ones, then ``Content-Type`` and the signature, which custom headers cannot override),
the exact body bytes signed and sent on every attempt (so a redelivery is byte-identical and the
receiver's dedup on ``event_id`` holds), the HTTPS rule, and the fault behaviours that act on the
connection itself (duplicate copies, mid-request and after-answer drops).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_ion.testing.emulator.delivery_faults import DeliveryFault
from airflow_provider_ion.testing.emulator.delivery_http import ConnectFailed, ConnectionLost, HttpSender
from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings
from airflow_provider_ion.webhooks.signature import SignatureScheme, sign

USER_AGENT = "ion-emulator-webhooks/1"


@dataclass(frozen=True)
class Job:
    """One event to deliver; ``body`` is fixed at creation and identical on every attempt."""

    event_id: int
    subscription_id: int
    receiver_id: int
    resource: str
    action: str
    body: bytes


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt achieved; ``final`` means retrying cannot help (URL refused, receiver gone)."""

    success: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False
    requests: int = 1


def refusal(url: str, settings: DeliverySettings) -> str | None:
    """Why ``url`` may not receive webhooks (ION requires HTTPS), or None when it may."""
    parts = urlsplit(url)
    if settings.loopback_only and not _is_loopback(parts.hostname or ""):
        return "the emulator delivers to loopback receivers only (loopback_only setting)"
    if parts.scheme == "https":
        return None
    if parts.scheme != "http":
        return f"webhookUri scheme {parts.scheme!r} is not supported: ION delivers over HTTPS only"
    if settings.allow_http_loopback and _is_loopback(parts.hostname or ""):
        return None
    return "webhookUri must use HTTPS: ION refuses plain http (the emulator allows it for loopback receivers only)"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


STANDARD_WEBHOOKS_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def standard_webhooks_headers(body: bytes, secret: str, msg_id: str, timestamp: int) -> dict[str, str]:
    """Standard Webhooks signing: ``v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def request_headers(
    receiver: Mapping[str, Any], body: bytes, scheme: SignatureScheme, style: str = "ion"
) -> dict[str, str]:
    """Custom headers of the receiver, then content type, signature and user agent."""
    headers = {str(h["key"]): str(h["value"]) for h in receiver.get("headers") or []}
    reserved = ("content-type", "content-length", scheme.header, *STANDARD_WEBHOOKS_HEADERS)
    for key in [k for k in headers if k.lower() in reserved]:
        del headers[key]
    headers["content-type"] = receiver["contentType"]
    if style == "standard-webhooks":
        msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:24]  # the same for every retry of one body
        headers.update(standard_webhooks_headers(body, receiver["sharedSecret"], msg_id, int(time.time())))
    else:
        headers[scheme.header] = sign(body, receiver["sharedSecret"], scheme)
    headers.setdefault("user-agent", USER_AGENT)
    return headers


def is_success(status_code: int, receiver: Mapping[str, Any], settings: DeliverySettings) -> bool:
    """Success is the receiver's ``expectedResponseCode`` (or any 2xx with ``accept_any_2xx``)."""
    if status_code == receiver.get("expectedResponseCode", 200):
        return True
    return settings.accept_any_2xx and 200 <= status_code < 300


async def attempt(
    sender: HttpSender,
    job: Job,
    receiver: Mapping[str, Any],
    settings: DeliverySettings,
    fault: DeliveryFault | None = None,
) -> AttemptResult:
    """POST ``job`` to ``receiver`` once (or ``copies`` times at once under a duplicate fault)."""
    url = receiver["webhookUri"]
    problem = refusal(url, settings)
    if problem is not None:
        return AttemptResult(False, error=problem, final=True, requests=0)
    headers = request_headers(receiver, job.body, settings.scheme, settings.signature_style)
    if fault is not None and fault.kind == "drop":
        return await _dropped(sender, url, job.body, headers, settings, fault.when)
    copies = fault.copies if fault is not None and fault.kind == "duplicate" else 1
    results = await asyncio.gather(*(_post(sender, url, job.body, headers, receiver, settings) for _ in range(copies)))
    best = next((r for r in results if r.success), results[0])
    return AttemptResult(best.success, best.status_code, best.error, requests=copies)


async def _post(
    sender: HttpSender,
    url: str,
    body: bytes,
    headers: dict[str, str],
    receiver: Mapping[str, Any],
    settings: DeliverySettings,
) -> AttemptResult:
    try:
        code = await sender.post(url, body, headers, settings.timeout)
    except (TimeoutError, OSError) as error:
        return AttemptResult(False, error=describe(error, settings.timeout))
    if is_success(code, receiver, settings):
        return AttemptResult(True, code)
    expected = receiver.get("expectedResponseCode", 200)
    return AttemptResult(False, code, error=f"HTTP {code} (expected {expected})")


async def _dropped(
    sender: HttpSender,
    url: str,
    body: bytes,
    headers: dict[str, str],
    settings: DeliverySettings,
    when: str,
) -> AttemptResult:
    """Close the connection mid-request (``before``) or right after the answer arrives (``after``)."""
    try:
        await sender.post(url, body, headers, settings.timeout, drop=when)
    except ConnectionLost as error:
        if when != "before" or str(error) != "closed mid-request":
            return AttemptResult(False, error=describe(error, settings.timeout))
    except (TimeoutError, OSError) as error:
        return AttemptResult(False, error=describe(error, settings.timeout))
    if when == "before":
        return AttemptResult(False, error="connection closed by the emulator mid-request (drop fault)")
    return AttemptResult(False, error="connection closed by the emulator before reading the answer (drop fault)")


def describe(error: BaseException, timeout: float) -> str:
    """A short, secret-free reason for ``lastError``."""
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, ConnectFailed):
        return f"connection failed: {error}"
    return f"connection lost: {error}" if str(error) else f"connection lost ({type(error).__name__})"
