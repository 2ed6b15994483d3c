"""``airflow-ion dev``: your DAGs on a local Airflow wired to the ION emulator, until Ctrl-C.

It starts the ION emulator (in this process) and a real Airflow (api-server with the receiver mounted,
scheduler, dag-processor, triggerer; SQLite, under ``--home``) on free ports, with everything a DAG
author would otherwise wire by hand:

- the connection ``ion_default`` (``--conn-id``) pointing at the emulator (``AIRFLOW_CONN_*``);
- ``[core] execution_api_server_url`` following the API server's port (tasks die with "connection
  refused" otherwise), distinct log-server ports, DAG-folder rescans every 2 s, DAGs unpaused;
- a receiver ``airflow`` in the emulator pointing at this Airflow and subscribed to every resource and
  action the emulator models, its shared secret in the Variable the receiver reads; so any DAG waiting
  for any ION event gets it, without a setup DAG.

It prints the UI URL and the commands that make ION events (``airflow-ion emulator create ...``), shows
each webhook the receiver accepts, and on Ctrl-C (or SIGTERM) stops every process it started: each
Airflow component runs in its own process group and is ended by that group's id.

``--real-ion`` skips the emulator and uses the connection you have (``AIRFLOW_CONN_<CONN_ID>`` in the
environment). Then ION must reach the receiver URL over HTTPS: see the README ("Your own DAGs").

:class:`LocalIon` (the emulator + Airflow, wired) is what ``airflow-ion demo`` runs on too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

RECEIVER = "airflow"
HOME_MARKER = ".airflow-ion-home"
ACTIONS = ("CREATE", "UPDATE", "DELETE")


class LocalIon:
    """The ION emulator and a local Airflow, wired together; ``start()``/``stop()`` or a context manager.

    Example::

        with LocalIon(Path(".ion-dev"), Path("dags"), subscribe_all=True) as local:
            print(local.stack.base_url, local.emulator.base_url)

    :param home: folder for Airflow's home, its SQLite DB and the inbox (emptied on start; it must be
        empty, missing, or made by an earlier ``LocalIon``).
    :param dags_folder: the DAGs Airflow runs.
    :param conn_id: the connection DAGs use to reach ION.
    :param real_ion: no emulator: the connection must already be in the environment.
    :param subscribe_all: create receiver ``airflow`` in the emulator subscribed to every resource/action.
    :param env: more environment for Airflow's processes.
    :param wipe_home: empty ``home`` even when it was not made by ``LocalIon`` (the demo's ``.demo``).
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        conn_id: str = "ion_default",
        real_ion: bool = False,
        subscribe_all: bool = False,
        env: dict[str, str] | None = None,
        wipe_home: bool = False,
    ) -> None:
        self.wipe_home = wipe_home
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.conn_id = conn_id
        self.real_ion = real_ion
        self.subscribe_all = subscribe_all
        self.extra_env = dict(env or {})
        self.emulator: Any = None
        self.stack: Any = None
        self.inbox: Any = None
        self.conn_env_var = f"AIRFLOW_CONN_{conn_id.upper()}"

    @property
    def inbox_url(self) -> str:
        return f"sqlite:///{self.home / 'ion_inbox.db'}"

    @property
    def receiver_url(self) -> str:
        return f"{self.stack.base_url}/ion-webhooks/v1/receivers/{RECEIVER}"

    def __enter__(self) -> LocalIon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def prepare(self) -> None:
        """Everything but starting Airflow: the home folder, the emulator, the wiring (``stack.env``)."""
        from airflow_provider_ion.testing.local_airflow import AirflowStack, connection_env, emulator_connection
        from airflow_provider_ion.webhooks.inbox import Inbox

        if not self.dags_folder.is_dir():
            raise SystemExit(f"airflow-ion: no DAGs folder at {self.dags_folder}; give --dags-folder DIR")
        if self.real_ion and not os.environ.get(self.conn_env_var):
            raise SystemExit(
                f"airflow-ion: --real-ion uses the connection {self.conn_id!r} from the environment; "
                f'export {self.conn_env_var}=\'{{"conn_type": "ion", "login": "<client id>", '
                f'"password": "<client secret>", "extra": {{"environment": "sandbox"}}}}\' first'
            )
        _fresh_home(self.home, wipe=self.wipe_home)
        env = {"AIRFLOW__ION_WEBHOOKS__INBOX_URL": self.inbox_url, **self.extra_env}
        if not self.real_ion:
            from airflow_provider_ion.testing.emulator import EmulatorServer
            from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings

            # ION retries for days; locally quick retries first, then every minute for about 15 minutes (a
            # busy laptop's API server may miss a few), to loopback receivers only.
            delivery = DeliverySettings(retry_schedule=(0.5, 1, 2, 5, 10, 30, 60), max_attempts=20, loopback_only=True)
            self.emulator = EmulatorServer(delivery=delivery).start()
            env.update(connection_env(self.conn_id, emulator_connection(self.emulator)))
        self.stack = AirflowStack(self.home / "airflow", dags_folder=self.dags_folder, env=env)
        if self.subscribe_all and self.emulator is not None:
            secret = secrets.token_urlsafe(32)
            self._subscribe_everything(secret)
            from airflow_provider_ion.webhooks.secrets import variable_name

            self.stack.env[f"AIRFLOW_VAR_{variable_name(RECEIVER).upper()}"] = secret
        self.inbox = Inbox(self.inbox_url)

    def start(self) -> None:
        self.prepare()
        try:
            self.stack.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.inbox is not None:
            self.inbox.close()

    def _subscribe_everything(self, secret: str) -> None:
        from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS

        store = self.emulator.store
        receiver = store.create_receiver(
            {"name": RECEIVER, "webhookUri": self.receiver_url, "sharedSecret": secret,
             "description": "airflow-ion dev: every resource and action"}
        )  # fmt: skip
        for resource in sorted({kind.resource for kind in DOMAIN_KINDS.values()}):
            for action in ACTIONS:
                store.create_subscription({"receiverId": receiver["id"], "resource": resource, "action": action})

    def subscribed_resources(self) -> list[str]:
        from airflow_provider_ion.testing.emulator.domain import DOMAIN_KINDS

        return sorted({kind.resource for kind in DOMAIN_KINDS.values()})


def _fresh_home(home: Path, *, wipe: bool = False) -> None:
    """Empty ``home`` when it is ours (or empty, or ``wipe``); never wipe a folder someone else made."""
    if not wipe and home.exists() and any(home.iterdir()) and not (home / HOME_MARKER).exists():
        raise SystemExit(f"airflow-ion: {home} is not empty and was not made by airflow-ion; choose another --home")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / HOME_MARKER).write_text("made by airflow-ion dev/demo; emptied on every start\n")


# ---- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dags-folder", default="dags", help="your DAGs (default ./dags)")
    parser.add_argument("--home", default=".airflow-ion-dev", help="Airflow home, DB and inbox (emptied on start)")
    parser.add_argument("--conn-id", default="ion_default", help="the connection your DAGs use (default ion_default)")
    parser.add_argument(
        "--real-ion",
        action="store_true",
        help="no emulator: use the connection from the environment (ION must reach the receiver URL)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    local = LocalIon(
        Path(args.home), Path(args.dags_folder), conn_id=args.conn_id, real_ion=args.real_ion, subscribe_all=True
    )
    # SIGINT explicitly too: a shell starting us in the background may have set it to "ignore".
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        local.prepare()
        if local.emulator is not None:
            print(f"ION emulator at {local.emulator.base_url}", flush=True)
        print("starting Airflow (api-server, scheduler, dag-processor, triggerer) ...", flush=True)
        local.stack.start()
        print(f"Airflow is up at {local.stack.base_url}; waiting for your DAGs and their triggers ...", flush=True)
        for note in wait_for_dags(local):
            print(f"  note: {note}", flush=True)
        print(ready_text(local, time.monotonic() - started), flush=True)
        return _watch(local)
    except KeyboardInterrupt:
        print("airflow-ion dev: stopping", flush=True)
        return 0
    finally:
        local.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def dag_files(folder: Path) -> list[Path]:
    """Python files Airflow's safe-mode heuristic parses: they mention "airflow" and "dag" or "asset"
    (case-insensitive; airflow/utils/file.py ``might_contain_dag_via_default_heuristic``)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        try:
            text = path.read_bytes().lower()
        except OSError:
            continue
        if b"airflow" in text and (b"dag" in text or b"asset" in text):
            found.append(path)
    return found


def wait_for_dags(local: LocalIon, timeout: float = 90) -> list[str]:
    """Wait until every DAG file was parsed once and the ION triggers of its asset watchers are reading.

    An ``IonWebhookTrigger`` that starts for the first time begins at the newest inbox event, so an
    event made before it runs is not seen by it: "ready" means the triggers are running. Returns notes
    for what did not happen in time (import errors, triggers not started).
    """
    stack = local.stack
    files = {p.relative_to(local.dags_folder).as_posix() for p in dag_files(local.dags_folder)}
    started = time.monotonic()
    deadline = started + timeout
    notes: list[str] = []
    parsed: set[str] = set()
    errors: dict[str, str] = {}
    seen: tuple[set[str], set[str]] = (set(), set())  # (parsed, errors) last time
    since = started  # and since when unchanged
    while time.monotonic() < deadline:
        dags = stack.api("GET", "/dags", params={"limit": 1000})["dags"]
        parsed = {d.get("relative_fileloc") or "" for d in dags}
        errors = {e["filename"]: e["stack_trace"] for e in stack.api("GET", "/importErrors")["import_errors"]}
        if all(f in parsed or f in errors for f in files):
            break
        if (parsed, set(errors)) != seen:
            seen, since = (parsed, set(errors)), time.monotonic()
        # A helper module mentioning those words defines no DAG and never shows up: after several
        # rescans (2 s apart) with nothing new, every file was parsed.
        if parsed and time.monotonic() - since > 15:
            break
        time.sleep(0.5)
    else:
        notes.append(f"not parsed after {timeout:.0f}s: {sorted(files - parsed - set(errors))}")
    for filename, trace in errors.items():
        notes.append(f"import error in {filename}:\n{trace.strip()[-1500:]}")
    dag_ids = {d["dag_id"] for d in stack.api("GET", "/dags", params={"limit": 1000})["dags"]}
    assets = stack.api("GET", "/assets", params={"limit": 1000})["assets"]
    triggers = {
        w["trigger_id"]
        for a in assets
        if {d["dag_id"] for d in a.get("scheduled_dags", [])} & dag_ids
        for w in a.get("watchers", [])
    }
    while len(local.inbox.list_cursors()) < len(triggers) and time.monotonic() < deadline:
        time.sleep(0.5)
    if len(local.inbox.list_cursors()) < len(triggers):
        notes.append(
            f"{len(triggers)} asset watcher trigger(s), {len(local.inbox.list_cursors())} reading the inbox "
            "(watchers with other triggers never do; otherwise see the triggerer log)"
        )
    return notes


def ready_text(local: LocalIon, elapsed: float) -> str:
    stack = local.stack
    lines = [
        f"airflow-ion dev: ready in {elapsed:.1f}s",
        f"  Airflow UI:  {stack.base_url}  (no login: every user is admin locally)",
        f"  DAGs folder: {local.dags_folder}  (new and changed files are picked up within seconds)",
        f"  logs:        {stack.home}/<component>.log, task logs under {stack.home}/logs",
        f"  receiver:    {local.receiver_url}",
    ]
    if local.emulator is not None:
        url = local.emulator.base_url
        lines += [
            f"  ION emulator: {url}  (connection {local.conn_id!r}; control API index: {url}/_emulator/)",
            f"  subscribed:  {', '.join(local.subscribed_resources())} x CREATE, UPDATE, DELETE",
            "",
            "Make ION events from another terminal:",
            f"  export ION_EMULATOR_URL={url}",
            '  airflow-ion emulator create run --title "Run 1" --workcenter WC-1',
            '  airflow-ion emulator create issue --title "Torque out of spec" --run-id 1',
            '  airflow-ion emulator create purchase-order --supplier "Acme" --status PLACED',
            "  airflow-ion emulator create part-inventory --part-id 7 --quantity 10",
            "  airflow-ion emulator update run 1 --status IN_PROGRESS",
            "  airflow-ion emulator delete issue 1",
        ]
    else:
        lines += [
            "",
            f"Real ION (connection {local.conn_id!r}): ION must reach the receiver over HTTPS. Put a tunnel or",
            f"reverse proxy with a public HTTPS URL in front of {stack.base_url}, then trigger your setup DAG",
            'with {"airflow_url": "https://<public URL>"} so ION\'s receiver points there.',
        ]
    lines += ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


def _watch(local: LocalIon) -> int:
    """Show accepted webhooks until Ctrl-C; a dead Airflow component ends the command (status 1)."""
    seen = local.inbox.latest_seq()
    retries = failed = 0
    while True:
        if local.emulator is not None:  # say when ION's deliveries do not get through
            stats = local.emulator.deliveries.stats()
            if stats.get("retries", 0) > retries or stats.get("failed", 0) > failed:
                print(
                    f"ION emulator: deliveries retried {stats.get('retries', 0)}, given up {stats.get('failed', 0)} "
                    f"(lastError of each: {local.emulator.base_url}/_emulator/events)",
                    flush=True,
                )
                retries, failed = stats.get("retries", 0), stats.get("failed", 0)
        for name, proc in local.stack.procs.items():
            if proc.poll() is not None:
                tail = local.stack.log_text(name)[-3000:]
                print(f"airflow-ion dev: airflow {name} exited ({proc.returncode}):\n{tail}", file=sys.stderr)
                return 1
        try:
            for event in local.inbox.read_after(seen):
                seen = event.seq
                print(f"webhook accepted: {event.resource}/{event.action} event {event.event_id}", flush=True)
        except Exception as error:  # the inbox is a local SQLite file; say it and keep serving
            print(f"airflow-ion dev: cannot read the inbox: {error}", file=sys.stderr)
        time.sleep(1)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
