"""Which processes a test started: for "no process left behind" checks."""

from __future__ import annotations

import os
import time
from pathlib import Path


def processes_using(folder: Path) -> list[int]:
    """PIDs whose environment or working directory names ``folder``.

    Both: Airflow's api-server rewrites its process title over its environment (setproctitle), so only
    its working directory (the Airflow home, where AirflowStack starts every component) gives it away.
    """
    marker = str(folder)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if cwd.startswith(marker) or marker.encode() in environ:
            found.append(int(entry.name))
    return found


def wait_gone(folder: Path, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_using(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left
