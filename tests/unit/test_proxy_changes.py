"""The proxier's change tracker: Services and EndpointSlices folded into a ProxyState one
Service at a time must give exactly what a rebuild from scratch gives, and name the service
ports that changed (the nftables diff then looks at those alone)."""

from __future__ import annotations

import random
from typing import Any

from kubesvc.proxy.model import ChangeTracker, Endpoint, build_state
from kubesvc.proxy.nftables.render import NftTracker

NODE, IPS, CIDR = "n1", ("172.31.0.10",), "10.244.0.0/16"


def svc(name: str, ip: str, ports: list[tuple[str, int]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": name, "labels": spec.pop("labels", {})},
        "spec": {
            "clusterIP": ip,
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            **spec,
        },
    }


def slc(name: str, service: str, ips: list[str], ports: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
    }


def test_take_names_changed_ports_only() -> None:
    t = ChangeTracker(NODE, IPS, CIDR)
    t.service(svc("web", "10.96.0.20", [("http", 80), ("https", 443)]))
    t.service(svc("db", "10.96.0.30", [("", 5432)]))
    t.slice(slc("web-abc", "web", ["10.244.1.5"], [("http", 8080), ("https", 8443)]))
    state, changed = t.take()
    assert changed == {"default/web:http", "default/web:https", "default/db:"}
    assert state.endpoints["default/web:http"] == (Endpoint("10.244.1.5", 8080),)
    assert "default/db:" not in state.endpoints

    t.slice(slc("db-xyz", "db", ["10.244.2.7"], [("", 5432)]))
    state2, changed = t.take()
    assert changed == {"default/db:"}
    assert state2.endpoints["default/db:"] == (Endpoint("10.244.2.7", 5432),)
    # unchanged services keep the very same objects (the backend compares identity first)
    assert state2.services["default/web:http"] is state.services["default/web:http"]
    assert state2.endpoints["default/web:http"] is state.endpoints["default/web:http"]

    assert t.take()[1] == frozenset()


def test_deletes_ignored_services_and_relabelled_slices() -> None:
    t = ChangeTracker(NODE, IPS, CIDR)
    t.service(svc("web", "10.96.0.20", [("", 80)]))
    t.service(svc("head", "None", [("", 80)]))
    t.service(
        svc(
            "other",
            "10.96.0.40",
            [("", 80)],
            labels={"service.kubernetes.io/service-proxy-name": "x"},
        )
    )
    t.service(
        svc("marked", "10.96.0.41", [("", 80)], labels={"service.kubernetes.io/headless": ""})
    )
    t.slice(slc("s1", "web", ["10.244.1.5"], [("", 8080)]))
    state, _ = t.take()
    assert set(state.services) == {"default/web:"}

    # the slice moves to another Service: both are recomputed
    t.service(svc("api", "10.96.0.50", [("", 80)]))
    t.slice(slc("s1", "api", ["10.244.1.5"], [("", 8080)]))
    state, changed = t.take()
    assert changed == {"default/web:", "default/api:"}
    assert "default/web:" not in state.endpoints
    assert state.endpoints["default/api:"] == (Endpoint("10.244.1.5", 8080),)

    t.service(svc("api", "10.96.0.50", [("", 80)]), deleted=True)
    state, changed = t.take()
    assert changed == {"default/api:"} and "default/api:" not in state.services
    assert "default/api:" not in state.endpoints
    t.slice(slc("s1", "api", [], []), deleted=True)
    assert t.take()[1] == frozenset()  # nothing left that the proxy programs


def test_random_changes_match_a_rebuild_and_the_hinted_diff_matches_the_full_one() -> None:
    rnd = random.Random(7)
    services: dict[str, dict[str, Any]] = {}
    slices: dict[str, dict[str, Any]] = {}
    t = ChangeTracker(NODE, IPS, CIDR)
    hinted, plain = NftTracker(), NftTracker()
    for step in range(300):
        name = f"s{rnd.randrange(12)}"
        what = rnd.random()
        if what < 0.3:
            ports = [("a", 80)] if rnd.random() < 0.5 else [("a", 80), ("b", 81)]
            obj = svc(name, f"10.96.0.{int(name[1:]) + 1}", ports)  # allocated: unique
            services[name] = obj
            t.service(obj)
        elif what < 0.4 and name in services:
            t.service(services.pop(name), deleted=True)
        elif what < 0.85:
            slice_name = f"{name}-{rnd.randrange(2)}"
            owner = name if rnd.random() < 0.9 else f"s{rnd.randrange(12)}"
            ips = [
                f"10.244.{rnd.randrange(3)}.{rnd.randrange(1, 6)}" for _ in range(rnd.randrange(4))
            ]
            obj = slc(slice_name, owner, ips, [("a", 8080), ("b", 8081)])
            slices[slice_name] = obj
            t.slice(obj)
        else:
            slice_name = f"{name}-{rnd.randrange(2)}"
            if slice_name in slices:
                t.slice(slices.pop(slice_name), deleted=True)
        if step % 3:
            continue
        state, changed = t.take()
        want = build_state(NODE, IPS, CIDR, services.values(), slices.values())
        assert dict(state.services) == dict(want.services), step
        assert dict(state.endpoints) == dict(want.endpoints), step
        assert hinted.diff(state, changed) == plain.diff(state), step
        hinted.applied(state)
        plain.applied(state)


def test_slices_labelled_for_another_proxy_or_headless_are_left_out() -> None:
    t = ChangeTracker(NODE, IPS, CIDR)
    t.service(svc("web", "10.96.0.20", [("", 80)]))
    t.slice(slc("s1", "web", ["10.244.1.5"], [("", 8080)]))
    for i, label in enumerate(
        ("service.kubernetes.io/headless", "service.kubernetes.io/service-proxy-name")
    ):
        other = slc(f"s{i + 2}", "web", [f"10.244.1.{i + 6}"], [("", 8080)])
        other["metadata"]["labels"][label] = ""
        t.slice(other)
    state, _ = t.take()
    assert state.endpoints["default/web:"] == (Endpoint("10.244.1.5", 8080),)


def test_addresses_with_a_nul_are_not_addresses() -> None:
    """inet_pton raises ValueError (not OSError) for an embedded NUL: such an external IP is
    not IPv4 and left out, such an endpoint makes its slice invalid; neither raises."""
    t = ChangeTracker(NODE, IPS, CIDR)
    t.service(svc("web", "10.96.0.20", [("http", 80)], externalIPs=["\x00", "192.0.2.7"]))
    t.slice(slc("web-abc", "web", ["10.244.1.5"], [("http", 8080)]))
    t.slice(slc("web-bad", "web", ["10.244.1.6\x00"], [("http", 8080)]))
    state, _ = t.take()
    assert state.services["default/web:http"].external_ips == ("192.0.2.7",)
    assert state.endpoints["default/web:http"] == (Endpoint("10.244.1.5", 8080),)
