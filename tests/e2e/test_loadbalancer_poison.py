"""IPAddressPools and Services with wrong types written straight into the store (bypassing
the API and its CRD schema, as old data or another tool would leave them) stop nothing: the
allocator reports the pools it cannot use, goes on handing out addresses from the good
one, and picks a pool up once it is fixed; Services served without their undecodable fields
get addresses like any other. The extra addresses are documentation ranges: nothing is sent
to them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesvc.controllers.lbipam import metallb
from tests.e2e.harness import ControllerManagerProcess, wait_for
from tests.e2e.stored import InProcessApiServer

pytestmark = pytest.mark.e2e

NS = metallb.NAMESPACE
LATER = "2099-01-01T00:00:00Z"  # created after the good pool, which keeps what they overlap


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApiServer]:
    srv = InProcessApiServer(tmp_path_factory.mktemp("lbpoison") / "data")
    srv.start()
    try:
        srv.kubectl("apply", "-f", str(metallb.CRDS_FILE))
        srv.kubectl(
            "wait", "--for=condition=Established", "crd/ipaddresspools.metallb.io", "--timeout=30s"
        )
        srv.kubectl("create", "namespace", NS)
        yield srv
    finally:
        srv.stop()


def pool(name: str, spec: Any, created: str = LATER, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            **meta,
        },
        "spec": spec,
    }


POISON: dict[str, Any] = {
    "p-spec": "x",
    "p-addresses": {"addresses": 5},
    "p-entries": {"addresses": [5, {"a": 1}, None, "198.51.100.200/32"]},
    "p-garbage": {"addresses": ["not-an-address", "1.2.3.4-1.2.3.1", "1.2.3.4-::1"]},
    "p-flags": {"addresses": ["198.51.100.64/30"], "autoAssign": "yes", "avoidBuggyIPs": 3},
    "p-alloc": {
        "addresses": ["198.51.100.68/30"],
        "serviceAllocation": {"priority": "hi", "namespaces": 7, "serviceSelectors": "x"},
    },
    "p-overlap": {"addresses": ["198.51.100.0/29"]},  # the good pool's: the older one wins
    "p-huge": {
        "addresses": [f"10.{i // 256}.{i % 256}.0/24" for i in range(20_000)] + ["10.0.0.0/8"]
    },
    "p-nan": {"addresses": ["198.51.100.72/30"], "serviceAllocation": {"priority": 1e300}},
}


def lb(srv: InProcessApiServer, ns: str, name: str, **annotations: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }
    srv.kubectl("apply", "-f", "-", input=json.dumps(body))


def ingress(srv: InProcessApiServer, ns: str, name: str) -> list[str]:
    svc = json.loads(srv.kubectl("get", "service", name, "-n", ns, "-o", "json").stdout)
    lbs = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in lbs if "ip" in i]


def an_ip(srv: InProcessApiServer, ns: str, name: str) -> str:
    ips = wait_for(lambda: ingress(srv, ns, name), timeout=20, what=f"an IP for {name}")
    return str(ips[0])


def test_poisoned_pools_stop_nothing(stored: InProcessApiServer, tmp_path: Path) -> None:
    ns = "lbp-" + secrets.token_hex(3)
    stored.kubectl("create", "namespace", ns)
    stored.apply(pool("good", {"addresses": ["198.51.100.0/29"]}))
    for name, spec in POISON.items():
        stored.put_json(metallb.IP_ADDRESS_POOL, NS, name, pool(name, spec))
    # metadata that is not metadata
    stored.put_json(
        metallb.IP_ADDRESS_POOL,
        NS,
        "p-meta",
        pool("p-meta", {"addresses": ["192.0.2.0/30"]}, labels=5),
    )
    cm = ControllerManagerProcess(stored.kubeconfig, controllers="lbipam")
    cm.start()
    try:
        lb(stored, ns, "a")
        lb(stored, ns, "b")
        got = {an_ip(stored, ns, "a"), an_ip(stored, ns, "b")}
        assert got == {"198.51.100.0", "198.51.100.1"}

        def invalid() -> set[str]:
            events = json.loads(stored.kubectl("get", "events", "-n", NS, "-o", "json").stdout)[
                "items"
            ]
            return {e["involvedObject"]["name"] for e in events if e["reason"] == "InvalidPool"}

        reported = wait_for(
            lambda: (r := invalid()) >= {"p-garbage", "p-overlap", "p-entries"} and r,
            timeout=20,
            what="InvalidPool events",
        )
        assert "good" not in reported
        # poison written while it runs is read and reported the same way
        stored.put_json(metallb.IP_ADDRESS_POOL, NS, "p-late", pool("p-late", {"addresses": "x"}))
        wait_for(lambda: "p-late" in invalid(), timeout=20, what="p-late reported")
        # Services stored with wrong types are served without the fields that do not decode:
        # usable LoadBalancers, which get addresses like any other
        meta = {"namespace": ns, "uid": "uid-p", "creationTimestamp": LATER}
        lb_spec = {"type": "LoadBalancer", "clusterIP": "10.99.9.1", "ports": [{"port": 80}]}
        for name, extra in {
            "p-status": {"status": {"loadBalancer": {"ingress": "x"}}},
            "p-ingress": {"status": {"loadBalancer": {"ingress": [{"ip": 5}]}}},
            "p-ann": {"metadata": {**meta, "name": "p-ann", "annotations": {"a": 5}}},
            "p-lbip": {"spec": {**lb_spec, "loadBalancerIP": ["198.51.100.3"]}},
        }.items():
            body = {"metadata": {**meta, "name": name}, "spec": lb_spec, **extra}
            stored.put_json("Service", ns, name, {"apiVersion": "v1", "kind": "Service", **body})
        lb(stored, ns, "c")
        names = ["a", "b", "c", "p-status", "p-ingress", "p-ann", "p-lbip"]
        ips = [an_ip(stored, ns, n) for n in names]
        assert len(set(ips)) == len(ips) and all(ip.startswith("198.51.100.") for ip in ips)
        # a poisoned pool that is fixed is used
        stored.apply(pool("p-garbage", {"addresses": ["203.0.113.8/30"], "autoAssign": False}))
        lb(stored, ns, "d", **{"metallb.io/address-pool": "p-garbage"})
        assert an_ip(stored, ns, "d") == "203.0.113.8"
        assert cm.proc is not None and cm.proc.poll() is None
    finally:
        cm.stop()
        stored.kubectl("delete", "namespace", ns, "--wait=false", check=False)
