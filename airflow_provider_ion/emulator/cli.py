"""``airflow-ion emulator``: serve the ION emulator in the foreground until Ctrl-C or SIGTERM.

On a signal uvicorn finishes in-flight requests, then re-raises the signal, so the exit status says
"terminated by SIGTERM" (-15 from Python's subprocess), as for any well-behaved server.

For the demo and for manual testing. Tests inside Python use
:class:`airflow_provider_ion.emulator.server.EmulatorServer` instead.
"""

from __future__ import annotations

import argparse
import sys

from airflow_provider_ion.emulator.core import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET


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
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from airflow_provider_ion.emulator.app import create_app
    from airflow_provider_ion.emulator.core import Emulator
    from airflow_provider_ion.emulator.server import bind_socket
    from airflow_provider_ion.emulator.token_endpoint import TOKEN_PATH

    if args.token_lifetime < 1:
        print("--token-lifetime must be at least 1 second", file=sys.stderr)
        return 2
    emulator = Emulator(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_lifetime=args.token_lifetime,
        state_file=args.state_file,
        allow_remote_control=args.allow_remote_control,
    )
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    base = f"http://{args.host}:{port}"
    print(
        f"ION emulator on {base}\n  GraphQL: {base}/graphql\n  token:   {base}{TOKEN_PATH}\n"
        f"  client id: {args.client_id}\n  state: {args.state_file or 'in memory'}",
        flush=True,
    )
    config = uvicorn.Config(
        create_app(emulator), loop="asyncio", lifespan="off", log_level=args.log_level, timeout_graceful_shutdown=5
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
