"""Objects with wrong types written straight into the store (bypassing the API, as old data or
another tool would leave them) must not stop any consumer: the real `kubesvc dns` keeps
answering for good Services, the controller-manager keeps producing Endpoints and
EndpointSlices, garbage collection still empties and removes namespaces, label-selector lists
still work, and kube-proxy (its real informers, change tracker and nftables backend, in
namespaces made here) still programs the good Services. Each consumer recovers by itself when
a poisoned object is fixed or deleted.

IP plan: ClusterIPs come from the server's 10.96.0.0/12; pods 10.244.50.0/24 (good ones
.10-.19); proxy test node 172.31.50.10/24 with pods a=10.244.50.2, b=10.244.50.3 (servers)
and c=10.244.50.4 (client), all inside namespaces named ksvp-<random>-*.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Informer, InformerFactory
from kubesvc.client.rest import ApiException
from kubesvc.controllers.base import Context
from kubesvc.controllers.endpointslice import EndpointSliceController
from kubesvc.controllers.scheduler import Scheduler
from tests.e2e.harness import ControllerManagerProcess, spawn, stop_process, wait_for
from tests.e2e.stored import InProcessApiServer

pytestmark = pytest.mark.e2e

SLICE_LABEL = "kubernetes.io/service-name"
GOOD = "10.244.50.10"  # the good pod's IP (poisoned pods may be selected too, if readable)
NOW = "2026-01-01T00:00:00Z"


# -- poison ---------------------------------------------------------------------------------------
def meta(ns: str | None, name: str, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "uid": f"uid-{ns}-{name}", "creationTimestamp": NOW}
    if ns:
        m["namespace"] = ns
    return {**m, **extra}


def service_json(ns: str, name: str, spec: Any, **meta_extra: Any) -> str:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": meta(ns, name, **meta_extra)}
    return json.dumps({**obj, "spec": spec})


def poison(ns: str) -> list[tuple[str, str | None, str, str]]:
    """(kind, namespace, name, stored JSON) of objects no consumer can use as they are."""
    ok_spec = {"clusterIP": "10.99.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}
    svc = [
        ("p-extname", {"type": "ExternalName", "externalName": 5}, {}),
        ("p-labels", ok_spec, {"labels": "x"}),
        ("p-annotations", ok_spec, {"annotations": 5}),
        ("p-owners", ok_spec, {"ownerReferences": True}),
        ("p-finalizers", ok_spec, {"finalizers": "x"}),
        ("p-selector", {**ok_spec, "selector": 5}, {}),
        ("p-ports", {"clusterIP": "10.99.0.2", "ports": "80", "selector": {"app": "web"}}, {}),
        ("p-port-str", {"clusterIP": "10.99.0.3", "ports": [{"port": "80"}]}, {}),
        ("p-port-float", {"clusterIP": "10.99.0.4", "ports": [{"port": 80.5}]}, {}),
        ("p-port-big", {"clusterIP": "10.99.0.5", "ports": [{"port": 1e300}]}, {}),
        ("p-spec-list", ["clusterIP", "10.99.0.6"], {}),
        ("p-bad-ip", {"clusterIP": "banana", "ports": [{"port": 80}]}, {}),
        ("p-port-name", {"clusterIP": "10.99.0.7", "ports": [{"name": 'a"b', "port": 80}]}, {}),
        ("p-port-range", {"clusterIP": "10.99.0.10", "ports": [{"port": 70000}]}, {}),
        ("p-extname-dots", {"type": "ExternalName", "externalName": "a..b"}, {}),
    ]
    out: list[tuple[str, str | None, str, str]] = [
        ("Service", ns, name, service_json(ns, name, spec, **extra)) for name, spec, extra in svc
    ]
    # JSON NaN / Infinity literals, as Python's encoder writes them
    out += [
        (
            "Service",
            ns,
            "p-port-nan",
            service_json(ns, "p-port-nan", {"clusterIP": "10.99.0.8", "ports": []}).replace(
                '"ports": []', '"ports": [{"port": NaN, "targetPort": Infinity}]'
            ),
        ),
        ("Service", ns, "p-no-meta", json.dumps({"apiVersion": "v1", "kind": "Service"})),
    ]
    slices = {
        "p-slice-labels": {"labels": 5},
        "p-slice-eps": {"endpoints": "x"},
        "p-slice-ep-types": {"endpoints": [5, {"addresses": "10.244.50.30"}]},
        "p-slice-cond": {"endpoints": [{"addresses": ["10.244.50.31"], "conditions": "yes"}]},
        "p-slice-ips": {"endpoints": [{"addresses": ["banana"]}]},
        "p-slice-ports": {"ports": "x"},
        "p-slice-port-nan": {"ports": [{"name": "http", "port": "NAN"}]},
    }
    for name, body in slices.items():
        obj: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            # labelled for the good Services: their consumers meet these first
            "metadata": meta(ns, name, labels={SLICE_LABEL: "web"}),
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.50.40"], "conditions": {"ready": True}}],
        }
        if "labels" in body:
            obj["metadata"]["labels"] = body.pop("labels")
        obj.update(body)
        text = json.dumps(obj).replace('"port": "NAN"', '"port": NaN')
        out.append(("EndpointSlice", ns, name, text))
    pod_base = {
        "spec": {"nodeName": "poison-node", "containers": [{"name": "c", "image": "pause"}]},
        "status": {"phase": "Running", "podIP": "10.244.50.50"},
    }
    pods = {
        "p-pod-status": {"status": "x", "metadata": {"labels": {"app": "web"}}},
        "p-pod-labels": {"metadata": {"labels": "x"}},
        "p-pod-owners": {"metadata": {"labels": {"app": "web"}, "ownerReferences": True}},
        "p-pod-containers": {"spec": {"containers": "x"}, "metadata": {"labels": {"app": "web"}}},
        "p-pod-grace": {"spec": {"terminationGracePeriodSeconds": "NAN", "containers": []}},
        "p-pod-unbound": {"spec": {"tolerations": 5, "containers": []}},
    }
    for name, body in pods.items():
        pod = {"apiVersion": "v1", "kind": "Pod", **pod_base, **body}
        pod["metadata"] = meta(ns, name, **body.get("metadata", {}))
        text = json.dumps(pod).replace('"NAN"', "NaN")
        out.append(("Pod", ns, name, text))
    out += [
        (
            "Endpoints",
            ns,
            "p-ep-subsets",
            json.dumps({"metadata": meta(ns, "p-ep-subsets"), "subsets": "x"}),
        ),
        (
            "Endpoints",
            ns,
            "web-manual",
            json.dumps(
                {
                    "metadata": meta(ns, "web-manual"),
                    "subsets": [{"addresses": [{"ip": 5}], "ports": [{"port": "80"}]}],
                }
            ),
        ),
        (
            "ReplicaSet",
            ns,
            "p-rs-nan",
            json.dumps(
                {
                    "metadata": meta(ns, "p-rs-nan"),
                    "spec": {
                        "replicas": "NAN",
                        "selector": {"matchLabels": {"rs": "x"}},
                        "template": {
                            "metadata": {"labels": {"rs": "x"}},
                            "spec": {"containers": [{"name": "c", "image": "pause"}]},
                        },
                    },
                }
            ).replace('"NAN"', "NaN"),
        ),
        (
            "ReplicaSet",
            ns,
            "p-rs-selector",
            json.dumps(
                {
                    "metadata": meta(ns, "p-rs-selector"),
                    "spec": {"replicas": 1, "selector": 5, "template": "x"},
                }
            ),
        ),
        (
            "Deployment",
            ns,
            "p-deploy-inf",
            json.dumps(
                {
                    "metadata": meta(ns, "p-deploy-inf"),
                    "spec": {"replicas": "INF", "selector": {"matchLabels": 5}},
                }
            ).replace('"INF"', "Infinity"),
        ),
        (
            "Deployment",
            ns,
            "p-deploy-surge",
            json.dumps(
                {
                    "metadata": meta(ns, "p-deploy-surge"),
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"d": "s"}},
                        "strategy": {"rollingUpdate": {"maxSurge": "abc"}},
                        "template": {
                            "metadata": {"labels": {"d": "s"}},
                            "spec": {"containers": [{"name": "c", "image": "pause"}]},
                        },
                    },
                }
            ),
        ),
        (
            "Lease",
            "kube-node-lease",
            "poison-node",
            json.dumps(
                {"metadata": meta("kube-node-lease", "poison-node"), "spec": {"renewTime": 5}}
            ),
        ),
        (
            "Node",
            None,
            "poison-node",
            json.dumps(
                {
                    "metadata": meta(None, "poison-node"),
                    "spec": {"taints": 5},
                    "status": {"conditions": "x"},
                }
            ),
        ),
        (
            "Namespace",
            None,
            f"{ns}-pns",
            json.dumps({"metadata": {**meta(None, f"{ns}-pns"), "labels": 5}, "spec": ["x"]}),
        ),
    ]
    return out


def write_poison(srv: InProcessApiServer, ns: str) -> list[tuple[str, str | None, str, str]]:
    items = poison(ns)
    for kind, namespace, name, raw in items:
        srv.put_raw(kind, namespace, name, raw)
    return items


def good_objects(ns: str, pod_ip: str = "10.244.50.10") -> list[tuple[str, str | None, str, Any]]:
    """A Ready pod on a Ready node, selected by Service `web`; a headless Service `hl` with a
    hand-written slice (for DNS)."""
    ready = [{"type": "Ready", "status": "True", "lastTransitionTime": NOW}]
    return [
        (
            "Node",
            None,
            "good-node",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": meta(None, "good-node"),
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "lastHeartbeatTime": "2999-01-01T00:00:00Z",
                        }
                    ]
                },
            },
        ),
        (
            "Pod",
            ns,
            "web-1",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta(ns, "web-1", labels={"app": "web"}),
                "spec": {
                    "nodeName": "good-node",
                    "containers": [
                        {
                            "name": "c",
                            "image": "pause",
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ],
                },
                "status": {
                    "phase": "Running",
                    "podIP": pod_ip,
                    "podIPs": [{"ip": pod_ip}],
                    "conditions": ready,
                },
            },
        ),
    ]


def create_service(srv: InProcessApiServer, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}
    return srv.run(srv.client.create("Service", ns, body))


def web_service(srv: InProcessApiServer, ns: str, name: str = "web") -> str:
    ports = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    created = create_service(srv, ns, name, selector={"app": "web"}, ports=ports)
    return str(created["spec"]["clusterIP"])


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApiServer]:
    srv = InProcessApiServer(tmp_path_factory.mktemp("stored") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def pns(stored: InProcessApiServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, holding every kind of poison."""
    name = "p-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    name += "-" + secrets.token_hex(2)
    stored.kubectl("create", "namespace", name)
    yield name
    stored.kubectl("delete", "namespace", name, "--wait=false", check=False)


def log_mentions(path: Path, needle: str) -> int:
    return path.read_text(errors="replace").count(needle) if path.exists() else 0


# -- cluster DNS ----------------------------------------------------------------------------------
def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class Dns:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.port, self.http_port = _free_port(), _free_port()
        self.log = log
        cmd = [sys.executable, "-m", "kubesvc.cli.main", "dns", "--kubeconfig", str(kubeconfig)]
        cmd += ["--listen", f"127.0.0.1:{self.port}", "--metrics", f"127.0.0.1:{self.http_port}"]
        cmd += ["--health", "", "--ready", ""]
        self.proc, _ = spawn(cmd, log, r"listening on", 30)

    def a(self, name: str) -> list[str]:
        reply = dns.query.udp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=2
        )
        return sorted(r.to_text() for rrset in reply.answer for r in rrset if rrset.rdtype == 1)

    def rcode(self, name: str) -> int:
        reply = dns.query.udp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=2
        )
        return reply.rcode()

    def ready(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ready", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)


def test_dns_starts_answers_and_follows_changes_with_poison_stored(
    stored: InProcessApiServer, pns: str, tmp_path: Path
) -> None:
    hl_ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
    ip = web_service(stored, pns)
    create_service(stored, pns, "hl", clusterIP="None", ports=hl_ports)
    stored.put_json(
        "EndpointSlice",
        pns,
        "hl-1",
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta(pns, "hl-1", labels={SLICE_LABEL: "hl"}),
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.50.11"], "conditions": {"ready": True}}],
        },
    )
    items = write_poison(stored, pns)  # before the server starts: its first list has them all
    server = Dns(stored.kubeconfig, tmp_path / "dns.log")
    try:
        wait_for(lambda: "caches synced" in server.log.read_text(), timeout=20, what="dns sync")
        assert server.ready() == 200
        zone = f"{pns}.svc.cluster.local"
        assert server.a(f"web.{zone}") == [ip]
        assert server.a(f"hl.{zone}") == ["10.244.50.11"]
        assert server.rcode(f"p-extname.{zone}") == dns.rcode.NXDOMAIN
        assert server.rcode(f"p-labels.{zone}") == dns.rcode.NOERROR  # labels are not DNS's
        # values of the right type that DNS cannot hold: left out, whatever the server serves
        for name in ("p-bad-ip", "p-port-range", "p-extname-dots", "p-port-name"):
            assert server.rcode(f"{name}.{zone}") == dns.rcode.NXDOMAIN, name

        # running: more poison arrives as updates, and the zone keeps changing
        stored.put_raw(
            "Service",
            pns,
            "web",
            service_json(pns, "web", {"type": "ExternalName", "externalName": 5}),
        )
        wait_for(
            lambda: server.rcode(f"web.{zone}") == dns.rcode.NXDOMAIN,
            timeout=5,
            what="web left out",
        )
        ip2 = web_service(stored, pns, "web2")
        wait_for(lambda: server.a(f"web2.{zone}") == [ip2], timeout=5, what="a new Service")
        stored.put_json(
            "EndpointSlice",
            pns,
            "hl-2",
            {
                "metadata": meta(pns, "hl-2", labels={SLICE_LABEL: "hl"}),
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.50.12"]}],
            },
        )
        wait_for(
            lambda: server.a(f"hl.{zone}") == ["10.244.50.11", "10.244.50.12"],
            timeout=5,
            what="hl-2",
        )

        # fixed: answers again; deleted: gone; both without a restart
        stored.put_raw(
            "Service",
            pns,
            "web",
            service_json(pns, "web", {"type": "ExternalName", "externalName": "example.com"}),
        )
        wait_for(
            lambda: server.rcode(f"web.{zone}") == dns.rcode.NOERROR, timeout=5, what="web fixed"
        )
        stored.put_raw(
            "Service",
            pns,
            "p-labels",
            service_json(pns, "p-labels", {"clusterIP": "10.99.0.9"}, labels={"ok": "now"}),
        )
        wait_for(
            lambda: server.a(f"p-labels.{zone}") == ["10.99.0.9"], timeout=5, what="p-labels fixed"
        )
        for kind, namespace, name, _ in items:
            if kind == "Service":
                stored.delete_raw(kind, namespace, name)
        wait_for(
            lambda: server.rcode(f"p-labels.{zone}") == dns.rcode.NXDOMAIN,
            timeout=5,
            what="deleted",
        )
        assert server.a(f"web2.{zone}") == [ip2]
        assert server.proc.poll() is None
        # one line per object revision, not one per retry
        text = server.log.read_text()
        assert 1 <= text.count(f"{pns}/p-bad-ip") <= 2, text[-3000:]
    finally:
        stop_process(server.proc)


def test_dns_with_labels_poison_syncs_and_is_ready(
    stored: InProcessApiServer, pns: str, tmp_path: Path
) -> None:
    """The case that kept cluster DNS from ever syncing, with nothing in the log."""
    stored.put_raw(
        "Service", pns, "bad", service_json(pns, "bad", {"clusterIP": "10.99.1.1"}, labels="x")
    )
    ip = web_service(stored, pns)
    server = Dns(stored.kubeconfig, tmp_path / "dns.log")
    try:
        wait_for(lambda: "caches synced" in server.log.read_text(), timeout=20, what="dns sync")
        assert server.ready() == 200
        assert server.a(f"web.{pns}.svc.cluster.local") == [ip]
        assert server.a(f"bad.{pns}.svc.cluster.local") == ["10.99.1.1"]  # DNS reads no labels
    finally:
        stop_process(server.proc)


# -- controllers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cm(stored: InProcessApiServer) -> Iterator[ControllerManagerProcess]:
    proc = ControllerManagerProcess(stored.kubeconfig)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def endpoints_ips(srv: InProcessApiServer, ns: str, name: str) -> list[str]:
    try:
        ep = srv.run(srv.client.get("Endpoints", ns, name))
    except ApiException:
        return []
    try:
        return sorted(a["ip"] for ss in ep.get("subsets") or [] for a in ss.get("addresses") or [])
    except (AttributeError, TypeError, KeyError):  # still the poisoned value
        return ["unreadable"]


def slice_ips(srv: InProcessApiServer, ns: str, name: str) -> list[str]:
    body = srv.run(srv.client.list("EndpointSlice", ns, label_selector=f"{SLICE_LABEL}={name}"))
    return sorted(
        a
        for s in body["items"]
        if (s["metadata"].get("labels") or {}).get("endpointslice.kubernetes.io/managed-by")
        == "endpointslice-controller.k8s.io"
        for ep in s.get("endpoints") or []
        for a in ep["addresses"]
    )


def test_controllers_keep_producing_endpoints_with_poison_stored(
    stored: InProcessApiServer, cm: ControllerManagerProcess, pns: str
) -> None:
    items = write_poison(stored, pns)
    for kind, ns, name, obj in good_objects(pns):
        stored.put_json(kind, ns, name, obj)
    web_service(stored, pns)
    wait_for(lambda: GOOD in endpoints_ips(stored, pns, "web"), timeout=20, what="Endpoints")
    wait_for(lambda: GOOD in slice_ips(stored, pns, "web"), timeout=20, what="EndpointSlice")

    # workloads next to the poisoned ones: a ReplicaSet gets its pod, a Deployment its RS
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "good-rs"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"rs": "good"}},
            "template": {
                "metadata": {"labels": {"rs": "good"}},
                "spec": {"containers": [{"name": "c", "image": "pause"}]},
            },
        },
    }
    stored.run(stored.client.create("ReplicaSet", pns, rs))
    deploy = {**rs, "kind": "Deployment", "metadata": {"name": "good-deploy"}}
    deploy["spec"] = {
        **rs["spec"],
        "selector": {"matchLabels": {"d": "good"}},
        "template": {**rs["spec"]["template"], "metadata": {"labels": {"d": "good"}}},
    }
    stored.run(stored.client.create("Deployment", pns, deploy))

    def pods_of(label: str) -> int:
        return len(stored.run(stored.client.list("Pod", pns, label_selector=label))["items"])

    wait_for(lambda: pods_of("rs=good") == 1, timeout=20, what="the ReplicaSet's pod")
    wait_for(lambda: pods_of("d=good") == 1, timeout=20, what="the Deployment's pod")

    # poison that arrives while running: a good Service turns bad, another stays served
    stored.put_raw(
        "Service", pns, "web", service_json(pns, "web", {"selector": 5, "clusterIP": "10.99.2.1"})
    )
    web_service(stored, pns, "web2")
    wait_for(
        lambda: GOOD in endpoints_ips(stored, pns, "web2"),
        timeout=20,
        what="web2 Endpoints",
    )
    wait_for(lambda: GOOD in slice_ips(stored, pns, "web2"), timeout=20, what="web2 slice")
    # a pod turns bad: it leaves the endpoints; fixed, it comes back
    pod = good_objects(pns)[1][3]
    stored.put_raw("Pod", pns, "web-1", json.dumps({**pod, "status": "x"}))
    wait_for(
        lambda: GOOD not in endpoints_ips(stored, pns, "web2"), timeout=20, what="bad pod left"
    )
    stored.put_json("Pod", pns, "web-1", pod)
    wait_for(lambda: GOOD in endpoints_ips(stored, pns, "web2"), timeout=20, what="pod back")
    # the Service fixed: served again
    stored.put_json(
        "Service",
        pns,
        "web",
        json.loads(
            service_json(
                pns,
                "web",
                {
                    "selector": {"app": "web"},
                    "clusterIP": "10.99.2.1",
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            )
        ),
    )
    wait_for(lambda: GOOD in endpoints_ips(stored, pns, "web"), timeout=20, what="web fixed")
    # Endpoints that cannot be read are replaced by the controller's own (served repaired,
    # without their subsets, they are replaced on the Service's next sync: a label here)
    stored.put_raw(
        "Endpoints", pns, "web2", json.dumps({"metadata": meta(pns, "web2"), "subsets": "x"})
    )
    stored.kubectl("label", "service", "web2", "-n", pns, "touched=yes")
    wait_for(
        lambda: GOOD in endpoints_ips(stored, pns, "web2"),
        timeout=20,
        what="Endpoints replaced",
    )

    assert cm.proc is not None and cm.proc.poll() is None
    time.sleep(3)  # a few retry periods: a poisoned object must not be logged over and over
    log = cm.kubeconfig.parent.parent / "controller-manager.log"
    for kind, ns, name, _ in items:
        if ns == pns and kind in ("Service", "ReplicaSet", "Deployment", "Pod"):
            assert log_mentions(log, f"{pns}/{name}") <= 8, (name, log.read_text()[-4000:])


def test_controllers_record_events_for_objects_they_cannot_read(
    stored: InProcessApiServer, pns: str
) -> None:
    """Where upstream records an Event for an object it cannot handle, so do the
    controllers. The objects are fed through the informers' ingest, as a watch delivers
    them, so the test does not depend on what the server makes of stored values."""
    bad_service = json.loads(service_json(pns, "p-sel", {"selector": 5, "clusterIP": "10.99.3.1"}))
    bad_pod = {"metadata": meta(pns, "p-unbound"), "spec": {"tolerations": 5, "containers": []}}

    async def scenario() -> None:
        client = stored.client
        factory = InformerFactory(client, checked=True)
        recorder = EventRecorder(client, "controller-manager")
        ctx = Context(client, factory, recorder)
        controllers = [EndpointSliceController(ctx), Scheduler(ctx)]
        factory.informer("Service")._upsert(bad_service)
        factory.informer("Service")._upsert(bad_service)  # the same revision: one event
        factory.informer("Pod")._upsert(bad_pod)
        await asyncio.wait_for(controllers[1].events.flush(), 20)  # type: ignore[attr-defined]
        await asyncio.wait_for(recorder.flush(), 20)
        for c in controllers:
            await c.stop()  # the scheduler's stop closes its recorder
        await recorder.close()

    stored.run(scenario())
    events = stored.run(stored.client.list("Event", pns))["items"]
    warnings = {(e["reason"], e["involvedObject"]["name"]): e for e in events}
    service_event = warnings[("FailedToUpdateEndpointSlices", "p-sel")]
    assert "spec.selector: expected map of strings" in service_event["message"]
    assert service_event["count"] == 1 and service_event["type"] == "Warning"
    pod_event = warnings[("FailedScheduling", "p-unbound")]
    assert "spec.tolerations: expected array" in pod_event["message"]


# -- garbage collection and namespaces ------------------------------------------------------------
def namespace_gone(srv: InProcessApiServer, name: str) -> bool:
    return srv.kubectl("get", "namespace", name, check=False).returncode != 0


def test_gc_deletes_namespaces_and_dependents_with_poison_stored(
    stored: InProcessApiServer, pns: str
) -> None:
    write_poison(stored, pns)
    # elsewhere: an owner and its dependent, and a namespace to delete
    other = f"{pns}-other"
    stored.kubectl("create", "namespace", other)
    owner = stored.run(stored.client.create("ConfigMap", other, {"metadata": {"name": "owner"}}))
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    stored.run(
        stored.client.create(
            "ConfigMap", other, {"metadata": {"name": "dep", "ownerReferences": [ref]}}
        )
    )
    stored.kubectl("delete", "configmap", "owner", "-n", other)
    wait_for(
        lambda: stored.kubectl("get", "configmap", "dep", "-n", other, check=False).returncode != 0,
        timeout=20,
        what="dependent collected",
    )
    web_service(stored, other)
    stored.kubectl("delete", "namespace", other, "--wait=false")
    wait_for(lambda: namespace_gone(stored, other), timeout=30, what="the other namespace deleted")
    # and the poisoned namespace itself
    stored.kubectl("delete", "namespace", pns, "--wait=false")
    wait_for(lambda: namespace_gone(stored, pns), timeout=30, what="the poisoned namespace deleted")


# -- label-selector lists -------------------------------------------------------------------------
def test_label_selector_lists_and_watches_with_poison_stored(
    stored: InProcessApiServer, pns: str
) -> None:
    write_poison(stored, pns)
    stored.put_json(
        "EndpointSlice",
        pns,
        "good",
        {
            "metadata": meta(pns, "good", labels={SLICE_LABEL: "web"}),
            "addressType": "IPv4",
            "endpoints": [],
        },
    )
    for kind in ("EndpointSlice", "Service", "Pod"):
        for selector in (
            f"{SLICE_LABEL}=web",
            f"{SLICE_LABEL}!=web",
            "app",
            "!app",
            "app in (web)",
        ):
            body = stored.run(stored.client.list(kind, pns, label_selector=selector))
            names = {i["metadata"].get("name") for i in body["items"]}
            if kind == "EndpointSlice" and selector == f"{SLICE_LABEL}=web":
                assert "good" in names and "p-slice-labels" not in names
    out = stored.kubectl(
        "get", "endpointslices", "-n", pns, "-l", f"{SLICE_LABEL}=web", "-o", "name"
    ).stdout
    assert "endpointslice.discovery.k8s.io/good" in out

    async def watch_first() -> list[str]:
        seen: list[str] = []
        stream = stored.client.watch(
            "EndpointSlice", pns, label_selector=f"{SLICE_LABEL}=web", timeout_seconds=2
        )
        async for _type, obj in stream:
            seen.append(obj["metadata"]["name"])
        return seen

    assert "good" in stored.run(watch_first())


# -- kube-proxy -----------------------------------------------------------------------------------
NODE_IP, GW = "172.31.50.10", "10.244.50.1"
PODS = {"a": "10.244.50.2", "b": "10.244.50.3", "c": "10.244.50.4"}
SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64); print("ready", flush=True)
while True:
    c, _ = s.accept()
    with c:
        c.sendall(sys.argv[1].encode() + b"\n")
"""
CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        print(s.makefile().readline().strip())
except OSError as e:
    print(f"error {type(e).__name__}")
"""


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=60)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]


@pytest.fixture
def node() -> Iterator[tuple[str, dict[str, str]]]:
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.fail("the kube-proxy part needs root and nft")
    tag = secrets.token_hex(3)
    node, pods = f"ksvp-{tag}-n", {p: f"ksvp-{tag}-{p}" for p in PODS}
    procs: list[subprocess.Popen[str]] = []
    try:
        for ns in (node, *pods.values()):
            sh("ip", "netns", "add", ns)
        batch = [
            "link set lo up",
            "link add eth0 type veth peer name eth0p",
            "link set eth0p up",
            f"addr add {NODE_IP}/24 dev eth0",
            "link set eth0 up",
            "link add cbr0 type bridge",
            f"addr add {GW}/24 dev cbr0",
            "link set cbr0 up",
            f"route add 10.96.0.0/12 dev eth0 src {NODE_IP}",
        ]
        for pod, ns in pods.items():
            batch += [
                f"link add veth-{pod} type veth peer name eth0 netns {ns}",
                f"link set veth-{pod} master cbr0",
                f"link set veth-{pod} up",
            ]
        sh(*in_ns(node, "ip", "-b", "-"), input="\n".join(batch) + "\n")
        sh(
            *in_ns(
                node,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward; "
                "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables",
            )
        )
        for pod, ip in PODS.items():
            cmds = [
                "link set lo up",
                f"addr add {ip}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {GW}",
            ]
            sh(*in_ns(pods[pod], "ip", "-b", "-"), input="\n".join(cmds) + "\n")
        for pod in ("a", "b"):
            proc = subprocess.Popen(
                in_ns(pods[pod], sys.executable, "-c", SERVER, pod),
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield node, pods
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for ns in (*pods.values(), node):
            sh("ip", "netns", "del", ns, check=False)


def test_proxy_programs_good_services_with_poison_stored(
    stored: InProcessApiServer, pns: str, node: tuple[str, dict[str, str]]
) -> None:
    from kubesvc.proxy.nftables.backend import NftBackend
    from kubesvc.proxy.proxier import Proxier, read_metrics

    node_ns, pods = node
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
    ip = str(create_service(stored, pns, "front", ports=ports)["spec"]["clusterIP"])
    slice_obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(pns, "front-good", labels={SLICE_LABEL: "front"}),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [PODS["a"]], "conditions": {"ready": True}}],
    }
    stored.put_json("EndpointSlice", pns, "front-good", slice_obj)
    write_poison(stored, pns)
    # slices for `front` with values of the right type that no ruleset can hold
    for name, change in (
        ("ip", {"endpoints": [{"addresses": ["banana"]}]}),
        ("family", {"endpoints": [{"addresses": ["fd00::1"]}]}),
        ("port", {"ports": [{"name": "http", "port": 70000}]}),
    ):
        bad = {
            **slice_obj,
            **change,
            "metadata": meta(pns, f"front-{name}", labels={SLICE_LABEL: "front"}),
        }
        stored.put_json("EndpointSlice", pns, f"front-{name}", bad)

    def connect(target: str) -> str:
        return sh(*in_ns(pods["c"], sys.executable, "-c", CLIENT, target, "80")).strip()

    async def start() -> tuple[Proxier, list[Informer], asyncio.Task[None], Any]:
        services = Informer(stored.client, "Service")
        slices = Informer(stored.client, "EndpointSlice")
        proxier = Proxier(
            services=services,
            slices=slices,
            backend=NftBackend(node_ns),
            node="n1",
            node_ips=[NODE_IP],
            cluster_cidr="10.244.0.0/16",
            netns=node_ns,
        )
        for inf in (services, slices):
            inf.start()
        task = asyncio.ensure_future(proxier.run())
        metrics = await proxier.serve_metrics()
        return proxier, [services, slices], task, metrics

    proxier, informers, task, metrics = stored.run(start())
    try:
        wait_for(lambda: connect(ip) == "a", timeout=20, what="front through its ClusterIP")
        # a poisoned update of another Service, then a change to front: still programmed
        stored.put_raw(
            "Service",
            pns,
            "p-bad-ip",
            service_json(
                pns,
                "p-bad-ip",
                {"clusterIP": "10.99.9.9", "ports": [{"port": 80, "protocol": "ICMP"}]},
            ),
        )
        slice_obj["endpoints"] = [{"addresses": [PODS["b"]], "conditions": {"ready": True}}]
        stored.put_json("EndpointSlice", pns, "front-good", slice_obj)
        wait_for(lambda: connect(ip) == "b", timeout=20, what="front's new endpoint")
        # a good slice turns bad: front has no endpoints (refused at once); fixed: served again
        stored.put_raw(
            "EndpointSlice",
            pns,
            "front-good",
            json.dumps({**slice_obj, "endpoints": [{"addresses": ["banana"]}]}),
        )
        wait_for(
            lambda: connect(ip).startswith("error ConnectionRefused"),
            timeout=20,
            what="front without endpoints",
        )
        stored.put_json("EndpointSlice", pns, "front-good", slice_obj)
        wait_for(lambda: connect(ip) == "b", timeout=20, what="front served again")
        assert not task.done()
        # metrics: on loopback inside the node's namespace, not on the node address
        text = read_metrics(node_ns)
        assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in text
        probe = sh(*in_ns(node_ns, sys.executable, "-c", CLIENT, NODE_IP, "10249")).strip()
        assert probe.startswith("error ConnectionRefused"), probe
        assert proxier.changes.rejected  # the poison was seen, and left out
    finally:

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if metrics is not None:
                await metrics.cleanup()
            for inf in informers:
                await inf.stop()
            with contextlib.suppress(Exception):
                await proxier.backend.cleanup()
            await proxier.close()

        stored.run(stop())
