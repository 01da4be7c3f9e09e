"""The layer-2 election (kubesvc/speaker/model.py): MetalLB's choice of announcing node,
its eligibility rules, and hostile objects that must never stop it.

IP plan: node network 172.31.7.0/24, pool .240-.254, nodes n1..n3.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.speaker import model
from kubesvc.speaker.model import Inputs, decide, ranking

NET = "172.31.7.0/24"
NODES = ("n1", "n2", "n3")


def svc(name: str, ip: str | None = "172.31.7.240", **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "default", "name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec},
    }
    if ip is not None:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
    return obj


def slc(service: str, nodes: list[str], ready: bool | None = True) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    return {
        "metadata": {
            "namespace": "default",
            "name": f"{service}-abc",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [f"10.244.{i}.5"], "nodeName": n, "conditions": conditions}
            for i, n in enumerate(nodes)
        ],
    }


def node(name: str, ready: str = "True", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def pool(name: str = "default", *addresses: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "metallb-system", "labels": labels},
        "spec": {"addresses": list(addresses or ["172.31.7.240-172.31.7.254"])},
    }


def l2adv(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "metallb-system"}, "spec": spec}


def elect(
    services: list[Any],
    slices: list[Any] | None = None,
    nodes: list[Any] | None = None,
    pools: list[Any] | None = None,
    advs: list[Any] | None = None,
    alive: tuple[str, ...] = NODES,
) -> dict[str, model.Decision]:
    inputs = Inputs.build(
        services=services,
        slices=[slc("web", list(NODES))] if slices is None else slices,
        nodes=[node(n) for n in NODES] if nodes is None else nodes,
        pools=[pool()] if pools is None else pools,
        advertisements=[l2adv()] if advs is None else advs,
    )
    return {d.service: d for d in decide(inputs, alive, NET)}


def owner_by_hash(ip: str, nodes: tuple[str, ...] = NODES) -> str:
    return min(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


def test_the_winner_is_metallbs_first_by_sha256_of_node_and_ip() -> None:
    for last in range(240, 255):
        ip = f"172.31.7.{last}"
        d = elect([svc("web", ip)])["default/web"]
        assert d.node == owner_by_hash(ip)
        assert d.ips == (ip,)


def test_the_ips_spread_over_the_nodes() -> None:
    owners = {elect([svc("web", f"172.31.7.{i}")])["default/web"].node for i in range(240, 255)}
    assert owners == set(NODES)


def test_every_speaker_elects_the_same_node_whatever_the_order() -> None:
    ip = "172.31.7.241"
    assert ranking(["n3", "n1", "n2"], ip) == ranking(["n2", "n3", "n1"], ip)
    a = elect([svc("web", ip)], nodes=[node(n) for n in NODES])
    b = elect([svc("web", ip)], nodes=[node(n) for n in reversed(NODES)], alive=NODES[::-1])
    assert a == b


def test_a_dead_speaker_loses_its_ips_to_the_next_in_line() -> None:
    ip = "172.31.7.242"
    first, second = ranking(NODES, ip)[:2]
    alive = tuple(n for n in NODES if n != first)
    assert elect([svc("web", ip)], alive=alive)["default/web"].node == second


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"ready": "False"}, "NotReady", id="not-ready"),
        pytest.param({"ready": "Unknown"}, "Unknown", id="unknown"),
        pytest.param({model.EXCLUDE_LABEL: ""}, "excluded", id="exclude-label"),
    ],
)
def test_ineligible_nodes_never_win(changes: dict[str, str], reason: str) -> None:
    ip = "172.31.7.243"
    first = ranking(NODES, ip)[0]
    nodes = [node(n, **changes) if n == first else node(n) for n in NODES]
    assert elect([svc("web", ip)], nodes=nodes)["default/web"].node not in ("", first)


def test_network_unavailable_nodes_never_win() -> None:
    ip = "172.31.7.243"
    first = ranking(NODES, ip)[0]
    nodes = [node(n) for n in NODES]
    for n in nodes:
        if n["metadata"]["name"] == first:
            n["status"]["conditions"].append({"type": "NetworkUnavailable", "status": "True"})
    assert elect([svc("web", ip)], nodes=nodes)["default/web"].node not in ("", first)


def test_a_node_without_a_node_object_never_wins() -> None:
    d = elect([svc("web")], nodes=[node("n1")], alive=("n1", "ghost"))
    assert d["default/web"].node == "n1"


def test_local_policy_only_nodes_with_a_serving_endpoint() -> None:
    for holder in NODES:
        d = elect(
            [svc("web", externalTrafficPolicy="Local")],
            slices=[slc("web", [holder])],
        )
        assert d["default/web"].node == holder
    # the holder's speaker is dead: nobody may announce (no other node has an endpoint)
    d = elect(
        [svc("web", externalTrafficPolicy="Local")],
        slices=[slc("web", ["n1"])],
        alive=("n2", "n3"),
    )
    assert d["default/web"].node == ""
    assert d["default/web"].reason == "noAvailableNodes"


def test_serving_as_metallb_endpoint_can_serve() -> None:
    # ready unknown counts; not ready but serving (terminating) counts; not ready does not
    assert elect([svc("web")], slices=[slc("web", ["n1"], ready=None)])["default/web"].node
    terminating = slc("web", ["n1"], ready=False)
    terminating["endpoints"][0]["conditions"]["serving"] = True
    assert elect([svc("web")], slices=[terminating])["default/web"].node
    d = elect([svc("web")], slices=[slc("web", ["n1"], ready=False)])["default/web"]
    assert (d.node, d.reason) == ("", "noEndpoints")


def test_no_endpoints_no_announcement() -> None:
    d = elect([svc("web")], slices=[])["default/web"]
    assert (d.node, d.reason) == ("", "noEndpoints")


def test_node_selectors_of_the_advertisement() -> None:
    nodes = [node("n1"), node("n2", role="edge"), node("n3")]
    advs = [l2adv(nodeSelectors=[{"matchLabels": {"role": "edge"}}])]
    for last in range(240, 255):
        d = elect([svc("web", f"172.31.7.{last}")], nodes=nodes, advs=advs)["default/web"]
        assert d.node == "n2"
    expr = {"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["edge"]}]}
    d = elect([svc("web")], nodes=nodes, advs=[l2adv(nodeSelectors=[expr])])["default/web"]
    assert d.node in ("n1", "n3")


def test_pools_and_advertisements() -> None:
    pools = [pool("a", "172.31.7.240/29"), pool("b", "172.31.7.248-172.31.7.254", tier="x")]
    in_a, in_b = svc("a1", "172.31.7.241"), svc("b1", "172.31.7.250")
    slices = [slc("a1", list(NODES)), slc("b1", list(NODES))]
    only_a = elect([in_a, in_b], slices=slices, pools=pools, advs=[l2adv(ipAddressPools=["a"])])
    assert only_a["default/a1"].node and not only_a["default/b1"].node
    assert only_a["default/b1"].reason == "noL2Advertisement"
    by_label = [l2adv(ipAddressPoolSelectors=[{"matchLabels": {"tier": "x"}}])]
    d = elect([in_a, in_b], slices=slices, pools=pools, advs=by_label)
    assert not d["default/a1"].node and d["default/b1"].node
    d = elect([in_a, in_b], slices=slices, pools=pools, advs=[])
    assert {x.reason for x in d.values()} == {"noL2Advertisement"}


def test_an_ip_in_no_pool_is_not_announced() -> None:
    d = elect([svc("web", "172.31.7.200")])["default/web"]
    assert (d.node, d.reason) == ("", "ipNotAllowed")


def test_only_ips_in_the_node_network_are_announced() -> None:
    d = elect([svc("web", "192.168.1.240")], pools=[pool("p", "192.168.1.0/24")])["default/web"]
    assert (d.node, d.reason) == ("", "notInNodeNetwork")


def test_services_that_are_not_ours() -> None:
    services = [
        svc("other", loadBalancerClass="example.com/lb"),
        svc("np", type="NodePort"),
        svc("pending", ip=None),
        svc("v6", ip="fd00::1"),
    ]
    assert elect(services) == {}


def test_two_services_sharing_an_ip_are_announced_by_one_node() -> None:
    a, b = svc("web"), svc("web2")
    d = elect([a, b], slices=[slc("web", list(NODES)), slc("web2", list(NODES))])
    assert d["default/web"].node == d["default/web2"].node != ""
    assert model.announced_by(d.values(), d["default/web"].node) == {
        "default/web": ("172.31.7.240",),
        "default/web2": ("172.31.7.240",),
    }


def test_overlapping_pools_as_the_allocator_sees_them() -> None:
    # the older pool is in effect, the other is named as a problem
    older = pool("old", "172.31.7.240/28")
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = pool("new", "172.31.7.248/29")
    newer["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    inputs = Inputs.build(services=[svc("web", "172.31.7.250")], pools=[newer, older])
    assert set(inputs.pools) == {"old"}
    assert "IPAddressPool new" in inputs.problems


def test_a_bad_object_is_left_out_and_named_and_the_rest_elected() -> None:
    inputs = Inputs.build(
        services=[svc("web"), {"metadata": {"name": "x", "namespace": "default"}, "spec": 7}],
        slices=[slc("web", list(NODES)), {"metadata": 5}],
        nodes=[node(n) for n in NODES] + [{"metadata": {"name": "bad"}, "status": []}],
        pools=[pool(), pool("broken", "not-an-ip")],
        advertisements=[l2adv(), l2adv("x", ipAddressPools="default")],
    )
    assert set(inputs.problems) == {
        "Service default/x",
        "EndpointSlice ?",
        "Node bad",
        "IPAddressPool metallb-system/broken",
        "L2Advertisement metallb-system/x",
    }
    assert decide(inputs, NODES, NET)[0].node == owner_by_hash("172.31.7.240")


# -- hostile objects: anything at all, the election still runs ---------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def mangled(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """`base` with one field anywhere in it replaced by anything."""

    def paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [at]
        if isinstance(obj, dict):
            for k, v in obj.items():
                out += paths(v, (*at, k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                out += paths(v, (*at, i))
        return out

    import copy

    def put(path: tuple[Any, ...], value: Any) -> Any:
        if not path:
            return value
        obj = copy.deepcopy(base)
        target = obj
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        return obj

    return st.builds(put, st.sampled_from(paths(base)), json_values)


@settings(max_examples=300, deadline=None)
@given(
    bad_svc=mangled(svc("bad", "172.31.7.245")),
    bad_slice=mangled(slc("bad", ["n1"])),
    bad_node=mangled(node("n9")),
    bad_pool=mangled(pool("zz", "172.31.7.240/28")),
    bad_adv=mangled(l2adv("zz", ipAddressPools=["default"], nodeSelectors=[{}])),
)
def test_hostile_objects_never_stop_the_election(
    bad_svc: Any, bad_slice: Any, bad_node: Any, bad_pool: Any, bad_adv: Any
) -> None:
    inputs = Inputs.build(
        services=[bad_svc, svc("web")],
        slices=[bad_slice, slc("web", list(NODES))],
        nodes=[bad_node, *(node(n) for n in NODES)],
        pools=[bad_pool, pool()],
        advertisements=[bad_adv, l2adv()],
    )
    decisions = {d.service: d for d in decide(inputs, (*NODES, "n9"), NET)}
    assert decisions["default/web"].node in NODES
    for d in decisions.values():
        assert d.node == "" or d.node in (*NODES, "n9")
        assert all(ip.startswith("172.31.7.") for ip in d.ips)
