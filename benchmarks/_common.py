"""Shared bits of the benchmarks: servers in their own process group, percentiles, machine info, RESULTS.md.

Every benchmark runs our code and its baseline side by side in the same run and reports the ratio: the
machine is shared and noisy, so absolute figures move between runs; ratios move much less.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
#: Section order in RESULTS.md.
SECTIONS = ("receiver", "airflow", "fanout", "parse", "hook", "cluster")
PG_URL = os.environ.get("ION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# -- arguments ------------------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny counts: checks the benchmark works, figures meaningless")
    p.add_argument(
        "--results",
        default=None,
        help=f"write the section into this RESULTS.md (default: {RESULTS.relative_to(REPO)} unless --quick)",
    )
    p.add_argument("--no-results", action="store_true", help="print only, write no RESULTS.md")
    return p


def results_path(args: argparse.Namespace) -> Path | None:
    if args.no_results:
        return None
    if args.results:
        return Path(args.results)
    return None if args.quick else RESULTS


def command_line() -> str:
    """How this benchmark was started, as a copy-pastable command (from the repo root)."""
    module = sys.modules["__main__"].__spec__
    name = module.name if module is not None else sys.argv[0]
    return f".venv/bin/python -m {name} {shlex.join(sys.argv[1:])}".strip()


# -- processes ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess in its own process group; ended by ``os.killpg`` of that group only."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
    ) -> None:
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or REPO
        self.log_path = log
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    def start(self, health_url: str | None = None, timeout: float = 60) -> Server:
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if health_url:
            wait_http(health_url, timeout, self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # start_new_session: pgid == pid
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http(url: str, timeout: float, server: Server | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if server is not None and not server.alive():
            raise RuntimeError(f"{server.args[0]} exited early:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not healthy after {timeout}s")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- statistics -----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# -- machine and versions -------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else platform.processor() or "unknown"
    mem = "unknown"
    with contextlib.suppress(OSError, AttributeError):
        kb = int(re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "kernel": platform.release(),
        "load average at write": load,
    }


def _dist(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(pg_dsn(), connect_timeout=3) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except Exception as error:
        return f"unavailable ({type(error).__name__})"


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "apache-airflow": _dist("apache-airflow"),
        "airflow-provider-ion": _dist("airflow-provider-ion"),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "sqlalchemy": _dist("sqlalchemy"),
        "uvicorn": _dist("uvicorn"),
        "starlette": _dist("starlette"),
        "uvloop": _dist("uvloop"),
        "httptools": _dist("httptools"),
        "httpx": _dist("httpx"),
        "psycopg": _dist("psycopg"),
    }


def pg_dsn() -> str:
    """PG_URL as a libpq DSN (SQLAlchemy's ``+psycopg`` removed)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", PG_URL)


def pg_available() -> bool:
    return not postgres_version().startswith("unavailable")


@contextlib.contextmanager
def pg_schema(prefix: str):
    """A fresh PostgreSQL schema (dropped afterwards); yields (schema, SQLAlchemy URL using it)."""
    import psycopg

    schema = f"{prefix}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- RESULTS.md -----------------------------------------------------------------------------------------

_HEADER_END = "<!-- /header -->"


def _header() -> str:
    machine = machine_info()
    vers = versions()
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (or one `make bench-<name>`); each section is replaced when its benchmark runs.",
        "Every figure is measured side by side with its baseline in the same run; the **ratio** is the result,",
        "the absolute numbers depend on the (shared, noisy) machine.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory']} RAM, Linux {machine['kernel']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        _HEADER_END,
    ]
    return "\n".join(lines)


def write_section(path: Path | None, name: str, title: str, body: str) -> None:
    """Replace (or add) section ``name`` of RESULTS.md; the header (machine, versions) is refreshed."""
    if path is None:
        return
    assert name in SECTIONS, name
    machine = machine_info()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    block = (
        f"<!-- bench:{name} -->\n## {title}\n\n_Run {stamp}, load average {machine['load average at write']}; "
        f"command: `{command_line()}`_\n\n{body.strip()}\n<!-- /bench:{name} -->"
    )
    sections: dict[str, str] = {}
    if path.exists():
        for match in re.finditer(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", path.read_text(), re.S):
            sections[match.group(1)] = match.group(0)
    sections[name] = block
    ordered = [sections[n] for n in SECTIONS if n in sections]
    path.write_text(_header() + "\n\n" + "\n\n".join(ordered) + "\n")
    print(f"[bench] wrote section {name!r} of {path}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def receiver_command(port: int, inbox_url: str) -> list[str]:
    """Our standalone receiver (``airflow-ion receiver serve``) on ``port``, no ION look-up, quiet logs."""
    return [
        str(BIN / "airflow-ion"), "receiver", "serve", "--port", str(port), "--inbox-url", inbox_url,
        "--ion-conn-id", "none", "--log-level", "warning",
    ]  # fmt: skip
