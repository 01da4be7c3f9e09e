"""The `kubesvc` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from kubesvc.logs import setup_logging


def _apiserver(args: argparse.Namespace) -> int:
    from kubesvc.apiserver.server import ServerConfig, serve

    config = ServerConfig(
        data_dir=Path(args.data_dir).resolve(),
        bind=args.bind,
        port=args.port,
        advertise=args.advertise_address,
        service_cidr=args.service_cluster_ip_range,
        node_port_range=args.service_node_port_range,
        compaction_interval=args.etcd_compaction_interval,
    )
    _run(serve(config))
    return 0


def _controller_manager(args: argparse.Namespace) -> int:
    from kubesvc.controllers.manager import CONTROLLERS, run_controller_manager

    enabled = [c.strip() for c in args.controllers.split(",") if c.strip()] or None
    for name in enabled or []:
        if name not in CONTROLLERS:
            print(
                f"kubesvc: unknown controller {name!r}; known: {', '.join(CONTROLLERS)}",
                file=sys.stderr,
            )
            return 2
    settings = {}
    if args.node_monitor_grace_period:
        settings["node_monitor_grace_period"] = args.node_monitor_grace_period
    _run(run_controller_manager(args.kubeconfig, enabled, args.resync_period, settings))
    return 0


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubesvc", description="Kubernetes Service networking on one Linux machine."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("apiserver", help="run the Kubernetes API server in the foreground")
    api.add_argument("--data-dir", required=True, help="state, certificates and kubeconfig go here")
    api.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=6443, help="HTTPS port (default 6443; 0 = any)")
    api.add_argument("--advertise-address", default="", help="address written into kubeconfig")
    api.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    api.add_argument("--service-node-port-range", default="30000-32767")
    api.add_argument(
        "--etcd-compaction-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how often old revisions are compacted away (default 300)",
    )
    api.set_defaults(func=_apiserver)
    cm = sub.add_parser("controller-manager", help="run the controllers in the foreground")
    cm.add_argument("--kubeconfig", required=True, help="how to reach the API server")
    cm.add_argument("--controllers", default="", help="comma-separated subset (default: all)")
    cm.add_argument("--resync-period", type=float, default=300.0, metavar="SECONDS")
    cm.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a node silent this long is marked NotReady (default 50)",
    )
    cm.set_defaults(func=_controller_manager)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except OSError as e:
        logging.getLogger("kubesvc").debug("fatal", exc_info=True)
        print(f"kubesvc: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
