"""The LoadBalancer IP allocator's model: pools as MetalLB reads them, and the choice of an
IP for a Service (requests, pools, priorities, selectors, sharing, exhaustion)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.controllers.lbipam import metallb
from kubesvc.controllers.lbipam.model import (
    Allocator,
    PoolError,
    build_pools,
    converge,
    ip_text,
    parse_address,
    parse_pool,
    read_service,
)
from kubesvc.node.netplan import ClusterNet, lb_pool_range


def pool(name: str, *addresses: Any, created: str = "", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system", "creationTimestamp": created},
        "spec": {"addresses": list(addresses), **spec},
    }


def svc(
    name: str,
    *ports: int,
    ns: str = "default",
    annotations: dict[str, str] | None = None,
    status_ip: str = "",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": annotations or {},
            "labels": labels or {},
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": p, "protocol": "TCP"} for p in ports or (80,)],
            **spec,
        },
    }
    if status_ip:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": status_ip, "ipMode": "VIP"}]}}
    return obj


def allocator(*pools: dict[str, Any]) -> Allocator:
    a = Allocator()
    parsed: list[Any] = []
    for p in pools:
        try:
            parsed.append(parse_pool(p))
        except PoolError as e:
            parsed.append((p["metadata"]["name"], str(e)))
    a.set_pools(build_pools(parsed))
    return a


def run(a: Allocator, obj: dict[str, Any], ns_labels: dict[str, str] | None = None) -> Any:
    req = read_service(obj)
    assert req is not None
    return converge(a, req, ns_labels or {})


# -- pools -------------------------------------------------------------------------------


def test_addresses_as_cidr_and_range() -> None:
    assert parse_address("192.168.10.0/24") == (0xC0A80A00, 0xC0A80AFF)
    assert parse_address("192.168.10.5/30") == (0xC0A80A04, 0xC0A80A07)  # host bits, as Go
    assert parse_address("192.168.9.1-192.168.9.5") == (0xC0A80901, 0xC0A80905)
    assert parse_address("192.168.9.1 - 192.168.9.5") == (0xC0A80901, 0xC0A80905)
    assert parse_address("fc00:f853:0ccd:e799::/124") == "fc00:f853:0ccd:e799::/124"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("192.168.1.1", 'invalid CIDR "192.168.1.1"'),
        ("192.168.1.0/33", 'invalid CIDR "192.168.1.0/33"'),
        ("192.168.1.0/255.255.255.0", 'invalid CIDR "192.168.1.0/255.255.255.0"'),
        ("nope-192.168.1.1", 'invalid IP range "nope-192.168.1.1": invalid start IP "nope"'),
        ("192.168.1.9-192.168.1.1", 'start IP "192.168.1.9" is after the end IP'),
        ("192.168.1.1-::1", "different families"),
        (7, "invalid CIDR 7"),
    ],
)
def test_bad_addresses(entry: Any, message: str) -> None:
    with pytest.raises(PoolError, match=message.replace("(", r"\(")):
        parse_address(entry)


def test_addresses_go_out_in_the_order_listed() -> None:
    a = allocator(pool("first-pool", "192.168.10.0/24", "192.168.9.1-192.168.9.5", "fc00::/124"))
    assert run(a, svc("a")).ips == ["192.168.10.0"]
    assert a.pools["first-pool"].size == 256 + 5
    assert run(a, svc("b", loadBalancerIP="192.168.9.5")).ips == ["192.168.9.5"]


def test_pool_flags_and_size() -> None:
    p = parse_pool(pool("p", "10.0.0.0/23", avoidBuggyIPs=True, autoAssign=False))
    assert (p.auto_assign, p.avoid_buggy_ips, p.size) == (False, True, 512 - 4)
    assert not p.contains(0x0A000000) and not p.contains(0x0A0000FF) and p.contains(0x0A000001)
    assert parse_pool(pool("q", "10.0.0.0/23")).size == 512


@pytest.mark.parametrize(
    "spec",
    [
        {"addresses": "10.0.0.0/24"},
        {"addresses": []},
        {"addresses": ["10.0.0.0/24"], "autoAssign": "yes"},
        {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"priority": "1"}},
        {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"namespaces": "a"}},
        {"addresses": ["10.0.0.0/24", "10.0.0.128/25"]},
        None,
    ],
)
def test_unusable_pools(spec: Any) -> None:
    with pytest.raises(PoolError):
        parse_pool({"metadata": {"name": "p"}, "spec": spec})


def test_overlapping_pools_the_older_wins() -> None:
    a = allocator(
        pool("new", "10.0.0.128/25", created="2026-01-02T00:00:00Z"),
        pool("old", "10.0.0.0/24", created="2026-01-01T00:00:00Z"),
    )
    assert list(a.pools) == ["old"]
    assert "overlaps with already defined CIDR" in a.invalid["new"]


def test_netplan_pool_stays_clear_of_nodes_and_hosts() -> None:
    net = ClusterNet("c", "172.31.7.0/24")
    assert lb_pool_range(net) == "172.31.7.240-172.31.7.254"
    p = parse_pool(pool("default", lb_pool_range(net)))
    assert p.size == 15 and not p.contains(0xAC1F07FF)


# -- allocation --------------------------------------------------------------------------


def test_first_free_address_and_event_wording() -> None:
    a = allocator(pool("default", "10.0.0.240-10.0.0.241"))
    out = run(a, svc("one"))
    assert out.ips == ["10.0.0.240"] and out.pool == "default"
    assert out.events == [("Normal", "IPAllocated", 'Assigned IP ["10.0.0.240"]')]
    assert run(a, svc("two")).ips == ["10.0.0.241"]
    out = run(a, svc("three"))
    assert out.ips == [] and out.failed
    assert out.events == [
        (
            "Warning",
            "AllocationFailed",
            'Failed to allocate IP for "default/three": no available IPs',
        )
    ]
    # a Service holding an IP keeps it on every converge, with no new event
    again = run(a, svc("one", status_ip="10.0.0.240"))
    assert again.ips == ["10.0.0.240"] and again.events == []
    # freed on type change: the next one gets it
    assert run(a, svc("one", type="ClusterIP")).ips == []
    assert run(a, svc("three")).ips == ["10.0.0.240"]


def test_avoid_buggy_ips() -> None:
    a = allocator(pool("p", "10.0.0.255-10.0.1.1", avoidBuggyIPs=True))
    assert run(a, svc("a")).ips == ["10.0.1.1"]
    out = run(a, svc("b", loadBalancerIP="10.0.1.0"))
    assert out.events[0][2].endswith('["10.0.1.0"] is not allowed in config')


def test_requested_ips() -> None:
    a = allocator(pool("p", "10.0.0.0/24"), pool("manual", "10.0.1.0/24", autoAssign=False))
    assert run(a, svc("a", loadBalancerIP="10.0.0.7")).ips == ["10.0.0.7"]
    ann = {"metallb.io/loadBalancerIPs": "10.0.1.9"}
    assert run(a, svc("b", annotations=ann)).ips == ["10.0.1.9"]  # autoAssign: false is fine
    old = {"metallb.universe.tf/loadBalancerIPs": "10.0.0.8"}
    assert run(a, svc("c", annotations=old)).ips == ["10.0.0.8"]
    # taken
    out = run(a, svc("d", loadBalancerIP="10.0.0.7"))
    assert out.ips == [] and "address also in use by default/a" in out.events[0][2]
    # outside every pool
    out = run(a, svc("e", loadBalancerIP="192.0.2.1"))
    assert out.events[0][2] == (
        'Failed to allocate IP for "default/e": ["192.0.2.1"] is not allowed in config'
    )
    # both spellings of a request, an IPv6 one, garbage
    both = svc("f", annotations=ann, loadBalancerIP="10.0.0.9")
    assert "service can not have both metallb.io/loadBalancerIPs" in run(a, both).events[0][2]
    v6 = run(a, svc("g", annotations={"metallb.io/loadBalancerIPs": "fc00::1"}))
    assert "does not match the ipFamily of the service" in v6.events[0][2]
    bad = run(a, svc("h", annotations={"metallb.io/loadBalancerIPs": "nope"}))
    assert 'invalid metallb.io/loadBalancerIPs: "nope"' in bad.events[0][2]
    # a changed request moves the Service
    assert run(a, svc("a", loadBalancerIP="10.0.0.20", status_ip="10.0.0.7")).ips == ["10.0.0.20"]
    assert a.ip("default/a") == "10.0.0.20"


def test_address_pool_annotation() -> None:
    a = allocator(pool("a", "10.0.0.0/24"), pool("b", "10.0.1.0/24", autoAssign=False))
    assert run(a, svc("x", annotations={"metallb.io/address-pool": "b"})).ips == ["10.0.1.0"]
    old = {"metallb.universe.tf/address-pool": "b"}
    assert run(a, svc("y", annotations=old)).ips == ["10.0.1.1"]
    out = run(a, svc("z", annotations={"metallb.io/address-pool": "nope"}))
    assert out.events[0][2].endswith('unknown pool "nope"')
    both = {"metallb.io/address-pool": "a", "metallb.io/loadBalancerIPs": "10.0.1.5"}
    out = run(a, svc("w", annotations=both))
    assert "is not compatible with requested address pool a" in out.events[0][2]
    assert a.ip("default/w") is None
    # moving a Service to another pool
    moved = run(a, svc("x", annotations={"metallb.io/address-pool": "a"}, status_ip="10.0.1.0"))
    assert moved.ips == ["10.0.0.0"] and moved.pool == "a"


def test_pool_exhaustion_names_the_pool() -> None:
    a = allocator(pool("tiny", "10.0.0.1/32"))
    ann = {"metallb.io/address-pool": "tiny"}
    assert run(a, svc("a", annotations=ann)).ips == ["10.0.0.1"]
    out = run(a, svc("b", annotations=ann))
    assert out.events[0][2].endswith('no available IPs in pool "tiny"')


def test_priority_and_selectors() -> None:
    a = allocator(
        pool("general", "10.0.0.0/24"),
        pool("low", "10.0.1.0/24", serviceAllocation={"priority": 20, "namespaces": ["team"]}),
        pool("high", "10.0.2.0/24", serviceAllocation={"priority": 10, "namespaces": ["team"]}),
        pool(
            "labelled",
            "10.0.3.0/24",
            serviceAllocation={
                "namespaceSelectors": [{"matchLabels": {"tier": "gold"}}],
                "serviceSelectors": [{"matchExpressions": [{"key": "app", "operator": "Exists"}]}],
            },
        ),
    )
    assert run(a, svc("x", ns="team")).ips == ["10.0.2.0"]
    assert run(a, svc("y", ns="other")).ips == ["10.0.0.0"]
    gold = {"tier": "gold"}
    assert run(a, svc("z", ns="shop", labels={"app": "z"}), gold).ips == ["10.0.3.0"]
    assert run(a, svc("w", ns="shop"), gold).ips == ["10.0.0.1"]  # no app label
    # a requested IP in a pool that does not admit the Service
    out = run(a, svc("v", ns="other", loadBalancerIP="10.0.2.9"))
    assert out.events[0][2].endswith("pool high not compatible for ip assignment")
    # once a pool is full, the next in priority
    tiny = allocator(
        pool("first", "10.0.5.1/32", serviceAllocation={"priority": 1, "namespaces": ["t"]}),
        pool("second", "10.0.6.1/32", serviceAllocation={"priority": 2, "namespaces": ["t"]}),
    )
    assert run(tiny, svc("a", ns="t")).ips == ["10.0.5.1"]
    assert run(tiny, svc("b", ns="t")).ips == ["10.0.6.1"]
    assert run(tiny, svc("c", ns="u")).failed


def test_sharing() -> None:
    a = allocator(pool("p", "10.0.0.1-10.0.0.3"))
    share = {"metallb.io/allow-shared-ip": "k"}
    assert run(a, svc("a", 80, annotations=share)).ips == ["10.0.0.1"]
    assert run(a, svc("b", 443, annotations=share)).ips == ["10.0.0.1"]  # same key, other port
    assert run(a, svc("c", 443, annotations=share)).ips == ["10.0.0.2"]  # port taken there
    old = {"metallb.universe.tf/allow-shared-ip": "k"}
    assert run(a, svc("d", 8080, annotations=old)).ips == ["10.0.0.1"]
    assert run(a, svc("e", 9090)).ips == ["10.0.0.3"]  # no key: never shares
    out = run(a, svc("f", 9091, annotations=share, loadBalancerIP="10.0.0.3"))
    assert "address also in use by default/e" in out.events[0][2]
    out = run(a, svc("g", 80, annotations=share, loadBalancerIP="10.0.0.1"))
    assert out.events[0][2].endswith('port TCP/80 is already in use on "10.0.0.1"')
    # Local policy: only with the same pods behind it
    local = dict(externalTrafficPolicy="Local", selector={"app": "x"})
    b = allocator(pool("p", "10.0.0.1-10.0.0.2"))
    assert run(b, svc("l1", 80, annotations=share, **local)).ips == ["10.0.0.1"]
    assert run(b, svc("l2", 81, annotations=share, **local)).ips == ["10.0.0.1"]
    other = dict(externalTrafficPolicy="Local", selector={"app": "y"})
    assert run(b, svc("l3", 82, annotations=share, **other)).ips == ["10.0.0.2"]
    # freeing one user of a shared IP keeps it for the other
    assert run(a, svc("a", type="ClusterIP")).ips == []
    assert a.ip("default/b") == "10.0.0.1"
    assert run(a, svc("x", 80, annotations=share)).ips == ["10.0.0.1"]


def test_other_classes_and_types_are_left_alone() -> None:
    a = allocator(pool("p", "10.0.0.0/24"))
    assert run(a, svc("a", loadBalancerClass="example.com/lb")).ips == []
    assert a.allocated == {}
    assert read_service(svc("a", loadBalancerClass="example.com/lb")).load_balancer is False  # type: ignore[union-attr]


def test_pool_edit_moves_only_what_left_it() -> None:
    a = allocator(pool("p", "10.0.0.1-10.0.0.4"))
    assert run(a, svc("a")).ips == ["10.0.0.1"]
    assert run(a, svc("b")).ips == ["10.0.0.2"]
    released = a.set_pools(build_pools([parse_pool(pool("p", "10.0.0.2-10.0.0.6"))]))
    assert released == ["default/a"]
    out = run(a, svc("a", status_ip="10.0.0.1"))
    assert out.ips == ["10.0.0.3"]
    assert out.events[0][1] == "ClearAssignment"
    assert run(a, svc("b", status_ip="10.0.0.2")).ips == ["10.0.0.2"]


def test_an_invalid_pool_takes_no_address_away() -> None:
    a = allocator(pool("p", "10.0.0.0/24"), pool("q", "10.0.1.0/24"))
    assert run(a, svc("a", loadBalancerIP="10.0.1.5")).ips == ["10.0.1.5"]
    released = a.set_pools(
        build_pools([parse_pool(pool("p", "10.0.0.0/24")), ("q", "invalid CIDR")])
    )
    assert released == []
    # after a restart: held again from the Service's status while q is broken
    b = Allocator()
    b.set_pools(build_pools([parse_pool(pool("p", "10.0.0.0/24")), ("q", "invalid CIDR")]))
    out = run(b, svc("a", status_ip="10.0.1.5"))
    assert out.ips == ["10.0.1.5"] and out.events == []
    # nobody else gets it meanwhile
    assert run(b, svc("z", loadBalancerIP="10.0.1.5")).failed


# -- hostile input -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
addresses = st.one_of(
    st.sampled_from(
        ["10.0.0.0/30", "10.0.0.1-10.0.0.2", "10.0.0.255/32", "0.0.0.0/0", "::/0", "1-2", "/", "-"]
    ),
    st.text(max_size=30),
    json_values,
)
pools = st.builds(
    lambda name, addrs, extra: pool(name, *addrs, **extra),
    st.sampled_from(["a", "b", "c"]),
    st.lists(addresses, max_size=4),
    st.dictionaries(
        st.sampled_from(["autoAssign", "avoidBuggyIPs", "serviceAllocation"]), json_values
    ),
)
services = st.builds(
    lambda name, ports, ann, spec, status: {
        "metadata": {"name": name, "namespace": "default", "annotations": ann},
        "spec": {"type": "LoadBalancer", "ports": ports, **spec},
        "status": status,
    },
    st.sampled_from(["s1", "s2", "s3"]),
    json_values,
    st.dictionaries(
        st.sampled_from(
            [
                "metallb.io/loadBalancerIPs",
                "metallb.io/address-pool",
                "metallb.io/allow-shared-ip",
                "metallb.universe.tf/allow-shared-ip",
            ]
        ),
        st.sampled_from(["10.0.0.1", "10.0.0.2", "a", "k", "fc00::1", "10.0.0.1,10.0.0.2", ""]),
    ),
    st.dictionaries(
        st.sampled_from(["loadBalancerIP", "loadBalancerClass", "externalTrafficPolicy", "type"]),
        json_values | st.sampled_from(["10.0.0.2", "Local", "LoadBalancer"]),
    ),
    json_values | st.just({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(pools | json_values, max_size=4), st.lists(services | json_values, max_size=6))
def test_hostile_pools_and_services_never_raise(raw_pools: list[Any], raw_svcs: list[Any]) -> None:
    parsed: list[Any] = []
    for p in raw_pools:
        try:
            parsed.append(parse_pool(p))
        except PoolError as e:
            parsed.append(("x", str(e)))
    a = Allocator()
    a.set_pools(build_pools(parsed))
    for s in raw_svcs:
        req = read_service(s)
        if req is None:
            continue
        out = converge(a, req, {})
        for ip in out.ips:
            assert a.ip(req.key) == ip or not req.load_balancer
    # no IP is held by two Services that may not share it
    for ip, keys in a.on_ip.items():
        allocs = [a.allocated[k] for k in keys]
        if len(allocs) > 1:
            assert all(x.sharing_key and x.sharing_key == allocs[0].sharing_key for x in allocs)
            ports = [p for x in allocs for p in x.ports]
            assert len(ports) == len(set(ports)), ip


def test_kinds_match_metallbs_crds() -> None:
    by_name = {c["metadata"]["name"]: c for c in metallb.crds()}
    for kind in (metallb.IP_ADDRESS_POOL, metallb.L2_ADVERTISEMENT):
        crd = by_name[f"{kind.plural}.{kind.group}"]["spec"]
        assert (crd["names"]["kind"], crd["names"]["singular"]) == (kind.kind, kind.singular)
        assert kind.version in [v["name"] for v in crd["versions"] if v["served"]]
    assert parse_pool(metallb.default_pool("10.1.2.240-10.1.2.254")).size == 15


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(), st.integers(0, 11), st.sampled_from(["", "k"]), st.sampled_from([80, 81])
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_search_from_the_first_free_address_is_the_full_walk(
    ops: list[tuple[bool, int, str, int]], avoid_buggy: bool
) -> None:
    """The allocator starts looking where every earlier address is held; it must pick what
    walking the whole pool would (the first address the Service may have, in pool order)."""
    a = allocator(pool("p", "10.0.1.250-10.0.2.3", "10.0.0.5/32", avoidBuggyIPs=avoid_buggy))
    p = a.pools["p"]
    for create, i, key, port in ops:
        if not create:
            run(a, svc(f"s{i}", port, type="ClusterIP"))
            continue
        obj = svc(f"s{i}", port, annotations={"metallb.io/allow-shared-ip": key} if key else {})
        req = read_service(obj)
        assert req is not None
        a.unassign(req.key)
        walk = next((ip for _, ip in p.addresses() if a.check_sharing(req, ip) is None), None)
        out = converge(a, req, {})
        assert (out.ips or [None])[0] == (ip_text(walk) if walk is not None else None)
