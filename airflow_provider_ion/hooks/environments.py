"""ION environments and the parsing of an ``ion`` Airflow connection into settings the hook uses.

Pure code (no Airflow, no HTTP) so every environment, alias and error is unit-tested cheaply.

The table follows ION's "Access tokens" page and ION's public ion-examples repository (README, "Connection"):
each environment has a Keycloak auth host (realm ``api-keys``) and an API host serving ``/graphql``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_ion.exceptions import IonConfigError

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "ENVIRONMENTS",
    "ENVIRONMENT_ALIASES",
    "Environment",
    "IonConnectionSettings",
    "resolve_environment",
    "settings_from_connection",
    "token_url_for",
]

TOKEN_PATH = "/realms/api-keys/protocol/openid-connect/token"


@dataclass(frozen=True)
class Environment:
    """One ION deployment: where tokens come from and where the API lives."""

    name: str
    auth_host: str
    api_url: str

    @property
    def token_url(self) -> str:
        return token_url_for(self.auth_host)


def token_url_for(auth_host: str) -> str:
    """The Keycloak client-credentials endpoint of ``auth_host`` (realm ``api-keys``)."""
    return f"https://{auth_host}{TOKEN_PATH}"


ENVIRONMENTS: dict[str, Environment] = {
    e.name: e
    for e in (
        Environment("production", "auth.buildwithion.com", "https://api.buildwithion.com"),
        Environment("staging", "staging-auth.buildwithion.com", "https://staging-api.buildwithion.com"),
        Environment("gov-staging", "auth-staging-gov.buildwithion.com", "https://api-staging-gov.buildwithion.com"),
        Environment("gov", "auth-production-gov.buildwithion.com", "https://api-production-gov.buildwithion.com"),
        Environment("aus-staging", "auth-staging-aus.buildwithion.com", "https://api-staging-aus.buildwithion.com"),
        Environment("aus", "auth-production-aus.buildwithion.com", "https://api-production-aus.buildwithion.com"),
    )
}
ENVIRONMENT_ALIASES: dict[str, str] = {
    "sandbox": "staging",
    "gov-production": "gov",
    "aus-production": "aus",
}
# What the connection form preselects (get_provider_info); used when nothing else says where ION is.
DEFAULT_ENVIRONMENT = "production"

_DEFAULT_TIMEOUT = 30.0
_DEFAULT_MAX_RETRIES = 5
_EXTRA_PREFIX = "extra__ion__"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def resolve_environment(name: str, conn_id: str = "ion_default") -> Environment:
    """The environment called ``name`` (case-insensitive, ``_`` or ``-``, aliases accepted)."""
    key = name.strip().lower().replace("_", "-")
    key = ENVIRONMENT_ALIASES.get(key, key)
    if key not in ENVIRONMENTS:
        choices = ", ".join([*ENVIRONMENTS, *(f"{a} (= {t})" for a, t in ENVIRONMENT_ALIASES.items())])
        raise IonConfigError(
            f"Connection {conn_id!r}: unknown environment {name!r}; choose one of: {choices} "
            "(extra 'environment'), or set host and extra 'auth_url' explicitly."
        )
    return ENVIRONMENTS[key]


@dataclass(frozen=True)
class IonConnectionSettings:
    """Everything the hook needs from an ``ion`` connection, validated.

    ``repr`` leaves the client secret out, so settings can be logged.
    """

    conn_id: str
    client_id: str
    client_secret: str = field(repr=False)
    api_url: str
    token_url: str
    audience: str
    environment: str | None = None
    auth_scheme: str = "Bearer"
    timeout: float = _DEFAULT_TIMEOUT
    verify: bool | str = True
    max_retries: int = _DEFAULT_MAX_RETRIES
    proxy: str | None = None

    @property
    def graphql_url(self) -> str:
        return f"{self.api_url}/graphql"

    @property
    def secret_fingerprint(self) -> str:
        """A short hash of the client secret: tells secrets apart in cache keys, reveals nothing."""
        return hashlib.sha256(self.client_secret.encode()).hexdigest()[:16]

    def authorization(self, token: str) -> str:
        """The ``Authorization`` header value for ``token`` under the configured scheme."""
        return f"{self.auth_scheme} {token}" if self.auth_scheme else token


def _extras(extra: Mapping[str, Any] | str | None, conn_id: str) -> dict[str, Any]:
    if extra is None or extra == "":
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as err:
            raise IonConfigError(f"Connection {conn_id!r}: extra is not valid JSON ({err.msg}).") from None
    if not isinstance(extra, Mapping):
        raise IonConfigError(f"Connection {conn_id!r}: extra must be a JSON object.")
    out: dict[str, Any] = {}
    # Plain keys win over the legacy "extra__ion__" form when both are present.
    for key, value in extra.items():
        if key.startswith(_EXTRA_PREFIX):
            out.setdefault(key[len(_EXTRA_PREFIX) :], value)
    for key, value in extra.items():
        if not key.startswith(_EXTRA_PREFIX):
            out[key] = value
    # An empty auth_scheme is meaningful (send the raw token); elsewhere empty means "not set".
    return {k: v for k, v in out.items() if v is not None and (v != "" or k == "auth_scheme")}


def _normalise_url(value: str, *, schema: str | None = None, port: int | None = None) -> str:
    value = value.strip().rstrip("/")
    if "://" not in value:
        scheme = schema if schema in ("http", "https") else "https"
        value = f"{scheme}://{value}"
        if port and not urlsplit(value).port:
            value = f"{value}:{port}"
    if value.endswith("/graphql"):
        value = value[: -len("/graphql")]
    return value


def _as_bool_or_path(value: Any, conn_id: str) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    if os.path.sep in text or text.endswith((".pem", ".crt")):
        return text
    raise IonConfigError(
        f"Connection {conn_id!r}: extra 'verify' must be true, false or the path of a CA bundle, not {text!r}."
    )


def _as_number(value: Any, name: str, conn_id: str, *, integer: bool, minimum: float) -> float | int:
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        kind = "an integer" if integer else "a number"
        raise IonConfigError(f"Connection {conn_id!r}: extra {name!r} must be {kind} >= {minimum:g}, not {value!r}.")
    return number


def settings_from_connection(
    conn_id: str,
    *,
    login: str | None,
    password: str | None,
    host: str | None = None,
    extra: Mapping[str, Any] | str | None = None,
    schema: str | None = None,
    port: int | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> IonConnectionSettings:
    """Validate an ``ion`` connection's fields into :class:`IonConnectionSettings`.

    Precedence: explicit ``host`` / extra ``token_url`` override the environment's URLs; the
    environment defaults to ``production`` (what the connection form preselects) only when neither
    URL nor environment says otherwise. ``timeout`` / ``max_retries`` arguments (from the hook's
    constructor) override the extras.

    :raises IonConfigError: a missing or invalid piece; the message names the connection and field.
    """
    extras = _extras(extra, conn_id)
    if not login:
        raise IonConfigError(
            f"Connection {conn_id!r} has no client id (login): set the login to the API key's client id."
        )
    if not password:
        raise IonConfigError(
            f"Connection {conn_id!r} has no client secret (password): set the password to the API key's client secret."
        )

    env: Environment | None = None
    if extras.get("environment"):
        env = resolve_environment(str(extras["environment"]), conn_id)

    api_url = _normalise_url(host, schema=schema, port=port) if host else None
    token_url = _auth_url(extras, conn_id)
    if env is None and api_url:
        env = next((e for e in ENVIRONMENTS.values() if e.api_url == api_url), None)
    if env is None and api_url and not token_url:
        raise IonConfigError(
            f"Connection {conn_id!r}: API URL {api_url} is not a known ION environment, so the token "
            "URL cannot be derived; set extra 'auth_url' (or extra 'environment')."
        )
    if env is None and not api_url:
        if token_url:
            raise IonConfigError(
                f"Connection {conn_id!r} has an auth_url but no API URL: set host (e.g. "
                "https://api.buildwithion.com) or extra 'environment'."
            )
        env = ENVIRONMENTS[DEFAULT_ENVIRONMENT]
    api_url = api_url or env.api_url  # type: ignore[union-attr]
    token_url = token_url or env.token_url  # type: ignore[union-attr]
    for name, url in (("host", api_url), ("auth_url", token_url)):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise IonConfigError(f"Connection {conn_id!r}: {name} {url!r} is not an http(s) URL.")

    scheme = str(extras.get("auth_scheme", "Bearer")).strip()
    if scheme.lower() in ("raw", "none"):
        scheme = ""
    elif scheme.lower() == "bearer":
        scheme = "Bearer"

    return IonConnectionSettings(
        conn_id=conn_id,
        client_id=login,
        client_secret=password,
        api_url=api_url,
        token_url=token_url,
        audience=str(extras.get("audience") or api_url),
        environment=env.name if env else None,
        auth_scheme=scheme,
        timeout=float(
            timeout
            if timeout is not None
            else _as_number(extras.get("timeout", _DEFAULT_TIMEOUT), "timeout", conn_id, integer=False, minimum=0.001)
        ),
        verify=_as_bool_or_path(extras["verify"], conn_id) if "verify" in extras else True,
        max_retries=int(
            max_retries
            if max_retries is not None
            else _as_number(
                extras.get("max_retries", _DEFAULT_MAX_RETRIES), "max_retries", conn_id, integer=True, minimum=0
            )
        ),
        proxy=str(extras["proxy"]) if extras.get("proxy") else None,
    )


def _auth_url(extras: Mapping[str, Any], conn_id: str) -> str | None:
    """The token endpoint from extra ``auth_url``, or from the older key ``token_url``.

    Renamed because Airflow hides the value of every connection extra whose key contains "token"
    (``DEFAULT_SENSITIVE_FIELDS`` in airflow/sdk/_shared/secrets_masker/secrets_masker.py), so the
    URL a user must check printed as ``***`` in errors and logs. The old key keeps working.
    """
    new = str(extras["auth_url"]).strip() if extras.get("auth_url") else None
    old = str(extras["token_url"]).strip() if extras.get("token_url") else None
    if new and old and new != old:
        raise IonConfigError(
            f"Connection {conn_id!r} has both extra 'auth_url' ({new}) and the older 'token_url' with a "
            "different value; keep only 'auth_url'."
        )
    return new or old
