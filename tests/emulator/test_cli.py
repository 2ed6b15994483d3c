"""``airflow-ion emulator`` as a real subprocess: it serves tokens and GraphQL, and stops on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from airflow_provider_ion.testing.emulator.token_endpoint import TOKEN_PATH


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command() -> list[str]:
    script = shutil.which("airflow-ion", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "airflow_provider_ion.cli"]


def test_cli_serves_token_and_graphql(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["emulator", "--port", str(port), "--client-id", "cli-client", "--client-secret", "cli-secret"]
    process = subprocess.Popen(
        [*_command(), *args, "--state-file", str(tmp_path / "state.sqlite"), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{base}/_emulator/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "emulator did not come up"
            time.sleep(0.05)
        form = {"grant_type": "client_credentials", "client_id": "cli-client", "client_secret": "cli-secret"}
        token = httpx.post(base + TOKEN_PATH, data=form).json()["access_token"]
        response = httpx.post(
            base + "/graphql",
            json={"query": "query Ping { webhookReceivers(first: 1) { pageInfo { totalCount } } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.json() == {"data": {"webhookReceivers": {"pageInfo": {"totalCount": 0}}}}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
    # uvicorn shuts down gracefully, then re-raises the signal so the parent sees how it ended.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert f"ION emulator on {base}" in output
    assert (tmp_path / "state.sqlite").exists()
