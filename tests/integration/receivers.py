"""A standalone receiver (``airflow-ion receiver serve``) as a real process the tests can kill -9.

Its own process group (``start_new_session=True``), ended by that group's id; settings come the way an
operator would give them: ``AIRFLOW__ION_WEBHOOKS__*`` and the secret as ``AIRFLOW_VAR_ION_WEBHOOK_SECRET_<NAME>``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from airflow_provider_ion.testing.local_airflow import free_port, stop_group

BIN = Path(sys.executable).parent


class ReceiverProcess:
    """``airflow-ion receiver serve`` on 127.0.0.1:``port`` with its inbox at ``inbox_url``."""

    def __init__(self, home: Path, inbox_url: str, secrets: dict[str, str], port: int | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.inbox_url = inbox_url
        self.stats_token = "stats-token-for-tests"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
            "AIRFLOW__ION_WEBHOOKS__INBOX_URL": inbox_url,
            "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
            "ION_RECEIVER_STATS_TOKEN": self.stats_token,
            **{f"AIRFLOW_VAR_ION_WEBHOOK_SECRET_{name.upper()}": secret for name, secret in secrets.items()},
        }
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/ion-webhooks/v1/receivers/{name}"

    def start(self, timeout: float = 60) -> ReceiverProcess:
        self._log = open(self.home / "receiver.log", "ab")  # noqa: SIM115 - closed in stop/kill
        args = [str(BIN / "airflow-ion"), "receiver", "serve", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited early:\n{self.log_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/ion-webhooks/health", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver not healthy after {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown, no flush, like a power cut of the process."""
        assert self.proc is not None
        os.killpg(os.getpgid(self.proc.pid), signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc)
        self._close_log()

    def stats(self) -> dict:
        response = httpx.get(
            f"{self.base_url}/ion-webhooks/v1/stats", headers={"authorization": f"Bearer {self.stats_token}"}
        )
        response.raise_for_status()
        return response.json()["receiver"]

    def log_text(self) -> str:
        path = self.home / "receiver.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
