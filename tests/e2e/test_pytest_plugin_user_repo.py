"""The pytest plugin in a user's repository: README's DAG and README's test, copied verbatim into a fresh
folder, run by a separate pytest process that knows nothing of this repository's conftest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(first_line: str) -> str:
    """The ```python block of README.md whose first line is ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no python block starting with {first_line!r}")


def test_readme_dag_test_passes_in_a_users_repo(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "dags" / "on_issue.py").write_text(readme_block("# dags/on_issue.py"))
    test = readme_block("# tests/test_on_issue.py")
    # One more test, to see a non-matching event fail loudly rather than run the DAG.
    test += (
        "\n\ndef test_closed_issue_does_not_run_it(ion_inbox, run_ion_dag):\n"
        "    import pytest\n"
        '    event = ion_inbox.deliver("ISSUES", "CREATE", {"id": 8, "runId": 42, "status": "CLOSED"})\n'
        '    with pytest.raises(AssertionError, match="no ION asset watcher"):\n'
        "        run_ion_dag(DAG_FILE, event=event)\n"
    )
    (tmp_path / "tests" / "test_on_issue.py").write_text(test)
    (tmp_path / "pytest.ini").write_text("[pytest]\nion_airflow_home = auto\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=3", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout
    durations = re.findall(r"([\d.]+)s (call|setup)\s+tests/test_on_issue.py::(\w+)", done.stdout)
    print(f"\nTIMINGS plugin_user_session_wall_s={wall:.1f} " + " ".join(f"{n}:{w}={s}s" for s, w, n in durations))
    assert not list(tmp_path.glob("airflow.db"))  # the throwaway AIRFLOW_HOME was elsewhere
