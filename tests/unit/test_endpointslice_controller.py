"""Pure parts of the EndpointSlice and mirroring controllers: desired endpoints, the
reconciler's create/update/delete decisions, and the stale-cache tracker."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from kubesvc.controllers import endpointutil as eu
from kubesvc.controllers.endpointslice import (
    CONTROLLER_NAME,
    desired_slices,
    reconcile_slices,
)
from kubesvc.controllers.endpointslice_mirroring import (
    CONTROLLER_NAME as MIRROR_NAME,
)
from kubesvc.controllers.endpointslice_mirroring import (
    mirror_slices,
    reconcile_mirrored,
    should_mirror,
)

Obj = dict[str, Any]
SEL = {"app": "web"}
NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}}
_names = itertools.count()


def svc(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"t": "1"}},
        "spec": {
            "selector": SEL,
            "clusterIP": "10.96.0.10",
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            **spec,
        },
    }


def pod(
    name: str,
    ip: str = "10.0.0.1",
    ready: bool = True,
    node: str = "n1",
    deleting: bool = False,
    ports: list[Obj] | None = None,
) -> Obj:
    p: Obj = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": SEL},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return p


def pods(n: int, start: int = 0) -> list[Obj]:
    return [pod(f"p{i}", f"10.1.{i // 250}.{i % 250}") for i in range(start, start + n)]


def stored(body: Obj) -> Obj:
    """What the API server would hand back for a created slice."""
    s = copy.deepcopy(body)
    m = s["metadata"]
    if "name" not in m:
        m["name"] = m.pop("generateName") + f"x{next(_names)}"
    m.setdefault("uid", f"uid-{m['name']}")
    m["resourceVersion"] = str(next(_names))
    m["generation"] = 1
    return s


def converge(service: Obj, the_pods: list[Obj], existing: list[Obj]) -> list[Obj]:
    """Apply reconcile results the way the API server would."""
    changes = reconcile_slices(service, desired_slices(service, the_pods, NODES), existing)
    by_name = {s["metadata"]["name"]: s for s in existing}
    for s in changes.delete:
        del by_name[s["metadata"]["name"]]
    for s in changes.update:
        by_name[s["metadata"]["name"]] = stored(s)
    for s in changes.create:
        new = stored(s)
        by_name[new["metadata"]["name"]] = new
    return list(by_name.values())


def endpoint_ips(slices: list[Obj]) -> list[str]:
    return sorted(e["addresses"][0] for s in slices for e in s.get("endpoints") or [])


# -- desired endpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "service", "want"),
    [
        pytest.param(
            pod("a"), svc(), {"ready": True, "serving": True, "terminating": False}, id="ready"
        ),
        pytest.param(
            pod("a", ready=False),
            svc(),
            {"ready": False, "serving": False, "terminating": False},
            id="unready",
        ),
        pytest.param(
            pod("a", deleting=True),
            svc(),
            {"ready": False, "serving": True, "terminating": True},
            id="terminating-serving",
        ),
        pytest.param(
            pod("a", deleting=True, ready=False),
            svc(publishNotReadyAddresses=True),
            {"ready": True, "serving": False, "terminating": True},
            id="publish-not-ready",
        ),
    ],
)
def test_conditions(p: Obj, service: Obj, want: Obj) -> None:
    [group] = desired_slices(service, [p], NODES).groups
    [ep] = group.endpoints
    assert ep["conditions"] == want


def test_endpoint_fields() -> None:
    p = pod("a")
    p["spec"].update(hostname="h", subdomain="web")
    [group] = desired_slices(svc(), [p], NODES).groups
    assert group.ports == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert group.endpoints == [
        {
            "addresses": ["10.0.0.1"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": "n1",
            "zone": "z1",
            "hostname": "h",
            "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
        }
    ]


def test_pods_on_unknown_nodes_are_skipped_unless_published() -> None:
    the_pods = [pod("a"), pod("b", "10.0.0.2", node="gone"), pod("c", "10.0.0.3", node="")]
    desired = desired_slices(svc(), the_pods, NODES)
    assert [e["addresses"] for e in desired.groups[0].endpoints] == [["10.0.0.1"]]
    assert desired.skipped_pods == ["b", "c"]
    published = desired_slices(svc(publishNotReadyAddresses=True), the_pods, NODES)
    assert len(published.groups[0].endpoints) == 3


def test_terminal_and_ipless_pods_left_out() -> None:
    done = pod("a")
    done["status"]["phase"] = "Succeeded"
    no_ip = pod("b")
    no_ip["status"] = {"phase": "Pending"}
    assert desired_slices(svc(), [done, no_ip], NODES).groups == []


def test_groups_by_resolved_ports() -> None:
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    the_pods = [
        pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 9090}]),
        pod("c", "10.0.0.3", ports=[{"name": "web", "containerPort": 8080}]),
        pod("d", "10.0.0.4"),
    ]
    groups = desired_slices(service, the_pods, NODES).groups
    got = {
        tuple(p["port"] for p in g.ports): [e["addresses"][0] for e in g.endpoints] for g in groups
    }
    assert got == {
        (8080,): ["10.0.0.1", "10.0.0.3"],
        (9090,): ["10.0.0.2"],
        (): ["10.0.0.4"],
    }


# -- reconciling -------------------------------------------------------------------------------
def test_no_pods_gives_one_placeholder_and_keeps_it() -> None:
    service = svc()
    changes = reconcile_slices(service, desired_slices(service, [], NODES), [])
    assert changes.update == [] and changes.delete == []
    [placeholder] = changes.create
    assert placeholder["endpoints"] == [] and placeholder["ports"] == []
    assert placeholder["addressType"] == "IPv4"
    m = placeholder["metadata"]
    assert m["generateName"] == "web-"
    assert m["labels"] == {
        "t": "1",
        eu.LABEL_SERVICE_NAME: "web",
        eu.LABEL_MANAGED_BY: CONTROLLER_NAME,
    }
    assert m["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": "svc-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    existing = [stored(placeholder)]
    assert not reconcile_slices(service, desired_slices(service, [], NODES), existing)


def test_placeholder_is_reused_for_the_first_endpoints_and_comes_back() -> None:
    service = svc()
    slices = converge(service, [], [])
    name = slices[0]["metadata"]["name"]
    changes = reconcile_slices(service, desired_slices(service, [pod("a")], NODES), slices)
    assert changes.create == [] and changes.delete == []
    [updated] = changes.update
    assert updated["metadata"]["name"] == name
    assert updated["metadata"]["resourceVersion"] == slices[0]["metadata"]["resourceVersion"]
    slices = converge(service, [pod("a")], slices)
    changes = reconcile_slices(service, desired_slices(service, [], NODES), slices)
    # the last endpoint going away turns the slice back into the placeholder
    assert [s["metadata"]["name"] for s in changes.update] == [name]
    assert changes.update[0]["endpoints"] == [] and changes.update[0]["ports"] == []


def test_max_100_per_slice_and_minimal_churn() -> None:
    service = svc()
    slices = converge(service, pods(250), [])
    assert sorted(len(s["endpoints"]) for s in slices) == [50, 100, 100]
    assert len(endpoint_ips(slices)) == 250
    # nothing changed: nothing to do
    assert not reconcile_slices(service, desired_slices(service, pods(250), NODES), slices)
    # one pod goes: only its slice is updated
    fewer = [p for p in pods(250) if p["metadata"]["name"] != "p7"]
    changes = reconcile_slices(service, desired_slices(service, fewer, NODES), slices)
    assert changes.create == [] and changes.delete == []
    [upd] = changes.update
    assert len(upd["endpoints"]) == 99
    # one pod changes readiness: only its slice is updated, in place
    flipped = pods(250)
    flipped[120]["status"]["conditions"][0]["status"] = "False"
    changes = reconcile_slices(service, desired_slices(service, flipped, NODES), slices)
    assert (len(changes.create), len(changes.update), len(changes.delete)) == (0, 1, 0)
    # a few new pods fit in the slice with room instead of a new slice
    changes = reconcile_slices(service, desired_slices(service, pods(260), NODES), slices)
    assert changes.create == [] and len(changes.update) == 1
    assert len(changes.update[0]["endpoints"]) == 60


def test_service_label_change_updates_every_slice() -> None:
    service = svc()
    slices = converge(service, pods(150), [])
    service["metadata"]["labels"] = {"t": "2", eu.LABEL_MANAGED_BY: "ignored"}
    changes = reconcile_slices(service, desired_slices(service, pods(150), NODES), slices)
    assert len(changes.update) == 2 and not changes.create and not changes.delete
    for s in changes.update:
        assert s["metadata"]["labels"]["t"] == "2"
        assert s["metadata"]["labels"][eu.LABEL_MANAGED_BY] == CONTROLLER_NAME


def test_port_change_reuses_slices() -> None:
    service = svc()
    slices = converge(service, pods(3), [])
    service["spec"]["ports"][0]["targetPort"] = 9090
    changes = reconcile_slices(service, desired_slices(service, pods(3), NODES), slices)
    assert changes.create == [] and changes.delete == []
    [upd] = changes.update
    assert upd["metadata"]["name"] == slices[0]["metadata"]["name"]
    assert upd["ports"] == [{"name": "http", "port": 9090, "protocol": "TCP"}]


def test_foreign_and_wrong_family_slices_are_deleted() -> None:
    service = svc()
    [mine] = converge(service, pods(2), [])
    foreign = copy.deepcopy(mine)
    foreign["metadata"].update(name="old", uid="u-old")
    foreign["metadata"]["ownerReferences"][0]["uid"] = "previous-service"
    v6 = copy.deepcopy(mine)
    v6["metadata"].update(name="v6", uid="u-v6")
    v6["addressType"] = "IPv6"
    changes = reconcile_slices(
        service, desired_slices(service, pods(2), NODES), [mine, foreign, v6]
    )
    assert sorted(s["metadata"]["name"] for s in changes.delete) == ["old", "v6"]
    assert not changes.create and not changes.update


def test_headless_label_and_dual_families() -> None:
    service = svc(clusterIP="None", ipFamilies=["IPv4", "IPv6"])
    p = pod("a")
    p["status"]["podIPs"] = [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]
    slices = converge(service, [p], [])
    assert sorted((s["addressType"], endpoint_ips([s])[0]) for s in slices) == [
        ("IPv4", "10.0.0.1"),
        ("IPv6", "fd00::1"),
    ]
    assert all(s["metadata"]["labels"][eu.LABEL_HEADLESS] == "" for s in slices)


# -- tracker ---------------------------------------------------------------------------------
def _slice(uid: str, gen: int) -> Obj:
    return {
        "metadata": {
            "name": uid,
            "namespace": "ns",
            "uid": uid,
            "generation": gen,
            "labels": {eu.LABEL_SERVICE_NAME: "web"},
        }
    }


def test_tracker() -> None:
    t = eu.SliceTracker()
    assert not t.stale("ns/web", [])
    t.update(_slice("a", 2))
    assert t.stale("ns/web", [])  # our create is not in the cache yet
    assert t.stale("ns/web", [_slice("a", 1)])  # nor our update
    assert not t.stale("ns/web", [_slice("a", 2)])
    assert not t.should_sync(_slice("a", 2)) and t.should_sync(_slice("a", 3))
    t.expect_deletion(_slice("a", 2))
    assert t.stale("ns/web", [_slice("a", 2)])
    assert t.handle_deletion(_slice("a", 2))  # we deleted it
    assert not t.stale("ns/web", [])
    t.update(_slice("b", 1))
    assert not t.handle_deletion(_slice("b", 1))  # someone else did


# -- mirroring -------------------------------------------------------------------------------
def endpoints(subsets: list[Obj], labels: Obj | None = None, annotations: Obj | None = None) -> Obj:
    m: Obj = {"name": "ext", "namespace": "ns", "uid": "ep-uid"}
    if labels:
        m["labels"] = labels
    if annotations:
        m["annotations"] = annotations
    return {"metadata": m, "subsets": subsets}


@pytest.mark.parametrize(
    ("ep", "want"),
    [
        pytest.param(endpoints([]), True, id="plain"),
        pytest.param(None, False, id="missing"),
        pytest.param(endpoints([], {eu.LABEL_SKIP_MIRROR: "true"}), False, id="skip-mirror"),
        pytest.param(endpoints([], {eu.LABEL_SKIP_MIRROR: "false"}), True, id="skip-false"),
        pytest.param(endpoints([], None, {eu.ANNOTATION_LEADER: "{}"}), False, id="leader"),
    ],
)
def test_should_mirror(ep: Obj | None, want: bool) -> None:
    assert should_mirror(ep) is want


def test_mirror_groups_and_fields() -> None:
    ep = endpoints(
        [
            {
                "addresses": [
                    {"ip": "192.0.2.1", "nodeName": "n1", "hostname": "h"},
                    {"ip": "2001:db8::1"},
                    {"ip": "not-an-ip"},
                ],
                "notReadyAddresses": [{"ip": "192.0.2.2"}],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
            {"addresses": [{"ip": "192.0.2.3"}], "ports": [{"port": 53, "protocol": "UDP"}]},
        ],
        labels={"team": "a"},
        annotations={eu.ANNOTATION_LAST_APPLIED: "{}", eu.ANNOTATION_TRIGGER_TIME: "t", "x": "y"},
    )
    desired = mirror_slices(ep)
    assert desired.invalid == 1 and desired.skipped == 1
    got = {
        (g.address_type, tuple(p["port"] for p in g.ports)): [
            (e["addresses"][0], e["conditions"]["ready"]) for e in g.endpoints
        ]
        for g in desired.groups
    }
    assert got == {
        ("IPv4", (80,)): [("192.0.2.1", True), ("192.0.2.2", False)],
        ("IPv6", (80,)): [("2001:db8::1", True)],
        ("IPv4", (53,)): [("192.0.2.3", True)],
    }
    changes = reconcile_mirrored(ep, desired, [])
    assert len(changes.create) == 3 and not changes.update and not changes.delete
    s = next(c for c in changes.create if c["ports"][0]["port"] == 53)
    assert s["ports"] == [{"name": "", "port": 53, "protocol": "UDP"}]
    m = s["metadata"]
    assert m["labels"] == {
        "team": "a",
        eu.LABEL_SERVICE_NAME: "ext",
        eu.LABEL_MANAGED_BY: MIRROR_NAME,
    }
    assert m["annotations"] == {"x": "y"}
    assert m["ownerReferences"][0]["kind"] == "Endpoints"
    assert m["ownerReferences"][0]["uid"] == "ep-uid"
    v4 = next(
        c for c in changes.create if c["ports"][0]["port"] == 80 and c["addressType"] == "IPv4"
    )
    assert v4["endpoints"][0] == {
        "addresses": ["192.0.2.1"],
        "conditions": {"ready": True},
        "nodeName": "n1",
        "hostname": "h",
    }


def test_mirror_caps_addresses_per_subset() -> None:
    addrs = [{"ip": f"10.9.{i // 250}.{i % 250}"} for i in range(1005)]
    desired = mirror_slices(endpoints([{"addresses": addrs, "ports": [{"port": 80}]}]))
    assert desired.skipped == 5 and desired.invalid == 0
    assert len(desired.groups[0].endpoints) == 1000


def test_mirror_reconcile_noop_update_and_delete() -> None:
    subset = {"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}
    ep = endpoints([subset])
    [created] = reconcile_mirrored(ep, mirror_slices(ep), []).create
    existing = [stored(created)]
    assert not reconcile_mirrored(ep, mirror_slices(ep), existing)
    # a second copy of the same group is deleted, the first is kept
    dup = stored(created)
    changes = reconcile_mirrored(ep, mirror_slices(ep), [*existing, dup])
    assert [s["metadata"]["name"] for s in changes.delete] == [dup["metadata"]["name"]]
    # a changed address updates the slice in place
    ep2 = endpoints([{**subset, "addresses": [{"ip": "192.0.2.9"}]}])
    changes = reconcile_mirrored(ep2, mirror_slices(ep2), existing)
    [upd] = changes.update
    assert upd["metadata"]["name"] == existing[0]["metadata"]["name"]
    assert upd["endpoints"][0]["addresses"] == ["192.0.2.9"]
    # a label change on the Endpoints is mirrored too
    ep3 = endpoints([subset], labels={"new": "1"})
    assert len(reconcile_mirrored(ep3, mirror_slices(ep3), existing).update) == 1
    # new ports: the old slice is recycled rather than deleted and recreated
    ep4 = endpoints([{**subset, "ports": [{"port": 81, "protocol": "TCP"}]}])
    changes = reconcile_mirrored(ep4, mirror_slices(ep4), existing)
    assert not changes.create and not changes.delete
    assert changes.update[0]["ports"][0]["port"] == 81
    # no subsets: the slice goes
    empty = endpoints([])
    changes = reconcile_mirrored(empty, mirror_slices(empty), existing)
    assert changes.delete == existing and not changes.create
