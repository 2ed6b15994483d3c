"""The provider's metadata as Airflow itself sees it, through real ``airflow`` CLI calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_ion.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_provider_info_passes_airflows_schema() -> None:
    import jsonschema
    from airflow import providers_manager

    schema_path = Path(providers_manager.__file__).with_name("provider_info.schema.json")
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_conn_fields_pass_airflows_provider_yaml_schema() -> None:
    import jsonschema
    from airflow import providers_manager

    yaml_schema = json.loads(Path(providers_manager.__file__).with_name("provider.yaml.schema.json").read_text())
    conn_type_schema = yaml_schema["properties"]["connection-types"]["items"]
    for conn_type in get_provider_info()["connection-types"]:
        jsonschema.validate(conn_type, conn_type_schema)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    return env


def _airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _json_rows(stdout: str) -> list[dict]:
    return json.loads(stdout[stdout.index("[") :])


def test_airflow_lists_the_provider(airflow_env: dict[str, str]) -> None:
    rows = _json_rows(_airflow(airflow_env, "providers", "list", "-o", "json"))
    assert any(r["package_name"] == "airflow-provider-ion" for r in rows)


def test_airflow_lists_the_hook(airflow_env: dict[str, str]) -> None:
    rows = _json_rows(_airflow(airflow_env, "providers", "hooks", "-o", "json"))
    (ion,) = [r for r in rows if r["connection_type"] == "ion"]
    assert ion["class"] == "airflow_provider_ion.hooks.ion.IonHook"
    assert ion["package_name"] == "airflow-provider-ion"


def test_connections_add_keeps_the_ion_type(airflow_env: dict[str, str]) -> None:
    _airflow(
        airflow_env,
        "connections", "add", "ion_cli_test",
        "--conn-type", "ion",
        "--conn-login", "client-id",
        "--conn-password", "client-secret",
        "--conn-extra", json.dumps({"environment": "staging"}),
    )  # fmt: skip
    (conn,) = _json_rows(_airflow(airflow_env, "connections", "get", "ion_cli_test", "-o", "json"))
    assert conn["conn_type"] == "ion"
    assert conn["extra_dejson"] == {"environment": "staging"}


def test_env_var_json_connection_reaches_the_hook(airflow_env: dict[str, str]) -> None:
    env = {
        **airflow_env,
        "AIRFLOW_CONN_ION_DEFAULT": json.dumps(
            {
                "conn_type": "ion",
                "login": "client-id",
                "password": "client-secret",
                "extra": {"environment": "gov"},
            }
        ),
    }
    (conn,) = _json_rows(_airflow(env, "connections", "get", "ion_default", "-o", "json"))
    assert conn["conn_type"] == "ion"
    code = "from airflow_provider_ion.hooks.ion import IonHook\nh = IonHook()\nprint(h.api_url, h.token_url)\n"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "https://api-production-gov.buildwithion.com" in done.stdout
    assert "auth-production-gov.buildwithion.com/realms/api-keys/protocol/openid-connect/token" in done.stdout
