"""Storage faults for real: the SQLite file on a full file system and on one made read-only (a small tmpfs
mounted by the test: needs root), and PostgreSQL restarted in the middle of a load (a cluster of the
test's own on another port). During the outage appends raise InboxUnavailable (the receiver's 503);
afterwards the same Inbox object appends again; no acknowledged append is lost.

Each test prints its outage and recovery times (``pytest -s``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_ion.webhooks.inbox import Inbox, InboxUnavailable
from tests.storage_faults import Load, fill, http_sender, small_tmpfs, stored_keys

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def inbox_sender(inbox: Inbox, body: bytes = b'{"resource": "RUNS", "action": "CREATE"}') -> Callable[[str], bool]:
    def send(key: str) -> bool:
        try:
            inbox.append("faults", key, body)
        except InboxUnavailable:
            return False
        return True

    return send


# -- SQLite on a small file system of its own ----------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """A 8 MB tmpfs mounted for this test (root only), unmounted afterwards."""
    with small_tmpfs(tmp_path / "mnt") as mount:
        yield mount


def test_sqlite_on_a_full_file_system(small_fs):
    inbox = Inbox(f"sqlite:///{small_fs}/inbox.db", busy_timeout=2)
    try:
        assert inbox.append("faults", "warm-up", b"{}").duplicate is False
        with Load(inbox_sender(inbox, b'{"resource": "RUNS", "pad": "' + b"x" * 4000 + b'"}')) as load:
            load.wait(lambda: len(load.acked) >= 20, 20, "no appends before the fault")
            filler = fill(small_fs)
            full_at = time.monotonic()
            load.wait(lambda: load.refusals_since(full_at) >= 10, 30, "a full disk never refused an append")
            filler.unlink()
            freed_at = time.monotonic()
            load.wait(lambda: load.first_ok_after(freed_at) is not None, 30, "no recovery after freeing space")
            recovered_at = load.first_ok_after(freed_at)
            load.wait(lambda: len([x for x in load.ok_times if x > freed_at]) >= 20, 20, "no appends after")
        assert not load.unexpected, load.unexpected
        first_refusal = min(x for x in load.refused_times if x >= full_at)
        print(
            f"\n[faults] sqlite disk full: first 503 {first_refusal - full_at:.3f}s after filling; "
            f"{load.refusals_since(full_at)} refused; recovered {recovered_at - freed_at:.3f}s after freeing "
            f"space; {len(load.acked)} acknowledged"
        )
        missing = load.acked - stored_keys(inbox)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    finally:
        inbox.close()


def test_sqlite_on_a_file_system_made_read_only(small_fs):
    """The kernel refuses a read-only remount while a file is open for writing (EBUSY), so the inbox's
    connections are released first with close(): the SAME Inbox object is used before, during, after."""
    inbox = Inbox(f"sqlite:///{small_fs}/inbox.db", busy_timeout=1)
    try:
        acked = {f"before-{i}" for i in range(20)}
        for key in sorted(acked):
            inbox.append("faults", key, b"{}")
        inbox.close()
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        made_ro = time.monotonic()
        refused = 0
        for i in range(5):
            with pytest.raises(InboxUnavailable) as info:
                inbox.append("faults", f"during-{i}", b"{}")
            refused += 1
        assert "unavailable" in str(info.value)
        with pytest.raises(InboxUnavailable):
            inbox.set_cursor("consumer", 1)
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
        writable_at = time.monotonic()
        inbox.append("faults", "after-0", b"{}")  # the same object: no re-creation
        recovered = time.monotonic() - writable_at
        acked |= {"after-0"}
        for i in range(1, 20):
            inbox.append("faults", f"after-{i}", b"{}")
            acked.add(f"after-{i}")
        assert inbox.set_cursor("consumer", 1) == 1
        print(
            f"\n[faults] sqlite read-only: {refused} appends refused over {writable_at - made_ro:.3f}s; first "
            f"append after the rw remount took {recovered:.3f}s"
        )
        assert acked <= stored_keys(inbox)
        assert not any(k.startswith("during-") for k in stored_keys(inbox))
    finally:
        inbox.close()


# -- PostgreSQL: a cluster of our own, restarted mid-load --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )


class OwnPostgres:
    """initdb + pg_ctl of a throw-away cluster on its own port (run as the ``postgres`` OS user)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ion-inbox-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        result = _as_postgres(str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(self.data))
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        options = f"'-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on'"
        log = self.dir / "log"
        pg_ctl = str(PG_BIN / "pg_ctl")
        result = _as_postgres(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")
        assert result.returncode == 0, result.stderr + result.stdout

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop("immediate")
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: end that one process, by its id
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), 9)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[OwnPostgres]:
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.skip("needs root and PostgreSQL 15's initdb to run a cluster of our own")
    cluster = OwnPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_restarted_in_the_middle_of_a_load(own_pg):
    inbox = Inbox(own_pg.url, busy_timeout=2)
    try:
        assert inbox.append("faults", "warm-up", b"{}").duplicate is False
        with Load(inbox_sender(inbox), threads=4) as load:
            load.wait(lambda: len(load.acked) >= 50, 20, "no appends before the restart")
            stopping_at = time.monotonic()
            own_pg.stop("fast")
            stopped_at = time.monotonic()
            load.wait(lambda: load.refusals_since(stopped_at) >= 5, 20, "a stopped server never refused")
            time.sleep(1.0)  # an outage of a second or so, as a restart under an orchestrator
            own_pg.start()
            started_at = time.monotonic()
            load.wait(lambda: load.first_ok_after(started_at) is not None, 30, "no recovery after the restart")
            recovered_at = load.first_ok_after(started_at)
            load.wait(lambda: len([x for x in load.ok_times if x > started_at]) >= 50, 20, "no appends after")
        assert not load.unexpected, load.unexpected
        print(
            f"\n[faults] postgres restart: outage {recovered_at - stopping_at:.3f}s from stop to the next "
            f"acknowledged append ({load.refusals_since(stopping_at)} refused); recovered "
            f"{recovered_at - started_at:.3f}s after the server was up; {len(load.acked)} acknowledged"
        )
        missing = load.acked - stored_keys(inbox)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
        with inbox.engine.connect() as conn:  # the listener and other readers work again as well
            assert conn.execute(sa.select(sa.func.count()).select_from(inbox.events)).scalar() >= len(load.acked)
    finally:
        inbox.close()


# -- the same faults at the HTTP level, through the receiver app (503 + Retry-After, then 200) --------------

SECRET = "s3cr3t-for-the-storage-faults-0123456789"


@contextlib.contextmanager
def receiver_on(inbox: Inbox) -> Iterator[str]:
    from airflow_provider_ion.webhooks.app import ReceiverApp, ReceiverSettings
    from airflow_provider_ion.webhooks.secrets import ReceiverSecrets
    from tests.servers import serve

    def secrets(name: str) -> ReceiverSecrets | None:
        return ReceiverSecrets((SECRET,), source="test") if name == "faults" else None

    app = ReceiverApp(ReceiverSettings(), inbox=inbox, secret_sources=[secrets])
    with serve(app.asgi) as base:
        yield base


def test_http_sqlite_disk_full_answers_503_then_recovers(small_fs):
    inbox = Inbox(f"sqlite:///{small_fs}/inbox.db", busy_timeout=2)
    try:
        with receiver_on(inbox) as base, Load(http_sender(base, SECRET)) as load:
            load.wait(lambda: len(load.acked) >= 20, 30, "no deliveries before the fault")
            filler = fill(small_fs)
            full_at = time.monotonic()
            load.wait(lambda: load.refusals_since(full_at) >= 5, 30, "a full disk never answered 503")
            filler.unlink()
            freed_at = time.monotonic()
            load.wait(lambda: load.first_ok_after(freed_at) is not None, 30, "no 200 after freeing space")
            recovered_at = load.first_ok_after(freed_at)
        assert not load.unexpected, load.unexpected
        print(
            f"\n[faults] http sqlite disk full: {load.refusals_since(full_at)} answered 503; first 200 "
            f"{recovered_at - freed_at:.3f}s after freeing space; {len(load.acked)} acknowledged"
        )
        missing = load.acked - stored_keys(inbox)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    finally:
        inbox.close()


def test_http_postgres_restart_answers_503_then_recovers(own_pg):
    inbox = Inbox(own_pg.url, table_prefix="http_faults", busy_timeout=2)
    try:
        with receiver_on(inbox) as base, Load(http_sender(base, SECRET), threads=4) as load:
            load.wait(lambda: len(load.acked) >= 30, 30, "no deliveries before the restart")
            stopping_at = time.monotonic()
            own_pg.stop("fast")
            load.wait(lambda: load.refusals_since(stopping_at) >= 5, 30, "a stopped server never answered 503")
            time.sleep(1.0)
            own_pg.start()
            started_at = time.monotonic()
            load.wait(lambda: load.first_ok_after(started_at) is not None, 30, "no 200 after the restart")
            recovered_at = load.first_ok_after(started_at)
        assert not load.unexpected, load.unexpected
        print(
            f"\n[faults] http postgres restart: outage {recovered_at - stopping_at:.3f}s from stop to the next "
            f"200 ({load.refusals_since(stopping_at)} answered 503); first 200 {recovered_at - started_at:.3f}s "
            f"after the server was up; {len(load.acked)} acknowledged"
        )
        missing = load.acked - stored_keys(inbox)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    finally:
        inbox.close()
