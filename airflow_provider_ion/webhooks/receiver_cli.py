"""``airflow-ion receiver serve``: the receiver app on its own uvicorn server.

For deployments that keep webhook traffic off Airflow's API server (a DMZ host, a separate scale
unit). Settings come from Airflow's ``[ion_webhooks]`` config (``AIRFLOW__ION_WEBHOOKS__*``), then the
flags here. ION requires HTTPS: give ``--ssl-certfile/--ssl-keyfile`` or run behind a TLS proxy (and
name it in ``--trusted-proxy`` if you use the allow list).
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="receiver_command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser("serve", help="serve the webhook receiver with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    serve.add_argument("--inbox-url", help="SQLAlchemy URL of the inbox (default: SQLite under AIRFLOW_HOME)")
    serve.add_argument("--max-body-bytes", type=int, help="largest accepted body (default 1 MiB)")
    serve.add_argument("--allowed-cidr", action="append", default=None, help="allowed source network (repeat)")
    serve.add_argument("--trusted-proxy", action="append", default=None, help="proxy whose X-Forwarded-For is trusted")
    serve.add_argument("--body-timeout", type=float, help="seconds for a whole request body (default 30; then 408)")
    serve.add_argument("--ion-conn-id", help="connection for secret lookups in ION ('none' disables)")
    serve.add_argument("--ssl-certfile", help="TLS certificate (PEM)")
    serve.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    serve.add_argument(
        "--stats-token-env",
        default="ION_RECEIVER_STATS_TOKEN",
        help="environment variable holding the bearer token for GET /ion-webhooks/v1/stats (unset: stats off)",
    )
    serve.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from airflow_provider_ion.webhooks.app import ReceiverApp, ReceiverSettings, bearer_token_guard

    overrides: dict = {}
    if args.inbox_url:
        overrides["inbox_url"] = args.inbox_url
    if args.max_body_bytes:
        overrides["max_body_bytes"] = args.max_body_bytes
    if args.body_timeout:
        overrides["body_timeout"] = args.body_timeout
    if args.allowed_cidr:
        overrides["allowed_cidrs"] = tuple(args.allowed_cidr)
    if args.trusted_proxy:
        overrides["trusted_proxies"] = tuple(args.trusted_proxy)
    if args.ion_conn_id:
        overrides["ion_conn_id"] = None if args.ion_conn_id.lower() == "none" else args.ion_conn_id
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise SystemExit("airflow-ion receiver serve: give both --ssl-certfile and --ssl-keyfile, or neither")
    settings = ReceiverSettings.from_airflow_config(**overrides)
    token = os.environ.get(args.stats_token_env)
    receiver = ReceiverApp(settings, authorize_admin=bearer_token_guard(token) if token else None)
    uvicorn.run(
        receiver.asgi,
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
        access_log=False,
        # The app's own trusted_proxies setting decides whose X-Forwarded-For counts; uvicorn's
        # default would trust any loopback peer's header before the app sees the request.
        proxy_headers=False,
    )
    return 0
