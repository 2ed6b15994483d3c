"""A distributed Airflow on one machine: CeleryExecutor, PostgreSQL, Redis, HAProxy and N of each component.

Two API servers (with this provider's receiver) behind HAProxy, two schedulers, two triggerers, two Celery
workers and one dag-processor, all sharing one fresh PostgreSQL database (Airflow's metadata and the inbox)
and Redis as Celery's broker. ``make demo-cluster``, the cluster failure tests and ``benchmarks/bench_cluster``
run on it. It reuses :class:`~airflow_provider_ion.testing.local_airflow.AirflowStack` for the Airflow
processes: each component is its own process group, ended (or ``kill -9``-ed) by that group's id.

Nothing here is production code: it starts local services with the machine's own commands and installs
HAProxy with ``apt-get`` when it is missing (Debian).

Example::

    with AirflowCluster(tmp_path, dags_folder=dags) as cluster:
        cluster.kill("scheduler-1")                       # SIGKILL to the whole process group
        rows = cluster.query("SELECT state FROM dag_run")

Why ~500 lines: one class that starts, wires and kills every component of the cluster; the single
processes come from :mod:`airflow_provider_ion.testing.local_airflow`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_ion.testing.local_airflow import AirflowStack, free_port, stop_group

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# The machine's own ways to start its services when they are not answering (Debian packages).
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)

#: The address HAProxy connects to the API servers from (the only trusted proxy), and the clients allowed to
#: deliver (ION: here the emulator on 127.0.0.1). Any other loopback address stands for a stranger.
PROXY_SOURCE = "127.0.0.3"
ALLOWED_SOURCE = "127.0.0.1/32"

#: A receiver's secret for the cluster's emulator and Airflow (test value, never a real one).
SECRET = "cluster-secret-0123456789-abcdefghijklmnop"
RECEIVER = "factory"

#: The cluster's event-driven DAG: one AssetWatcher on RUNS/CREATE; the task retries as a user would
#: configure it (a killed Celery worker fails its task after the heartbeat timeout; the retry runs it again).
CLUSTER_DAG = """
import os
import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_ion.events import IonEvent
from airflow_provider_ion.triggers.webhook import IonWebhookTrigger

runs_created = Asset("ion://runs/create", watchers=[AssetWatcher(
    name="ion_runs_created", trigger=IonWebhookTrigger(resource="RUNS", action="CREATE"))])

with DAG("ion_cluster_events", schedule=[runs_created], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, max_active_runs=16):

    @task(retries=3, retry_delay=timedelta(seconds=2))
    def handle(*, triggering_asset_events=None):
        time.sleep(float(os.environ.get("ION_CLUSTER_TASK_SECONDS", "0")))
        return [{"event_id": e.event_id_text, "data": e.data}
                for e in IonEvent.iter_triggering(triggering_asset_events)]

    handle()
"""
DAG_ID = "ion_cluster_events"


def _answers(host: str, port: int, probe: bytes = b"", expect: bytes = b"") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            if probe:
                sock.sendall(probe)
                return sock.recv(64).startswith(expect)
            return True
    except OSError:
        return False


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def parents_of_all() -> dict[int, int]:
    """pid -> parent pid of every process (Linux ``/proc``)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(root: int) -> set[int]:
    """``root`` and every process below it (any process group)."""
    parents = parents_of_all()
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier.extend(children)
    return found


def ensure_services(say: Callable[[str], None] = print) -> None:
    """Start the local PostgreSQL and Redis with the machine's commands when they are not answering."""
    if not _answers("127.0.0.1", 5432):
        say("PostgreSQL is not answering on 127.0.0.1:5432; starting it")
        subprocess.run(PG_START, shell=True, check=True, timeout=120)
        _wait_for(lambda: _answers("127.0.0.1", 5432), 60, "PostgreSQL")
    if not _answers(REDIS_HOST, REDIS_PORT, b"PING\r\n", b"+PONG"):
        say("Redis is not answering on 127.0.0.1:6379; starting it")
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(REDIS_START, shell=True, check=True, timeout=60)
        _wait_for(lambda: _answers(REDIS_HOST, REDIS_PORT, b"PING\r\n", b"+PONG"), 30, "Redis")


def ensure_haproxy(say: Callable[[str], None] = print) -> str:
    """The ``haproxy`` binary; installed with ``apt-get`` (Debian package ``haproxy``) when missing."""
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if found:
        return found
    if not shutil.which("apt-get"):
        raise SystemExit("haproxy is not installed and there is no apt-get here: install HAProxy 2.x first")
    say("installing haproxy (apt-get install -y haproxy) ...")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "haproxy"]):
        subprocess.run(command, env=apt_env, stdout=subprocess.DEVNULL, check=True, timeout=600)
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(found):
        raise SystemExit("apt-get install haproxy finished but no haproxy binary was found")
    return found


def haproxy_config(port: int, backends: list[int]) -> str:
    """Round robin over the API servers; a server whose health check fails three times (2 s apart, 5 s
    each: a busy API server is slow, not dead) is out, and a connection that cannot be made (a dead server)
    is retried on the other server (``option redispatch``). A request already sent to a server that dies is
    answered 502: the sender (ION) retries it. HAProxy connects to the API servers from ``PROXY_SOURCE``
    (a loopback address of its own) and sets ``X-Forwarded-For`` to the client's address, so the
    receiver's ``trusted_proxies`` / ``allowed_cidrs`` see the real client as they would behind an ingress."""
    servers = "\n".join(f"    server api{i} 127.0.0.1:{p} check" for i, p in enumerate(backends, 1))
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 5s
    retries 3
    option redispatch 1

frontend airflow
    bind 127.0.0.1:{port}
    # The first hop: replace, never append to, what the client sent (HAProxy's "option forwardfor" adds a
    # second X-Forwarded-For line, and a reader of the first line would believe the client's own claim).
    http-request set-header X-Forwarded-For %[src]
    default_backend api_servers

backend api_servers
    balance roundrobin
    source {PROXY_SOURCE}
    option httpchk GET /api/v2/monitor/health
    default-server inter 2s fall 3 rise 1
{servers}
"""


class AirflowCluster:
    """A CeleryExecutor Airflow on one machine: N API servers behind HAProxy, N schedulers, triggerers and
    Celery workers, one dag-processor, a fresh PostgreSQL database (metadata + inbox), Redis as broker.

    Component names: ``api-server-1``, ``scheduler-2``, ``triggerer-1``, ``celery-worker-2``, ``dag-processor``.

    Example::

        with AirflowCluster(home, dags_folder=dags, env={"ION_CLUSTER_TASK_SECONDS": "1"}) as cluster:
            print(cluster.base_url)                       # the balancer: REST API, UI and /ion-webhooks
            cluster.kill("triggerer-1")
    """

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        pg_admin_url: str = PG_ADMIN_URL,
        db_prefix: str = "ion_cluster_",
        api_servers: int = 2,
        schedulers: int = 2,
        triggerers: int = 2,
        workers: int = 2,
        worker_concurrency: int = 2,
        say: Callable[[str], None] = print,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.say = say
        self.pg_admin_url = pg_admin_url
        self.db_name = f"{db_prefix}{uuid.uuid4().hex[:10]}"
        server = pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
        self.db_url = f"postgresql+psycopg://{server}/{self.db_name}"
        self.queue = f"ion_cluster_{uuid.uuid4().hex[:8]}"  # Celery queue of this cluster alone on a shared Redis
        self.api_ports = [free_port() for _ in range(api_servers)]
        commands: dict[str, list[str]] = {}
        component_env: dict[str, dict[str, str]] = {}
        for i, port in enumerate(self.api_ports, 1):
            commands[f"api-server-{i}"] = ["api-server", "--port", str(port)]
        for i in range(1, schedulers + 1):
            commands[f"scheduler-{i}"] = ["scheduler"]
        for i in range(1, triggerers + 1):
            commands[f"triggerer-{i}"] = ["triggerer"]
            component_env[f"triggerer-{i}"] = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        tag = uuid.uuid4().hex[:6]
        for i in range(1, workers + 1):
            commands[f"celery-worker-{i}"] = ["celery", "worker", "--concurrency", str(worker_concurrency),
                                              "--celery-hostname", f"w{i}-{tag}@%h", "--queues", self.queue,
                                              "--without-mingle", "--without-gossip"]  # fmt: skip
            component_env[f"celery-worker-{i}"] = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        commands["dag-processor"] = ["dag-processor"]
        self.counts = {"api-server": api_servers, "scheduler": schedulers, "triggerer": triggerers,
                       "celery-worker": workers, "dag-processor": 1}  # fmt: skip
        # The stack's own port is the balancer's: its REST helpers, the UI and the execution API go through it.
        self.stack = AirflowStack(
            self.home / "airflow",
            dags_folder=dags_folder,
            db_url=self.db_url,
            components=list(commands),
            commands=commands,
            component_env=component_env,
            env={
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.db_url,  # psycopg 3 does async too
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.db_url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # one secret for every API server
                # Failure detection short enough for a test (defaults: 300 s heartbeat timeout, 300 s orphan
                # check, 30 s health thresholds; airflow/config_templates/config.yml [scheduler]/[triggerer]).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
                # A worker killed after Celery handed it a task but before the task started leaves the task
                # instance queued; its Redis message (acks_late) is invisible for [celery_broker_transport_options]
                # visibility_timeout (86400 s). The scheduler requeues a task queued longer than this (600 s).
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                # The receiver: inbox in the metadata database; the balancer is a trusted proxy (X-Forwarded-For).
                "AIRFLOW__ION_WEBHOOKS__INBOX_URL": self.db_url,
                "AIRFLOW__ION_WEBHOOKS__ION_CONN_ID": "none",
                "AIRFLOW__ION_WEBHOOKS__TRUSTED_PROXIES": f"{PROXY_SOURCE}/32",
                "AIRFLOW__ION_WEBHOOKS__ALLOWED_CIDRS": ALLOWED_SOURCE,
                f"AIRFLOW_VAR_ION_WEBHOOK_SECRET_{RECEIVER.upper()}": SECRET,
                **(env or {}),
            },
        )
        self.base_url = self.stack.base_url
        self.haproxy: subprocess.Popen | None = None
        self._haproxy_log: Any = None
        self._db_created = False

    @property
    def receiver_url(self) -> str:
        return f"{self.base_url}/ion-webhooks/v1/receivers/{RECEIVER}"

    # lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> AirflowCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 300) -> None:
        try:
            ensure_services(self.say)
            binary = ensure_haproxy(self.say)
            self._create_database()
            self._start_haproxy(binary)
            self.say(f"PostgreSQL database {self.db_name}; Redis broker, Celery queue {self.queue}; "
                     f"HAProxy at {self.base_url} -> API servers on {self.api_ports}")  # fmt: skip
            self.say(f"starting Airflow: {', '.join(f'{n} x {k}' for k, n in self.counts.items())} ...")
            self.stack.start(timeout=timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every process group at once, then SIGKILL what is left; drop the database."""
        procs = list(self.stack.procs.values()) + ([self.haproxy] if self.haproxy else [])
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        self.stack.stop()  # SIGKILLs any group still there, closes the logs
        if self.haproxy is not None:
            stop_group(self.haproxy, signal.SIGKILL)
            self.haproxy = None
        if self._haproxy_log is not None:
            self._haproxy_log.close()
            self._haproxy_log = None
        if self._db_created:
            self._drop_database()

    def kill(self, name: str) -> None:
        """``kill -9`` the component as a dying machine or container would: its process group and the groups
        of every process it started (Airflow's task supervisor puts each task in a group of its own,
        ``airflow/sdk/execution_time/supervisor.py`` ``setpgid``, so a worker's group alone misses its tasks)."""
        self._signal_all(name, signal.SIGKILL)
        self.stack.stop_component(name, signal.SIGKILL)

    def freeze(self, name: str) -> None:
        """``SIGSTOP`` the component and everything it started, as a hung machine: its sockets still accept
        connections (the kernel completes them), nothing answers. :meth:`kill` ends it."""
        self._signal_all(name, signal.SIGSTOP)

    def _signal_all(self, name: str, sig: signal.Signals) -> None:
        proc = self.stack.procs[name]
        groups = set()
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        groups.discard(os.getpgid(0))
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)

    def owner_of(self, pid: int) -> str | None:
        """The component whose process (or a descendant of it) ``pid`` is."""
        parents = parents_of_all()
        by_pid = {p.pid: n for n, p in self.stack.procs.items()}
        while pid > 1:
            if pid in by_pid:
                return by_pid[pid]
            pid = parents.get(pid, 0)
        return None

    def alive(self, kind: str) -> list[str]:
        return [n for n, p in self.stack.procs.items() if n.startswith(kind) and p.poll() is None]

    def wait_ready(self, timeout: float = 300) -> None:
        """Every component up: both API servers healthy, the jobs of every scheduler, triggerer and the
        dag-processor heartbeating in the job table, every Celery worker ready."""
        deadline = time.monotonic() + timeout

        def ready() -> bool:
            for name, proc in self.stack.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited early:\n{self.stack.log_text(name)[-4000:]}")
            for port in self.api_ports:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
            jobs = dict(self.query("SELECT job_type, count(*) FROM job WHERE state = 'running' AND "
                                   "latest_heartbeat > now() - interval '20 seconds' GROUP BY job_type"))  # fmt: skip
            wanted = {"SchedulerJob": self.counts["scheduler"], "TriggererJob": self.counts["triggerer"],
                      "DagProcessorJob": 1}  # fmt: skip
            if any(jobs.get(k, 0) < n for k, n in wanted.items()):
                return False
            workers = [n for n in self.stack.procs if n.startswith("celery-worker")]
            return all(" ready." in self.stack.log_text(n) for n in workers)

        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready after {timeout}s")
            time.sleep(1)

    # database ------------------------------------------------------------------------------------
    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Run one statement on the cluster's database (psycopg 3); its rows."""
        import psycopg

        with psycopg.connect(self.db_url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as c:
            cursor = c.execute(sql, args)
            return cursor.fetchall() if cursor.description else []

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
        self._db_created = True

    def _drop_database(self) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self._db_created = False

    # balancer ------------------------------------------------------------------------------------
    def _start_haproxy(self, binary: str) -> None:
        config = self.home / "haproxy.cfg"
        config.write_text(haproxy_config(self.stack.port, self.api_ports))
        check = subprocess.run([binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejected {config}:\n{check.stdout}{check.stderr}")
        self._haproxy_log = open(self.home / "haproxy.log", "ab")  # noqa: SIM115 - closed in stop
        # -db: stay in the foreground (no daemon, no system service); its own process group.
        self.haproxy = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=self._haproxy_log,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        _wait_for(lambda: _answers("127.0.0.1", self.stack.port), 15, "haproxy to listen")

    # results -------------------------------------------------------------------------------------
    def runs(self) -> list[tuple[str, str]]:
        """(run_id, state) of every run of the cluster DAG."""
        return [tuple(r) for r in self.query("SELECT run_id, state FROM dag_run WHERE dag_id = %s", DAG_ID)]

    def handled(self) -> dict[str, list[str]]:
        """event_id -> run_ids of the successful runs whose task returned that event."""
        out: dict[str, list[str]] = {}
        for run_id, event in self._handled_events():
            out.setdefault(str(event["event_id"]), []).append(run_id)
        return out

    def handled_data(self) -> dict[str, set[str]]:
        """event_id -> the distinct ``data`` (as JSON) successful runs saw for it: one per event, always."""
        import json

        out: dict[str, set[str]] = {}
        for _run_id, event in self._handled_events():
            out.setdefault(str(event["event_id"]), set()).add(json.dumps(event.get("data"), sort_keys=True))
        return out

    def _handled_events(self) -> list[tuple[str, dict[str, Any]]]:
        import json

        rows = self.query(
            "SELECT r.run_id, x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id "
            "WHERE x.dag_id = %s AND x.task_id = 'handle' AND x.key = 'return_value' AND r.state = 'success'",
            DAG_ID,
        )
        out: list[tuple[str, dict[str, Any]]] = []
        for run_id, value in rows:
            events = json.loads(value) if isinstance(value, str) else value
            out.extend((run_id, event) for event in events or [])
        return out

    def task_tries(self) -> dict[str, int]:
        """run_id -> try_number of the cluster DAG's task (above 1: a retry ran)."""
        rows = self.query("SELECT run_id, try_number FROM task_instance WHERE dag_id = %s", DAG_ID)
        return {run_id: tries for run_id, tries in rows}


def subscribed_emulator(receiver_url: str, *, retry_schedule: tuple[float, ...] = (0.5, 1, 2, 3, 5),
                        max_attempts: int = 60, concurrency: int = 16, timeout: float = 10) -> Any:  # fmt: skip
    """A started ION emulator with receiver ``factory`` (the cluster's secret) subscribed to RUNS/CREATE at
    ``receiver_url``; ION's retry schedule shrunk to seconds, ``timeout`` seconds per delivery attempt."""
    from airflow_provider_ion.testing.emulator import EmulatorServer
    from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings

    settings = DeliverySettings(retry_schedule=retry_schedule, max_attempts=max_attempts, timeout=timeout,
                                concurrency=concurrency, loopback_only=True)  # fmt: skip
    emulator = EmulatorServer(delivery=settings).start()
    receiver = emulator.store.create_receiver({"name": RECEIVER, "webhookUri": receiver_url, "sharedSecret": SECRET})
    emulator.store.create_subscription({"receiverId": receiver["id"], "resource": "RUNS", "action": "CREATE"})
    return emulator


def wait_for_trigger(cluster: AirflowCluster, timeout: float = 180) -> None:
    """The DAG is parsed and its AssetWatcher trigger runs in a triggerer (it has its inbox cursor)."""
    from airflow_provider_ion.triggers.webhook import IonWebhookTrigger
    from airflow_provider_ion.webhooks.inbox import Inbox

    cluster.stack.wait_for_dag(DAG_ID, timeout=timeout)
    consumer = IonWebhookTrigger(resource="RUNS", action="CREATE").consumer_name
    with Inbox(cluster.db_url) as inbox:
        # the default cursor is "<filter name>-<Airflow trigger id>" (IonWebhookTrigger.consumer_name)
        _wait_for(
            lambda: any(name == consumer or name.startswith(f"{consumer}-") for name in inbox.list_cursors()),
            timeout,
            "the AssetWatcher trigger to start",
        )


def stranded(cluster: AirflowCluster, expected: set[str]) -> set[str]:
    """The ``expected`` event ids in no successful DAG run while every run has ended and no asset queue row is
    left: what only a next event of the asset would bring into a run. A diagnostic for the failure test and
    the demo: it stays empty while the stranded-event sweep works.

    Airflow before 3.4 leaves an event that reaches Airflow while its asset's queue row is being consumed out
    of that run, and deletes the row, so the event waits for the next event of the asset
    (``airflow/jobs/scheduler_job_runner.py``: the run's events end at the queue row's ``created_at``);
    the provider's sweep (``triggers/_sweep.py``) re-queues the DAG after a quiet period.
    """
    missing = expected - set(cluster.handled())
    if not missing or any(state not in ("success", "failed") for _run, state in cluster.runs()):
        return set()
    return missing if cluster.query("SELECT count(*) FROM asset_dag_run_queue")[0][0] == 0 else set()
