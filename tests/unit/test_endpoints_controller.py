"""Pure parts of the Endpoints controller and the shared endpoint helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubesvc.controllers import endpointutil as eu
from kubesvc.controllers.endpoints import (
    desired_endpoints,
    endpoints_to_write,
    repack_subsets,
    truncate_subsets,
)

Obj = dict[str, Any]


def svc(
    selector: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    name: str = "web",
    **spec: Any,
) -> Obj:
    s: Obj = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": "svc-uid",
            "creationTimestamp": "2024-01-01T00:00:00Z",
        },
        "spec": {
            "clusterIP": "10.96.0.10",
            "ipFamilies": ["IPv4"],
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]
            if ports is None
            else ports,
            **spec,
        },
    }
    if selector is not None:
        s["spec"]["selector"] = selector
    return s


def pod(
    name: str,
    ip: str | None = "10.0.0.1",
    ready: bool = True,
    phase: str = "Running",
    node: str = "n1",
    ports: list[Obj] | None = None,
    deleting: bool = False,
    **spec: Any,
) -> Obj:
    p: Obj = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"a": "b"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "ports": ports or []}],
            **spec,
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
    if ip:
        p["status"]["podIP"] = ip
        p["status"]["podIPs"] = [{"ip": ip}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return p


def ips(ep: Obj) -> tuple[list[str], list[str]]:
    ready, not_ready = [], []
    for ss in ep.get("subsets") or []:
        ready += [a["ip"] for a in ss.get("addresses") or []]
        not_ready += [a["ip"] for a in ss.get("notReadyAddresses") or []]
    return sorted(ready), sorted(not_ready)


SEL = {"a": "b"}


@pytest.mark.parametrize(
    "service",
    [
        pytest.param(svc(None), id="no-selector"),
        pytest.param(svc({}), id="empty-selector"),
        pytest.param(svc(SEL, type="ExternalName", externalName="x.example"), id="external-name"),
    ],
)
def test_services_left_alone(service: Obj) -> None:
    assert desired_endpoints(service, [pod("a")]) is None


@pytest.mark.parametrize(
    ("pods", "service", "want"),
    [
        pytest.param([], svc(SEL), ([], []), id="no-pods"),
        pytest.param(
            [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)],
            svc(SEL),
            (["10.0.0.1"], ["10.0.0.2"]),
            id="ready-and-unready",
        ),
        pytest.param(
            [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)],
            svc(SEL, publishNotReadyAddresses=True),
            (["10.0.0.1", "10.0.0.2"], []),
            id="publish-not-ready",
        ),
        pytest.param(
            [pod("a", phase="Succeeded"), pod("b", "10.0.0.2", phase="Failed")],
            svc(SEL),
            ([], []),
            id="terminal-excluded",
        ),
        pytest.param([pod("a", ip=None)], svc(SEL), ([], []), id="no-ip-excluded"),
        pytest.param([pod("a", deleting=True)], svc(SEL), ([], []), id="terminating-excluded"),
        pytest.param(
            [pod("a", deleting=True, ready=False)],
            svc(SEL, publishNotReadyAddresses=True),
            (["10.0.0.1"], []),
            id="terminating-published",
        ),
        pytest.param(
            [pod("a", ip="fd00::1")], svc(SEL), ([], []), id="no-ip-of-the-service-family"
        ),
    ],
)
def test_addresses(pods: list[Obj], service: Obj, want: tuple[list[str], list[str]]) -> None:
    ep = desired_endpoints(service, pods)
    assert ep is not None
    assert ips(ep) == want
    if want == ([], []):
        assert "subsets" not in ep


def test_address_fields() -> None:
    ep = desired_endpoints(svc(SEL), [pod("a")])
    assert ep is not None
    assert ep["metadata"] == {"name": "web", "namespace": "ns"}
    assert ep["subsets"] == [
        {
            "addresses": [
                {
                    "ip": "10.0.0.1",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        pytest.param({"hostname": "h", "subdomain": "web"}, "h", id="subdomain-matches"),
        pytest.param({"hostname": "h", "subdomain": "other"}, None, id="other-subdomain"),
        pytest.param({"hostname": "h"}, None, id="no-subdomain"),
        pytest.param({"subdomain": "web"}, None, id="no-hostname"),
    ],
)
def test_hostname(spec: Obj, want: str | None) -> None:
    ep = desired_endpoints(svc(SEL), [pod("a", **spec)])
    assert ep is not None
    assert ep["subsets"][0]["addresses"][0].get("hostname") == want


def test_named_target_port_resolved_per_pod() -> None:
    service = svc(
        SEL,
        ports=[
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
        ],
    )
    pods = [
        pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}]),
        pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 9090, "protocol": "TCP"}]),
        # a "dns" port of the wrong protocol does not count
        pod("c", "10.0.0.3", ports=[{"name": "dns", "containerPort": 53, "protocol": "TCP"}]),
        pod(
            "d",
            "10.0.0.4",
            ports=[
                {"name": "web", "containerPort": 8080, "protocol": "TCP"},
                {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
            ],
        ),
    ]
    ep = desired_endpoints(service, pods)
    assert ep is not None
    got = [
        (sorted(a["ip"] for a in ss["addresses"]), [(p["name"], p["port"]) for p in ss["ports"]])
        for ss in ep["subsets"]
    ]
    assert sorted(got) == [
        (["10.0.0.1", "10.0.0.4"], [("http", 8080)]),
        (["10.0.0.2"], [("http", 9090)]),
        (["10.0.0.4"], [("dns", 5353)]),
    ]


def test_sidecar_init_container_ports_count() -> None:
    p = pod("a")
    p["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "ports": [{"name": "m", "containerPort": 9}]},
        {"name": "init", "ports": [{"name": "n", "containerPort": 10}]},
    ]
    assert eu.find_port(p, {"targetPort": "m", "protocol": "TCP"}) == 9
    assert eu.find_port(p, {"targetPort": "n", "protocol": "TCP"}) is None
    assert eu.find_port(p, {"port": 80}) == 80


def test_repack_groups_identical_port_sets_and_not_ready_wins() -> None:
    a = {"ip": "10.0.0.1", "targetRef": {"uid": "a"}}
    b = {"ip": "10.0.0.2", "targetRef": {"uid": "b"}}
    p80 = {"port": 80, "protocol": "TCP"}
    p81 = {"name": "x", "port": 81, "protocol": "TCP"}
    subsets = [
        {"addresses": [b], "ports": [p80]},
        {"addresses": [a], "ports": [p80]},
        {"addresses": [a], "ports": [p81]},
        {"notReadyAddresses": [b], "ports": [p81]},
        {"addresses": [b], "ports": [p81]},
    ]
    assert repack_subsets(subsets) == [
        {"addresses": [a, b], "ports": [p80]},
        {"addresses": [a], "notReadyAddresses": [b], "ports": [p81]},
    ]


def test_headless_service() -> None:
    service = svc(SEL, ports=[], clusterIP="None")
    service["metadata"]["labels"] = {"app": "db"}
    ep = desired_endpoints(service, [pod("a")])
    assert ep is not None
    assert ep["metadata"]["labels"] == {"app": "db", eu.LABEL_HEADLESS: ""}
    assert ep["subsets"] == [{"addresses": [ep["subsets"][0]["addresses"][0]]}]
    # a ClusterIP Service without ports has nothing to publish
    assert "subsets" not in (desired_endpoints(svc(SEL, ports=[]), [pod("a")]) or {})


def _addrs(n: int, prefix: str) -> list[Obj]:
    return [{"ip": f"{prefix}.{i // 250}.{i % 250}"} for i in range(n)]


@pytest.mark.parametrize(
    ("ready", "not_ready", "want_ready", "want_not_ready"),
    [
        pytest.param(600, 300, 600, 300, id="under-capacity"),
        pytest.param(800, 400, 800, 200, id="not-ready-cut-first"),
        pytest.param(1200, 100, 1000, 0, id="ready-cut-and-no-not-ready"),
    ],
)
def test_truncate(ready: int, not_ready: int, want_ready: int, want_not_ready: int) -> None:
    half_r, half_n = ready // 2, not_ready // 2
    subsets = [
        {"addresses": _addrs(half_r, "10.1"), "notReadyAddresses": _addrs(half_n, "10.2")},
        {
            "addresses": _addrs(ready - half_r, "10.3"),
            "notReadyAddresses": _addrs(not_ready - half_n, "10.4"),
        },
    ]
    cut = truncate_subsets(subsets)
    assert cut == (ready + not_ready > 1000)
    got_r = sum(len(s.get("addresses") or []) for s in subsets)
    got_n = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    assert (got_r, got_n) == (want_ready, want_not_ready)


def test_over_capacity_annotation() -> None:
    pods = [pod(f"p{i}", f"10.1.{i // 250}.{i % 250}") for i in range(1001)]
    ep = desired_endpoints(svc(SEL), pods)
    assert ep is not None
    assert ep["metadata"]["annotations"] == {eu.ANNOTATION_OVER_CAPACITY: "truncated"}
    assert len(ips(ep)[0]) == 1000


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_endpoints_to_write_create_update_and_noop() -> None:
    service = svc(SEL)
    service["metadata"]["labels"] = {"app": "web"}
    desired = desired_endpoints(service, [pod("a")])
    assert desired is not None
    created = endpoints_to_write(None, desired, service, T0)
    assert created is not None
    assert created["metadata"]["labels"] == {"app": "web"}
    assert created["metadata"]["annotations"] == {
        eu.ANNOTATION_TRIGGER_TIME: "2024-01-01T00:00:00Z"
    }
    stored = {**created, "metadata": {**created["metadata"], "resourceVersion": "5"}}
    # pod resourceVersions in targetRef and the trigger time do not count as changes
    stored["subsets"][0]["addresses"][0]["targetRef"]["resourceVersion"] = "9"
    assert endpoints_to_write(stored, desired, service, None) is None
    # a label change on the Service is one
    service["metadata"]["labels"] = {"app": "web2"}
    changed = endpoints_to_write(stored, desired, service, None)
    assert changed is not None
    assert changed["metadata"]["labels"] == {"app": "web"}  # desired was computed before
    assert changed["metadata"]["resourceVersion"] == "5"
    assert "annotations" not in changed["metadata"]


def test_endpoints_to_write_clears_stale_over_capacity() -> None:
    service = svc(SEL)
    desired = desired_endpoints(service, [pod("a")])
    assert desired is not None
    stored = endpoints_to_write(None, desired, service, None)
    assert stored is not None
    stored["metadata"]["annotations"] = {eu.ANNOTATION_OVER_CAPACITY: "truncated", "x": "y"}
    fixed = endpoints_to_write(stored, desired, service, None)
    assert fixed is not None
    assert fixed["metadata"]["annotations"] == {"x": "y"}


def test_trigger_time() -> None:
    service = svc(SEL)

    def with_ready_at(name: str, when: str) -> Obj:
        p = pod(name)
        p["status"]["conditions"][0]["lastTransitionTime"] = when
        return p

    a1 = with_ready_at("a", "2024-01-02T00:00:00Z")
    state, t = eu.compute_trigger_time(None, service, [a1])
    assert t == T0  # first sync: the Service's creation
    state, t = eu.compute_trigger_time(state, service, [a1])
    assert t is None  # nothing changed
    a2 = with_ready_at("a", "2024-01-03T00:00:00Z")
    b = with_ready_at("b", "2024-01-04T00:00:00Z")
    state, t = eu.compute_trigger_time(state, service, [a2, b])
    assert t == datetime(2024, 1, 3, tzinfo=UTC)  # earliest change since last sync
    assert eu.format_time(datetime(2024, 1, 3, 0, 0, 0, 120000, tzinfo=UTC)) == (
        "2024-01-03T00:00:00.12Z"
    )


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        pytest.param({"a": "b"}, {"ns/s1"}, id="match"),
        pytest.param({"a": "c"}, set(), id="no-match"),
        pytest.param(None, set(), id="no-labels"),
    ],
)
def test_services_selecting(labels: dict[str, str] | None, want: set[str]) -> None:
    services = [svc(SEL, name="s1"), svc(None, name="s2"), svc({}, name="s3")]
    assert eu.services_selecting(services, labels) == want
