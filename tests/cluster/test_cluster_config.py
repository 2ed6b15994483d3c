"""The cluster's generated HAProxy config is valid for the real HAProxy, and a kill reaches a component's
children in other process groups (as Airflow's task supervisor puts each task in a group of its own)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_ion.testing.cluster import PROXY_SOURCE, descendants, haproxy_config


def test_haproxy_accepts_the_generated_config(tmp_path: Path) -> None:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(binary):
        pytest.skip("haproxy is not installed (the cluster installs it when it starts)")
    config = tmp_path / "haproxy.cfg"
    text = haproxy_config(18080, [18081, 18082])
    config.write_text(text)
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "server api1 127.0.0.1:18081 check" in text and "server api2 127.0.0.1:18082 check" in text
    assert f"source {PROXY_SOURCE}" in text and "set-header X-Forwarded-For %[src]" in text
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "option forwardfor" not in directives  # it would add a second X-Forwarded-For line


def test_descendants_include_children_in_their_own_process_group() -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True); time.sleep(30)"  # noqa: E501
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(found := descendants(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = found - {parent.pid}
        assert len(children) == 1
        (child,) = children
        assert os.getpgid(child) != os.getpgid(parent.pid)
        os.killpg(os.getpgid(child), 9)
    finally:
        os.killpg(os.getpgid(parent.pid), 9)
        parent.wait()
