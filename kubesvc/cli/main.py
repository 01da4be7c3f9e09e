"""The `kubesvc` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from kubesvc.logs import setup_logging


def _apiserver(args: argparse.Namespace) -> int:
    from kubesvc.apiserver.server import ServerConfig, serve

    data_dir = Path(args.data_dir).resolve()
    # keys, tokens and the database go here: a new data directory is its owner's alone
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = ServerConfig(
        data_dir=data_dir,
        bind=args.bind,
        port=args.port,
        advertise=args.advertise_address,
        service_cidr=args.service_cluster_ip_range,
        node_port_range=args.service_node_port_range,
        compaction_interval=args.etcd_compaction_interval,
        not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
        unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
        nodes=list(args.node or []),
        etcd=_etcd_config(args),
        peers=[u.strip() for u in args.apiserver_peers.split(",") if u.strip()],
    )
    _run(serve(config))
    return 0


def _etcd_config(args: argparse.Namespace) -> object:
    if not args.etcd_servers:
        return None  # grpc (a tenth of the server's start) loads only for etcd
    from kubesvc.store.etcd import EtcdConfig

    files = {
        "cafile": args.etcd_cafile,
        "certfile": args.etcd_certfile,
        "keyfile": args.etcd_keyfile,
    }
    try:
        return EtcdConfig.parse(
            args.etcd_servers, **{k: Path(v) if v else None for k, v in files.items()}
        )
    except ValueError as e:
        raise SystemExit(f"kubesvc apiserver: {e}") from None


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
    result = _run(
        run_controller_manager(
            args.kubeconfig,
            enabled,
            args.resync_period,
            settings,
            use_service_account_credentials=args.use_service_account_credentials,
            scheduler_kubeconfig=args.scheduler_kubeconfig or None,
            election=_election(args),
        )
    )
    return int(result or 0)  # type: ignore[call-overload]


def _election(args: argparse.Namespace) -> object:
    from kubesvc.client.leaderelection import ElectionConfig

    if not args.leader_elect:
        return None
    config = ElectionConfig(
        namespace=args.leader_elect_resource_namespace,
        name=args.leader_elect_resource_name,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
    )
    try:
        config.check()
    except ValueError as e:
        raise SystemExit(f"kubesvc controller-manager: {e}") from None
    return config


def _flag_bool(value: str) -> bool:
    """--leader-elect, --leader-elect=true, --leader-elect=false, as Go's flags take."""
    if value.lower() in ("true", "1", "t"):
        return True
    if value.lower() in ("false", "0", "f"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def _node(args: argparse.Namespace) -> int:
    from kubesvc.client.kubeconfig import wait_for_server
    from kubesvc.node.agent import AgentConfig, NodeAgent
    from kubesvc.node.netplan import ClusterNet
    from kubesvc.node.sandbox import NodeNet

    plan = ClusterNet(args.cluster, args.node_cidr, args.cluster_pod_cidr, args.service_cidr)
    net = NodeNet(
        cluster=args.cluster,
        name=args.name,
        netns=plan.node_netns(args.name),
        veth=plan.node_veth(args.name),
        bridge=plan.bridge,
        ip=args.node_ip,
        prefix_len=plan.prefix_len,
        pod_cidr=args.pod_cidr,
        cluster_pod_cidr=args.cluster_pod_cidr,
        service_cidr=args.service_cidr,
    )
    config = AgentConfig(
        args.name,
        args.kubeconfig,
        net,
        Path(args.state_dir),
        args.dns_ip,
        proxy_mode=args.proxy_mode,
        proxy_kubeconfig=args.proxy_kubeconfig,
        speaker_kubeconfig=args.speaker_kubeconfig,
    )

    async def run() -> None:
        # started together with the API server: wait for it after the imports
        await wait_for_server(args.kubeconfig)
        await NodeAgent(config).run()

    _run(run())
    return 0


def _up(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import up

    if args.nodes is not None and args.nodes < 1:
        print("kubesvc up: --nodes must be at least 1", file=sys.stderr)
        return 2
    tunables: dict[str, float] = {}
    for key in (
        "node_monitor_grace_period",
        "default_not_ready_toleration_seconds",
        "default_unreachable_toleration_seconds",
        "leader_elect_lease_duration",
        "leader_elect_renew_deadline",
        "leader_elect_retry_period",
    ):
        value = getattr(args, key)
        if value is not None:
            if value < 0 or (key == "node_monitor_grace_period" and value == 0):
                print(f"kubesvc up: --{key.replace('_', '-')} must be positive", file=sys.stderr)
                return 2
            tunables[key] = value
    if not 1 <= args.controller_managers <= 5:
        print("kubesvc up: --controller-managers must be 1 to 5", file=sys.stderr)
        return 2
    if args.controller_managers > 1:
        tunables["controller_managers"] = args.controller_managers
    store = _up_store(args)
    if not 1 <= args.apiservers <= 5:
        print("kubesvc up: --apiservers must be 1 to 5", file=sys.stderr)
        return 2
    if args.apiservers > 1:
        if store is None:
            print("kubesvc up: --apiservers needs --store etcd (or --etcd-servers): several "
                  "API servers share one etcd", file=sys.stderr)  # fmt: skip
            return 2
        tunables["apiservers"] = args.apiservers
    if isinstance(store, int):
        return store
    return asyncio.run(
        up(args.name, args.nodes, args.wait, args.proxy_mode, tunables, not args.no_ingress, store)
    )


def _up_store(args: argparse.Namespace) -> dict[str, Any] | int | None:
    """The store `up` asks for: None (SQLite), etcd members of its own, or the user's etcd."""
    import shutil

    if args.etcd_servers:
        files = {k: str(Path(v).resolve()) for k in ("cafile", "certfile", "keyfile")
                 if (v := getattr(args, f"etcd_{k}"))}  # fmt: skip
        return {"servers": args.etcd_servers, **files}
    if args.store != "etcd" and args.etcd_members is None:
        return None
    members = args.etcd_members or 1
    if members not in (1, 3, 5):
        print("kubesvc up: --etcd-members must be 1, 3 or 5", file=sys.stderr)
        return 2
    if shutil.which("etcd") is None:
        print("kubesvc up --store etcd needs etcd: apt-get install etcd-server", file=sys.stderr)
        return 1
    return {"members": members}


def _start(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import start

    return asyncio.run(start(args.name, args.wait))


def _stop(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import stop

    return asyncio.run(stop(args.name))


def _down(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import down

    return asyncio.run(down(args.name))


def _node_stop(args: argparse.Namespace) -> int:
    from kubesvc.cluster.nodes import stop

    return asyncio.run(stop(args.node, args.name))


def _node_start(args: argparse.Namespace) -> int:
    from kubesvc.cluster.nodes import start

    return asyncio.run(start(args.node, args.name))


def _node_list(args: argparse.Namespace) -> int:
    from kubesvc.cluster.nodes import list_nodes

    return list_nodes(args.name)


def _host_add(args: argparse.Namespace) -> int:
    from kubesvc.cluster.hosts import add

    return asyncio.run(add(args.host, args.name))


def _host_exec(args: argparse.Namespace) -> int:
    from kubesvc.cluster.hosts import exec_in

    return exec_in(args.host, args.name, list(args.command))


def _host_list(args: argparse.Namespace) -> int:
    from kubesvc.cluster.hosts import list_hosts

    return list_hosts(args.name)


def _host_rm(args: argparse.Namespace) -> int:
    from kubesvc.cluster.hosts import rm

    return asyncio.run(rm(args.host, args.name))


def _supervise(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import supervise

    return supervise(args.name)


def _status(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import status

    return status(args.name)


def _etcdctl(args: argparse.Namespace) -> int:
    import os

    from kubesvc.cluster.etcd import EtcdFiles
    from kubesvc.cluster.lifecycle import Cluster, etcd_plan, home

    cluster = Cluster(args.name, home() / args.name)
    if not cluster.exists():
        print(f"kubesvc etcdctl: no cluster named {args.name!r}", file=sys.stderr)
        return 1
    plan = etcd_plan(cluster, cluster.load())
    if plan is None:
        print(
            f"kubesvc etcdctl: cluster {args.name!r} runs no etcd members (it was created "
            "without --store etcd, or uses --etcd-servers)",
            file=sys.stderr,
        )
        return 1
    argv = [*plan.etcdctl_argv(EtcdFiles(cluster.etcd_dir / "pki")), *args.command]
    os.execvpe(argv[0], argv, {**os.environ, "ETCDCTL_API": "3"})


def _kubeconfig(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import print_kubeconfig

    return print_kubeconfig(args.name)


def _proxy_rules(args: argparse.Namespace) -> int:
    from kubesvc.cluster.lifecycle import Cluster, home
    from kubesvc.proxy.proxier import make_backend

    cluster = Cluster(args.name, home() / args.name)
    if not cluster.exists():
        print(
            f"kubesvc: no cluster named {args.name!r} (kubesvc status lists them)", file=sys.stderr
        )
        return 1
    state = cluster.load()
    if args.node not in state["nodes"]:
        print(
            f"kubesvc: cluster {args.name!r} has no node {args.node!r}; nodes: "
            f"{', '.join(state['nodes'])}",
            file=sys.stderr,
        )
        return 1
    mode = state.get("proxy_mode", "nftables")
    backend = make_backend(mode, cluster.net().node_netns(args.node))
    try:
        print(asyncio.run(backend.rules(args.service)), end="")
    finally:
        backend.close()
    return 0


def _trace(args: argparse.Namespace) -> int:
    from kubesvc.trace.command import trace

    return trace(args.name, args.source, args.target, args.output, args.resolve)


def _web(args: argparse.Namespace) -> int:
    from kubesvc.trace.run import TraceError, open_cluster
    from kubesvc.web.server import parse_listen, serve

    try:
        parse_listen(args.listen)
        cluster = open_cluster(args.name)
    except (ValueError, TraceError) as e:
        print(f"kubesvc web: {e}", file=sys.stderr)
        return 2
    _run(serve(cluster, args.listen))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kubesvc.tour.main import demo

    return demo(args.name, args.lang, args.step, args.pause)


def _explain_service(args: argparse.Namespace) -> int:
    from kubesvc.trace.command import explain_service

    return explain_service(args.name, args.namespace, args.service, args.output)


def _ingress_controller(args: argparse.Namespace) -> int:
    from kubesvc.client.kubeconfig import load
    from kubesvc.dns.server import in_cluster_access
    from kubesvc.ingress.controller import run
    from kubesvc.ingress.haproxy import Ports

    if not args.kubeconfig and not args.in_cluster:
        print("kubesvc: ingress-controller needs --kubeconfig or --in-cluster", file=sys.stderr)
        return 2
    access = in_cluster_access() if args.in_cluster else load(args.kubeconfig)
    ports = Ports(http=args.http_port, health=args.health_port, https=args.https_port)
    code = _run(run(access, args.publish_service, args.ingress_class, ports, args.metrics_port))
    return code if isinstance(code, int) else 0


def _dns(args: argparse.Namespace) -> int:
    from kubesvc.client.kubeconfig import load
    from kubesvc.dns.server import DnsConfig, in_cluster_access, parse_hostport, serve

    def addr(text: str, port: int) -> tuple[str, int] | None:
        return parse_hostport(text, port) if text else None

    if not args.kubeconfig and not args.in_cluster:
        print("kubesvc: dns needs --kubeconfig or --in-cluster", file=sys.stderr)
        return 2
    access = in_cluster_access() if args.in_cluster else load(args.kubeconfig)
    config = DnsConfig(
        listen=parse_hostport(args.listen, 53),
        domain=args.cluster_domain,
        ttl=args.ttl,
        upstreams=tuple(parse_hostport(u, 53) for u in args.upstream),
        metrics=addr(args.metrics, 9153),
        health=addr(args.health, 8080),
        ready=addr(args.ready, 8181),
        reuse_port=args.reuse_port,
    )
    # the other workers: this command for one worker, without the HTTP endpoints
    worker = [sys.executable, "-m", "kubesvc.cli.main", "dns", "--reuse-port"]
    worker += ["--in-cluster"] if args.in_cluster else ["--kubeconfig", args.kubeconfig]
    worker += ["--cluster-domain", args.cluster_domain, "--ttl", str(args.ttl)]
    for u in args.upstream:
        worker += ["--upstream", u]
    worker += ["--metrics", "", "--health", "", "--ready", ""]
    _run(serve(config, access, worker, max(1, args.workers)))
    return 0


def _run(coro: object) -> object:
    """The coroutine's result (None after Ctrl-C)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(coro)  # type: ignore[arg-type]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubesvc", description="Kubernetes Service networking on one Linux machine."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = sub.add_parser("apiserver", help="run the Kubernetes API server in the foreground")
    api.add_argument("--data-dir", required=True, help="state, certificates and kubeconfig go here")
    api.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=6443, help="HTTPS port (default 6443; 0 = any)")
    api.add_argument("--advertise-address", default="", help="address written into kubeconfig")
    api.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    api.add_argument("--service-node-port-range", default="30000-32767")
    api.add_argument(
        "--default-not-ready-toleration-seconds",
        type=int,
        default=300,
        metavar="SECONDS",
        help="tolerationSeconds of the not-ready:NoExecute toleration added to pods (default 300)",
    )
    api.add_argument(
        "--default-unreachable-toleration-seconds",
        type=int,
        default=300,
        metavar="SECONDS",
        help="tolerationSeconds of the unreachable:NoExecute toleration added to pods "
        "(default 300)",
    )
    api.add_argument(
        "--etcd-compaction-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how often old revisions are compacted away (default 300)",
    )
    api.add_argument(
        "--etcd-servers",
        default="",
        metavar="URL[,URL...]",
        help="store everything in etcd v3 at these servers (http:// or https://); "
        "without it, in SQLite under --data-dir",
    )
    api.add_argument(
        "--apiserver-peers",
        default="",
        metavar="URL[,URL...]",
        help="every API server of this cluster (on one etcd): the kubeconfigs written list "
        "them all so clients fail over, and the serving certificate covers them",
    )
    api.add_argument("--etcd-cafile", default="", help="CA that signed the etcd servers' certs")
    api.add_argument("--etcd-certfile", default="", help="client certificate for etcd")
    api.add_argument("--etcd-keyfile", default="", help="client key for etcd")
    api.add_argument(
        "--node",
        action="append",
        metavar="NAME",
        help="issue node NAME a credential of its own (system:node:NAME) and write "
        "kubelet-NAME.kubeconfig beside the admin's (repeatable)",
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
    cm.add_argument(
        "--use-service-account-credentials",
        action="store_true",
        help="each controller writes with its own ServiceAccount's token (kube-system)",
    )
    cm.add_argument(
        "--scheduler-kubeconfig",
        default="",
        help="the scheduler's own kubeconfig (default: the controller-manager's)",
    )
    cm.add_argument(
        "--leader-elect",
        type=_flag_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="run the controllers only while holding the Lease kube-system/"
        "kube-controller-manager, so several controller-managers can run (default true)",
    )
    cm.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS")
    cm.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS")
    cm.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS")
    cm.add_argument("--leader-elect-resource-name", default="kube-controller-manager")
    cm.add_argument("--leader-elect-resource-namespace", default="kube-system")
    cm.set_defaults(func=_controller_manager)
    node = sub.add_parser("node", help="run a node agent (the kubelet's role) in the foreground")
    node.add_argument("--name", required=True)
    node.add_argument("--cluster", required=True, help="cluster name (names namespaces)")
    node.add_argument("--kubeconfig", required=True)
    node.add_argument("--node-ip", required=True, help="this node's address on the node network")
    node.add_argument("--node-cidr", required=True, help="the node network, e.g. 172.31.0.0/24")
    node.add_argument("--pod-cidr", required=True, help="this node's pod range, e.g. 10.244.1.0/24")
    node.add_argument("--cluster-pod-cidr", default="10.244.0.0/16")
    node.add_argument("--service-cidr", default="10.96.0.0/12")
    node.add_argument("--dns-ip", default="10.96.0.10")
    node.add_argument("--state-dir", required=True)
    node.add_argument(
        "--proxy-mode",
        choices=["nftables", "iptables", "none"],
        default="nftables",
        help="how this node implements Services (default nftables)",
    )
    node.add_argument(
        "--proxy-kubeconfig",
        default=None,
        help="kube-proxy's own kubeconfig (default: the node's --kubeconfig)",
    )
    node.add_argument(
        "--speaker-kubeconfig",
        default=None,
        help="the layer-2 speaker's own kubeconfig, with which it and the node's routes "
        "read Nodes, Services, EndpointSlices and MetalLB's resources (default: --kubeconfig)",
    )
    node.set_defaults(func=_node)

    upp = sub.add_parser(
        "up",
        help="create a cluster (or bring back the one that exists) and wait until it is Ready",
    )
    upp.add_argument("--name", default="kubesvc")
    upp.add_argument("--nodes", type=int, default=None, help="nodes of a new cluster (default 2)")
    upp.add_argument("--wait", type=float, default=60.0, metavar="SECONDS")
    upp.add_argument(
        "--proxy-mode",
        choices=["nftables", "iptables", "none"],
        default=None,
        help="kube-proxy mode of a new cluster (default nftables)",
    )
    upp.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a node silent this long goes NotReady/Unknown (default 50, as upstream)",
    )
    upp.add_argument(
        "--default-not-ready-toleration-seconds",
        type=int,
        default=None,
        metavar="SECONDS",
        help="how long pods stay on a NotReady node before eviction (default 300)",
    )
    upp.add_argument(
        "--default-unreachable-toleration-seconds",
        type=int,
        default=None,
        metavar="SECONDS",
        help="how long pods stay on an unreachable node before eviction (default 300)",
    )
    upp.add_argument(
        "--no-ingress",
        action="store_true",
        help="a new cluster without the ingress controller (docs/ingress.md)",
    )
    upp.add_argument(
        "--apiservers",
        type=int,
        default=1,
        metavar="N",
        help="run N API servers on the etcd store (.1, .2, ... of the node network), in the "
        "`kubernetes` Service's endpoints while they live (default 1)",
    )
    upp.add_argument(
        "--controller-managers",
        type=int,
        default=1,
        metavar="N",
        help="run N controller-managers that elect a leader on a Lease (default 1: no election)",
    )
    for flag, default in (("lease-duration", 15), ("renew-deadline", 10), ("retry-period", 2)):
        upp.add_argument(
            f"--leader-elect-{flag}",
            type=float,
            default=None,
            metavar="SECONDS",
            help=f"the controller-managers' leader election {flag.replace('-', ' ')} "
            f"(default {default})",
        )
    upp.add_argument(
        "--store",
        choices=["sqlite", "etcd"],
        default="sqlite",
        help="where a new cluster keeps its objects: SQLite in its directory (default), or "
        "etcd members it runs (docs/etcd.md)",
    )
    upp.add_argument(
        "--etcd-members",
        type=int,
        default=None,
        metavar="N",
        help="with --store etcd: run N members on this machine (1, 3 or 5; default 1)",
    )
    upp.add_argument(
        "--etcd-servers",
        default="",
        metavar="URL[,URL...]",
        help="store a new cluster's objects in this etcd instead of running members",
    )
    upp.add_argument("--etcd-cafile", default="", help="with --etcd-servers: the servers' CA")
    upp.add_argument("--etcd-certfile", default="", help="with --etcd-servers: client cert")
    upp.add_argument("--etcd-keyfile", default="", help="with --etcd-servers: client key")
    upp.set_defaults(func=_up)
    startp = sub.add_parser("start", help="bring back a stopped cluster with its state")
    startp.add_argument("--name", default="kubesvc")
    startp.add_argument("--wait", type=float, default=60.0, metavar="SECONDS")
    startp.set_defaults(func=_start)
    stopp = sub.add_parser(
        "stop", help="stop a cluster's processes and network; keep its state for start"
    )
    stopp.add_argument("--name", default="kubesvc")
    stopp.set_defaults(func=_stop)
    downp = sub.add_parser("down", help="stop a cluster and remove everything it created")
    downp.add_argument("--name", default="kubesvc")
    downp.set_defaults(func=_down)
    # `kubesvc node stop|start|list ...` (the node agent is `kubesvc node --name ...`; main()
    # sends the administrative verbs here)
    nodes = sub.add_parser("node-admin", help=argparse.SUPPRESS)
    nodes_sub = nodes.add_subparsers(dest="node_command", required=True)
    nstop = nodes_sub.add_parser("stop", help="fail a node: agent, pods and network go dark")
    nstart = nodes_sub.add_parser("start", help="bring a stopped node back")
    for np_, fn in ((nstop, _node_stop), (nstart, _node_start)):
        np_.add_argument("node")
        np_.add_argument("--name", default="kubesvc", help="cluster name")
        np_.set_defaults(func=fn)
    nlist = nodes_sub.add_parser("list", help="the cluster's nodes and whether they run")
    nlist.add_argument("--name", default="kubesvc", help="cluster name")
    nlist.set_defaults(func=_node_list)
    hostp = sub.add_parser("host", help="machines outside the cluster, on the nodes' network")
    host_sub = hostp.add_subparsers(dest="host_command", required=True)
    hadd = host_sub.add_parser("add", help="add a host (its own network namespace)")
    hrm = host_sub.add_parser("rm", help="remove a host")
    for hp, fn in ((hadd, _host_add), (hrm, _host_rm)):
        hp.add_argument("host")
        hp.add_argument("--name", default="kubesvc", help="cluster name")
        hp.set_defaults(func=fn)
    hexec = host_sub.add_parser("exec", help="run a command on a host: kubesvc host exec H -- CMD")
    hexec.add_argument("host")
    hexec.add_argument("--name", default="kubesvc", help="cluster name")
    hexec.set_defaults(func=_host_exec, command=[])  # the words after `--` (see main())
    hlist = host_sub.add_parser("list", help="the cluster's hosts and their addresses")
    hlist.add_argument("--name", default="kubesvc", help="cluster name")
    hlist.set_defaults(func=_host_list)
    # started by up/start, detached: keeps the cluster's processes running
    sup = sub.add_parser("supervise")
    sup.add_argument("--name", default="kubesvc")
    sup.set_defaults(func=_supervise)
    st = sub.add_parser("status", help="show clusters and their processes")
    st.add_argument("--name", default=None)
    st.set_defaults(func=_status)
    proxy = sub.add_parser("proxy", help="kube-proxy tools")
    proxy_sub = proxy.add_subparsers(dest="proxy_command", required=True)
    rules = proxy_sub.add_parser("rules", help="print the live rules a node's proxy programmed")
    rules.add_argument("--node", required=True)
    rules.add_argument(
        "--service", default=None, metavar="NS/NAME", help="only what this Service became"
    )
    rules.add_argument("--name", default="kubesvc", help="cluster name")
    rules.set_defaults(func=_proxy_rules)
    tr = sub.add_parser(
        "trace",
        help="make one request from a pod or node and show the path it took",
        description="Make one HTTP request for real from a pod, a node or an outside host and "
        "show each step with what the kernel observed: DNS queries, the Service, the "
        "proxy rules the first packet went through, the conntrack entry, the hop and the answer.",
    )
    tr.add_argument("--name", default="kubesvc", help="cluster name")
    tr.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="POD|NS/POD|node/NAME|host/NAME",
        help="where the request starts",
    )
    tr.add_argument("target", metavar="TARGET", help="a URL, host:port or ip:port")
    tr.add_argument("-o", "--output", choices=["text", "json"], default="text")
    tr.add_argument(
        "--resolve",
        metavar="HOST:PORT:ADDR",
        default=None,
        help="send to ADDR for HOST:PORT without DNS, as curl's --resolve (an Ingress's name)",
    )
    tr.set_defaults(func=_trace)
    wb = sub.add_parser("web", help="serve a live picture of the cluster (nodes, pods, Services)")
    wb.add_argument("--name", default="kubesvc", help="cluster name")
    wb.add_argument(
        "--listen",
        default="127.0.0.1:8001",
        metavar="ADDR:PORT",
        help="where to serve (loopback by default; elsewhere a token is required)",
    )
    wb.set_defaults(func=_web)
    dm = sub.add_parser("demo", help="walk the notes' claims on a fresh cluster, each checked")
    dm.add_argument("--name", default="demo", help="cluster name (re-created)")
    dm.add_argument("--lang", choices=["ko", "en"], default="en")
    dm.add_argument("--step", type=int, default=None, help="show only step N (1-11)")
    dm.add_argument("--pause", action="store_true", help="wait for Enter after each step")
    dm.set_defaults(func=_demo)
    ex = sub.add_parser("explain", help="one object's whole state in one place")
    ex_sub = ex.add_subparsers(dest="explain_kind", required=True)
    exs = ex_sub.add_parser(
        "svc",
        aliases=["service"],
        help="a Service: its pods, slices, DNS answers and rules, with problems flagged",
    )
    exs.add_argument("service", metavar="NAME")
    exs.add_argument("-n", "--namespace", default="default")
    exs.add_argument("--name", default="kubesvc", help="cluster name")
    exs.add_argument("-o", "--output", choices=["text", "json"], default="text")
    exs.set_defaults(func=_explain_service)
    dnsp = sub.add_parser("dns", help="run the cluster DNS server in the foreground")
    dnsp.add_argument("--kubeconfig", default="", help="how to reach the API server")
    dnsp.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    dnsp.add_argument("--listen", default=":53", metavar="ADDR:PORT", help="UDP and TCP")
    dnsp.add_argument("--cluster-domain", default="cluster.local")
    dnsp.add_argument("--ttl", type=int, default=5, metavar="SECONDS")
    dnsp.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="forward names outside the cluster zone here (repeatable; default: refuse them)",
    )
    dnsp.add_argument("--metrics", default=":9153", metavar="ADDR:PORT", help="'' disables")
    dnsp.add_argument("--health", default=":8080", metavar="ADDR:PORT", help="'' disables")
    dnsp.add_argument("--ready", default=":8181", metavar="ADDR:PORT", help="'' disables")
    dnsp.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes answering on the same port (SO_REUSEPORT); metrics are the first one's",
    )
    dnsp.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    dnsp.set_defaults(func=_dns)
    ing = sub.add_parser("ingress-controller", help="run the ingress controller in the foreground")
    ing.add_argument("--kubeconfig", default="", help="how to reach the API server")
    ing.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    ing.add_argument(
        "--publish-service",
        default="ingress-kubesvc/ingress-kubesvc-controller",
        metavar="NS/NAME",
        help="the Service whose LoadBalancer IPs Ingresses' status shows",
    )
    ing.add_argument("--ingress-class", default="kubesvc")
    ing.add_argument("--http-port", type=int, default=80)
    ing.add_argument("--https-port", type=int, default=443)
    ing.add_argument("--health-port", type=int, default=10254, help="GET /healthz")
    ing.add_argument("--metrics-port", type=int, default=10255, help="GET /metrics")
    ing.set_defaults(func=_ingress_controller)
    ec = sub.add_parser(
        "etcdctl",
        help="run etcdctl against a cluster's etcd members: kubesvc etcdctl -- get --prefix "
        "/registry/services/specs/default/",
    )
    ec.add_argument("--name", default="kubesvc")
    ec.set_defaults(func=_etcdctl)
    kc = sub.add_parser("kubeconfig", help="print a cluster's kubeconfig")
    kc.add_argument("--name", default="kubesvc")
    kc.set_defaults(func=_kubeconfig)
    return parser


NODE_ADMIN_VERBS = ("stop", "start", "list")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `kubesvc node` runs a node agent; `kubesvc node stop NAME` and the like administer one
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            if word == "node" and argv[i + 1 : i + 2] and argv[i + 1] in NODE_ADMIN_VERBS:
                argv[i] = "node-admin"
            break
    # `kubesvc host exec NAME -- CMD...`: what follows `--` is the command, left to no parser
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func in (_host_exec, _etcdctl):
        args.command = command
    elif command:
        parser.error(f"unrecognized arguments: -- {' '.join(command)}")
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except OSError as e:
        logging.getLogger("kubesvc").debug("fatal", exc_info=True)
        print(f"kubesvc: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
