"""DAG files import the trigger and the sensor at parse time: they must add nothing heavy."""

from __future__ import annotations

import json
import re
import subprocess
import sys

CODE = """
import json, sys
import airflow.sdk, airflow.triggers.base, airflow.sdk.bases.sensor  # what any DAG file already pays
before = set(sys.modules)
import airflow_provider_ion.triggers.webhook
import airflow_provider_ion.sensors.webhook
added = sorted(set(sys.modules) - before)
print(json.dumps(added))
"""


def test_trigger_and_sensor_modules_import_nothing_heavy() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, check=True)
    added = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = [m for m in added if m.split(".")[0] in ("sqlalchemy", "httpx", "gql", "graphql", "psycopg")]
    assert heavy == []
    ours = {m for m in added if m.startswith("airflow_provider_ion")}
    assert "airflow_provider_ion.webhooks.inbox" not in ours
    assert "airflow_provider_ion.triggers._reader" not in ours
    assert "airflow_provider_ion.triggers._ack" not in ours


def test_import_time_of_our_modules_is_small() -> None:
    code = "import airflow.sdk, airflow.triggers.base, airflow.sdk.bases.sensor\n" \
           "import airflow_provider_ion.triggers.webhook, airflow_provider_ion.sensors.webhook"  # fmt: skip
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    cumulative = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s+(\S.*)$", line)
        if match:
            cumulative[match.group(2).strip()] = int(match.group(1))
    ours = sum(us for name, us in cumulative.items() if name.strip() in (
        "airflow_provider_ion.triggers.webhook", "airflow_provider_ion.sensors.webhook"))  # fmt: skip
    print(f"\n[import] trigger + sensor modules: {ours / 1000:.1f} ms cumulative (after Airflow's own bases)")
    assert ours < 100_000  # 100 ms
