"""A real local Airflow (api-server, scheduler, dag-processor, triggerer) as child processes.

``make demo`` runs on it, and so do our end-to-end tests; use it for end-to-end tests of your own DAGs.

Each component runs in its own process group (``start_new_session=True``) and is ended by that
group's id, so the children Airflow forks (executor workers, task supervisors) go with it and no test
ever kills by name. Components are separate processes, not ``airflow standalone``, so a test can
``kill -9`` one of them (the triggerer, say) and start it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """End ``proc``'s whole process group: ``sig`` first, SIGKILL if it lingers."""
    signal_group(proc, sig)
    reap_group(proc, timeout)


def signal_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``proc``'s process group (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(proc.pid), sig)


def reap_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait up to ``timeout`` for ``proc`` to exit, then SIGKILL whatever is left of its group."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid  # the leader is gone; its group id was its pid (start_new_session)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def emulator_connection(emulator: Any) -> dict[str, Any]:
    """The Airflow connection (``conn_type`` ``ion``) for a running emulator, as ``AIRFLOW_CONN_*`` JSON wants it.

    ``emulator`` is an :class:`~airflow_provider_ion.testing.emulator.server.EmulatorServer` (anything with
    ``base_url``, ``token_url``, ``client_id`` and ``client_secret``).
    """
    return {
        "conn_type": "ion",
        "login": emulator.client_id,
        "password": emulator.client_secret,
        "host": emulator.base_url,
        "extra": {"token_url": emulator.token_url},
    }


def connection_env(conn_id: str, connection: dict[str, Any]) -> dict[str, str]:
    """``{"AIRFLOW_CONN_<CONN_ID>": json}``: how Airflow reads a connection from the environment."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)}


class AirflowStack:
    """Airflow 3 on SQLite (or a given DB URL) with this provider installed, for demos and e2e tests.

    Example::

        with AirflowStack(tmp_path, dags_folder=DAGS, env={"AIRFLOW_CONN_ION_DEFAULT": ...}) as af:
            run_id = af.trigger("my_dag")
            assert af.wait_for_run("my_dag", run_id)["state"] == "success"
    """

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        db_url: str | None = None,
        components: Iterable[str] = COMPONENTS,
        commands: Mapping[str, Sequence[str]] | None = None,
        component_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.components = tuple(components)
        # A component's name is its ``airflow`` subcommand unless ``commands`` maps it to other arguments
        # (``{"scheduler-2": ["scheduler"]}``: several of one kind); ``component_env`` adds variables to one.
        self.commands = {name: list(args) for name, args in (commands or {}).items()}
        self.component_env = {name: dict(extra) for name, extra in (component_env or {}).items()}
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None
        self._logs: dict[str, Any] = {}
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url or f"sqlite:///{self.home}/airflow.db",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # Two local Airflows (or one next to a real one) must not fight over the log-server ports
            # (defaults 8793 and 8794, [logging] worker/trigger_log_server_port in config.yml).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # New and changed DAG files are picked up within seconds, not minutes.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }

    # lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        self.airflow("db", "migrate", timeout=300)
        try:
            for name in self.components:
                self.start_component(name)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def start_component(self, name: str) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_component
        args = [str(BIN / "airflow"), *self.commands.get(name, [name])]
        env = {**self.env, **self.component_env.get(name, {})}
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home
        )
        self.procs[name], self._logs[name] = proc, log
        return proc

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_group(proc, sig)
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def stop(self) -> None:
        """SIGTERM every component's group at once, then wait for each (SIGKILL after 20 s)."""
        for proc in self.procs.values():
            signal_group(proc)
        for name in list(self.procs):
            proc = self.procs.pop(name)
            reap_group(proc)
            log = self._logs.pop(name, None)
            if log is not None:
                log.close()

    def log_text(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # health and CLI ------------------------------------------------------------------------------
    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        wanted = {"api-server": None, "scheduler": "scheduler", "triggerer": "triggerer",
                  "dag-processor": "dag_processor"}  # fmt: skip
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited early:\n{self.log_text(name)[-4000:]}")
            try:
                last = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).json()
                if all(
                    key is None or last.get(key, {}).get("status") == "healthy"
                    for name, key in wanted.items()
                    if name in self.procs
                ):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Airflow not healthy after {timeout}s: {last}")

    def airflow(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done

    # REST API ------------------------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        """A bearer token from SimpleAuthManager's all-admins route (Airflow 3.0-3.1 ask for one even then)."""
        if self._token is None:
            try:
                response = httpx.get(f"{self.base_url}/auth/token", timeout=10)
                self._token = response.json().get("access_token", "") if response.status_code < 300 else ""
            except (httpx.HTTPError, ValueError):
                return {}
        return {"authorization": f"Bearer {self._token}"} if self._token else {}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call Airflow's REST API (``/api/v2``); JSON answer.

        GETs are retried a few times on a 5xx or a transport error: Airflow on SQLite answers 500 when
        its database is locked by the scheduler or triggerer for longer than its timeout.
        """
        attempts = 5 if method.upper() == "GET" else 1
        for attempt in range(attempts):
            try:
                response = httpx.request(
                    method, f"{self.base_url}/api/v2{path}", timeout=30, headers=self.auth_headers(), **kwargs
                )
                if response.status_code < 500 or attempt == attempts - 1:
                    break
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            time.sleep(0.5 * (attempt + 1))
        response.raise_for_status()
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=10, headers=self.auth_headers())
            if response.status_code == 200:
                return response.json()
            time.sleep(0.5)
        errors = httpx.get(f"{self.base_url}/api/v2/importErrors", timeout=10, headers=self.auth_headers()).json()
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout}s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self.wait_for_dag(dag_id)
        body = {"logical_date": None, "conf": conf or {}}
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1000})["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        run: dict = {}
        while time.monotonic() < deadline:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(0.5)
        raise TimeoutError(
            f"{dag_id}/{run_id} still {run.get('state')} after {timeout}s:\n{self.task_states(dag_id, run_id)}"
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
