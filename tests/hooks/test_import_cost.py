"""DAG files import our operators at parse time: the hook module must stay light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("gql", "graphql", "httpx")

CODE = """
import json, sys
import airflow  # Airflow 3.3 itself loads httpx (airflow.sdk.api.client); measure what WE add
before = set(sys.modules)
import airflow_provider_ion.hooks.ion
import airflow_provider_ion.exceptions
added = sorted(set(sys.modules) - before)
heavy = HEAVY_MODULES
print(json.dumps({
    "added_heavy": [m for m in added if m.split(".")[0] in heavy],
    "present": [m for m in heavy if m in sys.modules],
}))
""".replace("HEAVY_MODULES", repr(HEAVY))


def test_importing_the_hook_loads_no_gql_graphql_or_httpx() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["added_heavy"] == []
    # gql and graphql-core are not loaded at all; httpx only because Airflow itself loads it.
    assert "gql" not in result["present"]
    assert "graphql" not in result["present"]
