"""Benchmark 4, parse cost: a DAG file using every ION operator, sensor and trigger vs the same DAG on Airflow alone.

Each DAG file is imported as a module in a fresh ``python -X importtime`` process after what a DAG
processor has already imported (``airflow.sdk``, ``airflow.triggers.base``, ``pendulum``); the figure is
the cumulative import time of the DAG module (its imports and its body), median over the repetitions, the
two files alternating. The baseline DAG has the same
tasks, an asset watcher and a sensor built from Airflow's own classes only (``BaseOperator``,
``BaseSensorOperator``, ``BaseEventTrigger``).

Goal: < 50 ms added by our imports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchmarks import _common as c

OURS = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher

    from airflow_provider_ion.operators.audit import IonWebhookAuditOperator
    from airflow_provider_ion.operators.webhooks import (
        IonCreateWebhookReceiverOperator, IonCreateWebhookSubscriptionOperator, IonDisableWebhookReceiverOperator,
        IonDisableWebhookSubscriptionOperator, IonEnableWebhookReceiverOperator, IonEnableWebhookSubscriptionOperator,
        IonEnsureWebhooksOperator, IonGraphQLOperator,
    )
    from airflow_provider_ion.sensors.webhook import IonWebhookSensor
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger, IonWebhookWaitTrigger  # noqa: F401

    runs = Asset("ion://runs/create", watchers=[AssetWatcher(name="w", trigger=IonWebhookTrigger(resource="RUNS"))])
    R = "bench"
    with DAG("parse_bench", schedule=[runs], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
        t = [
            IonCreateWebhookReceiverOperator(task_id="t1", name=R, webhook_uri="https://x.test/h"),
            IonCreateWebhookSubscriptionOperator(task_id="t2", receiver=R, resource="RUNS", action="CREATE"),
            IonDisableWebhookReceiverOperator(task_id="t3", receiver=R),
            IonEnableWebhookReceiverOperator(task_id="t4", receiver=R),
            IonDisableWebhookSubscriptionOperator(task_id="t5", receiver=R, resource="RUNS", action="CREATE"),
            IonEnableWebhookSubscriptionOperator(task_id="t6", receiver=R, resource="RUNS", action="CREATE"),
            IonEnsureWebhooksOperator(task_id="t7", receiver={"name": R, "webhook_uri": "https://x.test/h"},
                                      subscriptions=["RUNS/CREATE"]),
            IonGraphQLOperator(task_id="t8", document="Ping"),
            IonWebhookAuditOperator(task_id="t9"),
            IonWebhookSensor(task_id="t10", resource="ISSUES", action="CREATE", match={"data.runId": "7"}),
        ]
        for a, b in zip(t, t[1:]):
            a >> b
    """
)

BASELINE = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG, Asset, AssetWatcher, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseEventTrigger


    class Noop(BaseOperator):
        def execute(self, context):
            return None


    class Wait(BaseSensorOperator):
        def poke(self, context):
            return True


    class Watch(BaseEventTrigger):
        def __init__(self, path):
            super().__init__()
            self.path = path

        def serialize(self):
            return f"{__name__}.Watch", {"path": self.path}

        async def run(self):
            yield None


    runs = Asset("ion://runs/create", watchers=[AssetWatcher(name="w", trigger=Watch("/tmp/x"))])
    with DAG("parse_bench", schedule=[runs], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
        t = [Noop(task_id=f"t{i}") for i in range(1, 10)] + [Wait(task_id="t10")]
        for a, b in zip(t, t[1:]):
            a >> b
    """
)

#: What a DAG processor has imported before it parses a file (both DAG files use these).
PRELOAD = "import pendulum, airflow.sdk, airflow.triggers.base"
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S.*)$")


def measure(folder: Path, module: str, env: dict[str, str]) -> tuple[float, float]:
    """(cumulative seconds of the DAG module, seconds of airflow_provider_ion.* top-level imports)."""
    code = f"{PRELOAD}; import sys; sys.path.insert(0, {str(folder)!r}); import {module}"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed to import:\n{done.stderr[-3000:]}")
    total, ours = None, 0
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        cumulative, indent, name = int(match.group(2)), len(match.group(3)), match.group(4).strip()
        if name == module:
            total = cumulative
        elif name.startswith("airflow_provider_ion") and indent == 3:  # imported by the DAG file itself
            ours += cumulative
    assert total is not None, done.stderr[-2000:]
    return total / 1e6, ours / 1e6


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=None, help="fresh processes per DAG file (default 15; quick 1)")
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 15)
    with tempfile.TemporaryDirectory(prefix="ion-bench-parse-") as tmp:
        folder = Path(tmp)
        (folder / "dag_ion.py").write_text(OURS)
        (folder / "dag_airflow_only.py").write_text(BASELINE)
        # Bytecode as in a real install (pip compiles .pyc): PYTHONDONTWRITEBYTECODE would make every process
        # recompile our sources; the cache goes to a temporary prefix, never into the source tree.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            {
                "AIRFLOW_HOME": str(folder / "home"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{folder}/airflow.db",
                "PYTHONPYCACHEPREFIX": str(folder / "pycache"),
            }
        )
        for module in ("dag_airflow_only", "dag_ion"):  # warm: .pyc written, OS file cache, airflow.cfg
            measure(folder, module, env)
        ours, base, ours_modules = [], [], []
        for _ in range(repeat):
            b, _unused = measure(folder, "dag_airflow_only", env)
            o, mods = measure(folder, "dag_ion", env)
            base.append(b)
            ours.append(o)
            ours_modules.append(mods)
    added = c.median(ours) - c.median(base)
    ok = added < 0.050
    line = (
        f"DAG file with every ION operator, sensor and trigger: median **{c.ms(c.median(ours))} ms** vs the same DAG "
        f"on Airflow's own classes **{c.ms(c.median(base))} ms**: added **{c.ms(added)} ms** (ratio "
        f"{c.median(ours) / c.median(base):.2f}); our modules' own cumulative import time (inside the former) "
        f"{c.ms(c.median(ours_modules))} ms. Goal (< 50 ms added): {c.verdict(ok)}"
    )
    print(f"[parse] {line}")
    body = (
        f"`python -X importtime -c 'import <dag module>'` in fresh processes, {repeat} repetitions each, alternating; "
        f"`{PRELOAD}` first (as in the DAG processor); cumulative time of the DAG module, median. Bytecode "
        "cached (a warm-up import per file; PYTHONDONTWRITEBYTECODE unset, PYTHONPYCACHEPREFIX in a temp dir), "
        "as after `pip install`.\n\n- "
        + line
        + "\n\n"
        + c.table(
            ["DAG file", "median ms", "min ms", "max ms"],
            [
                ["ION (ours)", c.ms(c.median(ours)), c.ms(min(ours)), c.ms(max(ours))],
                ["Airflow only (baseline)", c.ms(c.median(base)), c.ms(min(base)), c.ms(max(base))],
            ],
        )
    )
    c.write_section(c.results_path(args), "parse", "4. Parse cost", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
