"""Connection parsing: every environment and alias, explicit URLs, and the errors users will hit."""

from __future__ import annotations

import pytest

from airflow_provider_ion.exceptions import IonConfigError
from airflow_provider_ion.hooks.environments import (
    ENVIRONMENT_ALIASES,
    ENVIRONMENTS,
    settings_from_connection,
)
from airflow_provider_ion.hooks.ion import IonHook

from .conftest import CLIENT_SECRET

EXPECTED = {
    # name: (api url, auth host), as in the README's Connection section
    "production": ("https://api.buildwithion.com", "auth.buildwithion.com"),
    "staging": ("https://staging-api.buildwithion.com", "staging-auth.buildwithion.com"),
    "gov-staging": ("https://api-staging-gov.buildwithion.com", "auth-staging-gov.buildwithion.com"),
    "gov": ("https://api-production-gov.buildwithion.com", "auth-production-gov.buildwithion.com"),
    "aus-staging": ("https://api-staging-aus.buildwithion.com", "auth-staging-aus.buildwithion.com"),
    "aus": ("https://api-production-aus.buildwithion.com", "auth-production-aus.buildwithion.com"),
}
TOKEN_PATH = "/realms/api-keys/protocol/openid-connect/token"


def parse(extra=None, **fields):
    fields.setdefault("login", "client-id")
    fields.setdefault("password", CLIENT_SECRET)
    return settings_from_connection("ion_test", extra=extra, **fields)


def test_the_table_matches_the_reference() -> None:
    assert set(ENVIRONMENTS) == set(EXPECTED)
    assert ENVIRONMENT_ALIASES == {"sandbox": "staging", "gov-production": "gov", "aus-production": "aus"}


@pytest.mark.parametrize("name", [*EXPECTED, *ENVIRONMENT_ALIASES])
def test_each_environment_and_alias(name: str) -> None:
    canonical = ENVIRONMENT_ALIASES.get(name, name)
    api, auth = EXPECTED[canonical]
    s = parse({"environment": name})
    assert s.environment == canonical
    assert s.api_url == api
    assert s.graphql_url == f"{api}/graphql"
    assert s.token_url == f"https://{auth}{TOKEN_PATH}"
    assert s.audience == api  # what ion-examples sends


@pytest.mark.parametrize("spelling", ["GOV_STAGING", " Gov-Staging ", "gov_staging"])
def test_environment_names_are_forgiving(spelling: str) -> None:
    assert parse({"environment": spelling}).environment == "gov-staging"


def test_prefixed_extras_are_accepted_and_plain_keys_win() -> None:
    s = parse({"extra__ion__environment": "aus", "extra__ion__timeout": 7})
    assert s.environment == "aus" and s.timeout == 7
    s = parse({"extra__ion__environment": "aus", "environment": "gov"})
    assert s.environment == "gov"


def test_extra_may_be_a_json_string() -> None:
    assert parse('{"environment": "sandbox"}').environment == "staging"
    with pytest.raises(IonConfigError, match="extra is not valid JSON"):
        parse("{nope")


def test_defaults() -> None:
    s = parse()
    assert s.environment == "production"
    assert (s.auth_scheme, s.timeout, s.verify, s.max_retries) == ("Bearer", 30.0, True, 5)
    assert s.authorization("tok") == "Bearer tok"


def test_explicit_host_and_token_url_override_the_environment() -> None:
    s = parse(
        {"environment": "gov", "token_url": "http://127.0.0.1:9/realms/api-keys/protocol/openid-connect/token"},
        host="http://127.0.0.1:9",
    )
    assert s.api_url == "http://127.0.0.1:9"
    assert s.graphql_url == "http://127.0.0.1:9/graphql"
    assert s.token_url.startswith("http://127.0.0.1:9/realms/")
    assert s.audience == "http://127.0.0.1:9"


def test_host_alone_keeps_the_environments_token_url() -> None:
    s = parse({"environment": "staging"}, host="https://proxy.example.com/ion/")
    assert s.api_url == "https://proxy.example.com/ion"
    assert s.token_url == f"https://staging-auth.buildwithion.com{TOKEN_PATH}"


def test_a_known_api_host_implies_its_environment() -> None:
    s = parse(host="api-staging-aus.buildwithion.com")
    assert s.api_url == "https://api-staging-aus.buildwithion.com"
    assert s.environment == "aus-staging"
    assert "auth-staging-aus" in s.token_url


def test_host_normalisation() -> None:
    assert parse({"token_url": "https://a/t"}, host="https://x.test/graphql").api_url == "https://x.test"
    assert parse({"token_url": "https://a/t"}, host="x.test", schema="http", port=8080).api_url == (
        "http://x.test:8080"
    )


def test_audience_auth_scheme_timeout_verify_retries() -> None:
    s = parse({"audience": "aud", "auth_scheme": "raw", "timeout": "2.5", "verify": "false", "max_retries": "0"})
    assert (s.audience, s.auth_scheme, s.timeout, s.verify, s.max_retries) == ("aud", "", 2.5, False, 0)
    assert s.authorization("tok") == "tok"
    assert parse({"auth_scheme": ""}).authorization("tok") == "tok"
    assert parse({"auth_scheme": "bearer"}).auth_scheme == "Bearer"
    assert parse({"verify": "/etc/ssl/ca.pem"}).verify == "/etc/ssl/ca.pem"
    assert parse({"verify": True}).verify is True


def test_constructor_overrides_extras() -> None:
    s = settings_from_connection(
        "c", login="a", password="b", extra={"timeout": 9, "max_retries": 9}, timeout=1, max_retries=2
    )
    assert (s.timeout, s.max_retries) == (1.0, 2)


@pytest.mark.parametrize(
    ("fields", "extra", "message"),
    [
        ({"login": None}, None, r"Connection 'ion_test' has no client id \(login\)"),
        ({"login": ""}, None, r"has no client id \(login\)"),
        ({"password": None}, None, r"Connection 'ion_test' has no client secret \(password\)"),
        ({}, {"environment": "prod"}, r"unknown environment 'prod'; choose one of: production, staging"),
        ({"host": "https://ion.example.com"}, None, r"not a known ION environment.*set extra 'auth_url'"),
        ({}, {"token_url": "https://a/t"}, r"has an auth_url but no API URL"),
        ({}, {"timeout": "soon"}, r"extra 'timeout' must be a number"),
        ({}, {"timeout": 0}, r"extra 'timeout' must be a number >= 0.001"),
        ({}, {"max_retries": -1}, r"extra 'max_retries' must be an integer >= 0"),
        ({}, {"max_retries": True}, r"extra 'max_retries' must be an integer"),
        ({}, {"verify": "maybe"}, r"extra 'verify' must be true, false or the path"),
        ({"host": "ftp://x"}, {"token_url": "https://a/t"}, r"host 'ftp://x' is not an http\(s\) URL"),
        ({}, {"environment": "gov", "token_url": "nope"}, r"auth_url 'nope' is not an http\(s\) URL"),
    ],
)
def test_errors_name_the_connection_and_the_field(fields, extra, message) -> None:
    with pytest.raises(IonConfigError, match=message) as info:
        parse(extra, **fields)
    assert "ion_test" in str(info.value)
    assert CLIENT_SECRET not in str(info.value) + repr(info.value)


def test_settings_repr_hides_the_secret() -> None:
    s = parse()
    assert CLIENT_SECRET not in repr(s)
    assert CLIENT_SECRET not in s.secret_fingerprint and len(s.secret_fingerprint) == 16


def test_hook_reads_an_env_var_connection(ion_connection) -> None:
    """Airflow 3.3's Task SDK resolves AIRFLOW_CONN_* outside a task (env secrets backend)."""
    conn_id = ion_connection("ion_env", environment="sandbox")
    hook = IonHook(conn_id)
    assert hook.api_url == "https://staging-api.buildwithion.com"
    assert hook.token_url == f"https://staging-auth.buildwithion.com{TOKEN_PATH}"
    assert hook.settings.client_id == "client-id"


def test_hook_metadata() -> None:
    assert IonHook.conn_name_attr == "ion_conn_id"
    assert IonHook.default_conn_name == "ion_default"
    assert IonHook.conn_type == "ion"
    assert IonHook.hook_name == "ION"
    assert IonHook().ion_conn_id == "ion_default"
    assert IonHook.get_ui_field_behaviour()["relabeling"]["login"] == "Client ID"


def test_missing_connection_is_an_airflow_not_found(ion_connection) -> None:
    from airflow.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException):
        _ = IonHook("ion_nowhere").settings


def test_incomplete_connection_fails_clearly(ion_connection) -> None:
    conn_id = ion_connection("ion_half", password=None, environment="staging")
    with pytest.raises(IonConfigError, match=r"Connection 'ion_half' has no client secret \(password\)"):
        _ = IonHook(conn_id).settings


def test_auth_url_is_the_extra_and_token_url_still_works() -> None:
    new = settings_from_connection(
        "c",
        login="id",
        password="pw",
        host="https://ion.example.test",
        extra={"auth_url": "https://auth.example.test/t"},
    )
    old = settings_from_connection(
        "c",
        login="id",
        password="pw",
        host="https://ion.example.test",
        extra={"token_url": "https://auth.example.test/t"},
    )
    assert new.token_url == old.token_url == "https://auth.example.test/t"
    with pytest.raises(IonConfigError, match="keep only 'auth_url'"):
        settings_from_connection(
            "c", login="id", password="pw", host="https://ion.example.test",
            extra={"auth_url": "https://a.example.test/t", "token_url": "https://b.example.test/t"},
        )  # fmt: skip


def test_airflow_hides_token_url_but_not_auth_url() -> None:
    # Why the extra was renamed: Airflow masks extras whose key contains "token" (DEFAULT_SENSITIVE_FIELDS).
    from airflow.sdk.execution_time.secrets_masker import should_hide_value_for_key

    assert should_hide_value_for_key("token_url") and not should_hide_value_for_key("auth_url")
