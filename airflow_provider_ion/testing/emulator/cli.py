"""``airflow-ion emulator``: serve the ION emulator in the foreground until Ctrl-C or SIGTERM.

On a signal uvicorn finishes in-flight requests, then re-raises the signal, so the exit status says
"terminated by SIGTERM" (-15 from Python's subprocess), as for any well-behaved server.

With a command (``create``, ``update``, ``delete``, ``get``, ``list``, ``events``) it is a client of a
running emulator instead: see :mod:`.client_cli`.

For the demo and for manual testing. Tests inside Python use
:class:`airflow_provider_ion.testing.emulator.server.EmulatorServer` instead.
"""

from __future__ import annotations

import argparse
import sys

from airflow_provider_ion.testing.emulator import client_cli
from airflow_provider_ion.testing.emulator.core import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from airflow_provider_ion.testing.emulator.delivery_settings import DeliverySettings, parse_schedule


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument(
        "--token-lifetime", type=int, default=300, help="access token lifetime in seconds (default: %(default)s)"
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="OAuth client id (default: %(default)s)")
    parser.add_argument(
        "--client-secret", default=DEFAULT_CLIENT_SECRET, help="OAuth client secret (default: the emulator's)"
    )
    parser.add_argument(
        "--state-file",
        default=None,
        help="SQLite file that keeps receivers, subscriptions, events and domain objects across restarts",
    )
    parser.add_argument(
        "--allow-remote-control",
        action="store_true",
        help="let non-loopback clients use the unauthenticated /_emulator control routes",
    )
    from airflow_provider_ion.testing.emulator.profiles import PROFILES

    parser.add_argument(
        "--profile",
        default="default",
        choices=list(PROFILES),
        help="which ION to emulate: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()),
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _add_delivery_arguments(parser.add_argument_group("webhook delivery"))
    client_cli.add_subcommands(parser)


def _add_delivery_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--retry-schedule",
        default=None,
        help="comma-separated seconds to wait after failed attempt 1, 2, ... (last repeats); "
        "default: 10,60,300,... over about 3 days",
    )
    group.add_argument("--max-attempts", type=int, default=None, help="attempts per event (default: schedule + 1)")
    group.add_argument("--delivery-timeout", type=float, default=10.0, help="seconds per attempt (default: 10)")
    group.add_argument("--delivery-concurrency", type=int, default=16, help="attempts in flight (default: 16)")
    group.add_argument("--signature-header", default="x-ion-signature", help="default: %(default)s")
    group.add_argument("--signature-algorithm", default="sha256", help="hashlib name (default: %(default)s)")
    group.add_argument("--signature-encoding", default="hex", choices=["hex", "base64"], help="default: hex")
    group.add_argument("--signature-prefix", default="sha256=", help="default: %(default)s")
    group.add_argument("--accept-any-2xx", action="store_true", help="count any 2xx as success, not only expected")
    group.add_argument("--no-http-loopback", action="store_true", help="refuse plain http even to loopback")
    group.add_argument("--no-verify-tls", action="store_true", help="accept any receiver certificate")
    group.add_argument("--loopback-only", action="store_true", help="deliver to loopback receivers only")


def delivery_settings(args: argparse.Namespace) -> DeliverySettings:
    """The delivery settings the flags describe (``ValueError`` for invalid ones)."""
    from airflow_provider_ion.webhooks.signature import SignatureScheme

    values: dict = {
        "timeout": args.delivery_timeout,
        "concurrency": args.delivery_concurrency,
        "max_attempts": args.max_attempts,
        "accept_any_2xx": args.accept_any_2xx,
        "allow_http_loopback": not args.no_http_loopback,
        "verify_tls": not args.no_verify_tls,
        "loopback_only": args.loopback_only,
        "scheme": SignatureScheme(
            header=args.signature_header,
            algorithm=args.signature_algorithm,
            encoding=args.signature_encoding,
            prefix=args.signature_prefix,
        ),
    }
    if args.retry_schedule is not None:
        values["retry_schedule"] = parse_schedule(args.retry_schedule)
    return DeliverySettings(**values)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "emulator_command", None):
        return client_cli.run(args)
    import uvicorn

    from airflow_provider_ion.testing.emulator.app import create_app
    from airflow_provider_ion.testing.emulator.core import Emulator
    from airflow_provider_ion.testing.emulator.delivery import Deliveries
    from airflow_provider_ion.testing.emulator.server import bind_socket, with_profile_signature

    if args.token_lifetime < 1:
        print("--token-lifetime must be at least 1 second", file=sys.stderr)
        return 2
    try:
        settings = delivery_settings(args)
    except ValueError as exc:
        print(f"Invalid delivery settings: {exc}", file=sys.stderr)
        return 2
    emulator = Emulator(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_lifetime=args.token_lifetime,
        state_file=args.state_file,
        allow_remote_control=args.allow_remote_control,
        profile=getattr(args, "profile", None),
    )
    settings = with_profile_signature(settings, emulator.profile)
    deliveries = Deliveries(emulator.store, settings)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    base = f"http://{args.host}:{port}"
    waits = ",".join(f"{s:g}" for s in settings.retry_schedule)
    print(
        f"ION emulator on {base} (profile {emulator.profile.name}: {emulator.profile.description})\n"
        f"  GraphQL: {base}/graphql\n  token:   {base}{emulator.profile.token_path}\n"
        f"  client id: {args.client_id}\n  state: {args.state_file or 'in memory'}\n"
        f"  webhook retries: {settings.attempts} attempts, waits {waits} s",
        flush=True,
    )
    config = uvicorn.Config(
        create_app(emulator, deliveries),
        loop="asyncio",
        lifespan="off",
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        deliveries.close()
    return 0
