"""Every benchmark in quick mode (tiny counts): they still run end to end. Figures are not checked.

Each runs as ``python -m benchmarks.<name> --quick --no-results`` from the repo root; the Airflow one
(which starts a real Airflow) runs in the background while the others run one after another.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
QUICK = ("bench_receiver", "bench_fanout", "bench_parse", "bench_hook")


def _cmd(name: str) -> list[str]:
    return [sys.executable, "-m", f"benchmarks.{name}", "--quick", "--no-results"]


def test_every_benchmark_runs_in_quick_mode() -> None:
    airflow = subprocess.Popen(
        _cmd("bench_airflow"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        for name in QUICK:
            done = subprocess.run(_cmd(name), cwd=REPO, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, f"{name}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            assert "Goal" in done.stdout or "ratio" in done.stdout, done.stdout
        out, _ = airflow.communicate(timeout=240)
        assert airflow.returncode == 0, f"bench_airflow:\n{out[-5000:]}"
        assert "[airflow]" in out
    finally:
        if airflow.poll() is None:
            import os
            import signal

            os.killpg(airflow.pid, signal.SIGKILL)
            airflow.wait()
