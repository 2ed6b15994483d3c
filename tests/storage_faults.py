"""Helpers for storage-fault tests: a load of senders with acknowledged keys and refusal times, a small tmpfs
of the test's own (root only) and a filler that takes its every free byte, and a sender of signed deliveries.

Used by ``tests/webhooks/test_inbox_storage_faults.py`` (the inbox alone and the standalone receiver app) and
``tests/integration/test_api_server_storage_faults.py`` (the receiver inside a real Airflow API server).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_provider_ion.webhooks.inbox import Inbox


class Load:
    """Appends from ``threads`` threads until stopped; records acknowledged keys and refusals with times."""

    def __init__(self, send: Callable[[str], bool], threads: int = 3) -> None:
        self.send = send
        self.acked: set[str] = set()
        self.ok_times: list[float] = []
        self.refused_times: list[float] = []
        self.unexpected: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, t: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            key = f"t{t}-{i}"
            try:
                acked = self.send(key)
            except BaseException as error:  # anything but the documented refusal is a failure
                with self._lock:
                    self.unexpected.append(error)
                return
            with self._lock:
                if acked:
                    self.acked.add(key)
                    self.ok_times.append(time.monotonic())
                else:
                    self.refused_times.append(time.monotonic())
            if not acked:
                time.sleep(0.02)  # as a retrying sender would, a little later

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait(self, what: Callable[[], bool], timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert not self.unexpected, self.unexpected
            assert time.monotonic() < deadline, message
            time.sleep(0.01)

    def refusals_since(self, t: float) -> int:
        return sum(1 for x in self.refused_times if x >= t)

    def first_ok_after(self, t: float) -> float | None:
        return next((x for x in self.ok_times if x >= t), None)


def stored_keys(inbox: Inbox, receiver: str = "faults") -> set[str]:
    """Every event_id the inbox holds for ``receiver``."""
    return {e.event_id for e in inbox.read_after(0, limit=1_000_000, receiver=receiver)}


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount`` (root only: skips otherwise), unmounted on exit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of ``directory``'s file system."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


def http_sender(base: str, secret: str, receiver: str = "faults") -> Callable[[str], bool]:
    """``send(key)`` POSTs a signed delivery with event_id ``key``: True on 200, False on 503 + Retry-After;
    any other answer fails the load."""
    import httpx

    from airflow_provider_ion.webhooks.signature import sign

    client = httpx.Client(timeout=30)

    def send(key: str) -> bool:
        body = json.dumps({"event_id": key, "resource": "RUNS", "action": "CREATE", "data": {"n": key}}).encode()
        headers = {"content-type": "application/json", "x-ion-signature": sign(body, secret)}
        response = client.post(f"{base}/ion-webhooks/v1/receivers/{receiver}", content=body, headers=headers)
        if response.status_code == 503:
            assert response.headers.get("retry-after"), "a 503 must say when to retry"
            return False
        assert response.status_code == 200, (response.status_code, response.text)
        return True

    return send
