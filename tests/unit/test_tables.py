"""Table columns and row cells, compared with what upstream's printers produce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubesvc.api import tables
from kubesvc.api.kinds import KINDS
from tests.hostile import payloads

NOW = datetime(2026, 11, 26, 22, 30, 0, tzinfo=UTC)
CREATED = "2026-11-26T22:00:00Z"  # 30m before NOW


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": CREATED, **extra}


# --- human_duration / age ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(0.9, "0s", id="sub-second"),
        pytest.param(-1, "0s", id="clock-skew-1s"),
        pytest.param(-1.9, "0s", id="clock-skew-under-2s"),
        pytest.param(-2, "<invalid>", id="future-2s"),
        pytest.param(45, "45s", id="45s"),
        pytest.param(59.9, "59s", id="truncates"),
        pytest.param(119, "119s", id="seconds-below-2m"),
        pytest.param(120, "2m", id="2m"),
        pytest.param(150, "2m30s", id="2m30s"),
        pytest.param(330, "5m30s", id="5m30s"),
        pytest.param(599, "9m59s", id="9m59s"),
        pytest.param(600, "10m", id="10m"),
        pytest.param(630, "10m", id="10m-drops-seconds"),
        pytest.param(3 * 3600 - 1, "179m", id="179m"),
        pytest.param(3 * 3600, "3h", id="3h"),
        pytest.param(3 * 3600 + 30 * 60, "3h30m", id="3h30m"),
        pytest.param(8 * 3600 + 59 * 60, "8h", id="8h-drops-minutes"),
        pytest.param(47 * 3600 + 59 * 60, "47h", id="47h"),
        pytest.param(48 * 3600, "2d", id="2d"),
        pytest.param(53 * 3600, "2d5h", id="2d5h"),
        pytest.param(7 * 86400 + 23 * 3600, "7d23h", id="7d23h"),
        pytest.param(8 * 86400 + 5 * 3600, "8d", id="8d"),
        pytest.param(729 * 86400, "729d", id="729d"),
        pytest.param(730 * 86400, "2y", id="2y"),
        pytest.param(740 * 86400, "2y10d", id="2y10d"),
        pytest.param(8 * 365 * 86400 + 100 * 86400, "8y", id="8y"),
        pytest.param(10 * 365 * 86400, "10y", id="10y"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert tables.human_duration(seconds) == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param(None, "<unknown>", id="missing"),
        pytest.param("", "<unknown>", id="empty"),
        pytest.param("0001-01-01T00:00:00Z", "<unknown>", id="go-zero-time"),
        pytest.param(ago(minutes=5, seconds=30), "5m30s", id="5m30s"),
        pytest.param(ago(days=3, hours=4), "3d4h", id="3d4h"),
        pytest.param("2026-11-26T22:29:15.123456Z", "44s", id="fractional"),
        pytest.param("2026-11-27T00:29:00+02:00", "60s", id="offset"),
        pytest.param(ago(seconds=-1), "0s", id="future-1s"),
        pytest.param(ago(seconds=-5), "<invalid>", id="future-5s"),
    ],
)
def test_age(timestamp: str | None, expected: str) -> None:
    assert tables.age(timestamp, NOW) == expected


# --- column definitions -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_columns_are_well_formed(kind: str) -> None:
    cols = tables.column_definitions(kind)
    for col in cols:
        assert set(col) == {"name", "type", "format", "description", "priority"}
        assert col["priority"] in (0, 1)
        assert col["description"]
    name_cols = [c for c in cols if c["name"] == "Name"]
    assert len(name_cols) == 1
    assert name_cols[0]["format"] == "name"
    assert name_cols[0]["description"] == tables.NAME_DESC
    if kind == "Event":  # upstream puts the event name last, as a wide column
        assert cols[-1] == name_cols[0]
        assert name_cols[0]["priority"] == 1
    else:
        assert cols[0] == name_cols[0]
        assert name_cols[0]["priority"] == 0


@pytest.mark.parametrize(
    ("kind", "names", "wide"),
    [
        pytest.param(
            "Pod",
            ["Name", "Ready", "Status", "Restarts", "Age"],
            ["IP", "Node", "Nominated Node", "Readiness Gates"],
            id="pod",
        ),
        pytest.param(
            "Service",
            ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"],
            ["Selector"],
            id="service",
        ),
        pytest.param("Endpoints", ["Name", "Endpoints", "Age"], [], id="endpoints"),
        pytest.param(
            "Node",
            ["Name", "Status", "Roles", "Age", "Version"],
            ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"],
            id="node",
        ),
        pytest.param(
            "Event",
            ["Last Seen", "Type", "Reason", "Object", "Message"],
            ["Subobject", "Source", "First Seen", "Count", "Name"],
            id="event",
        ),
        pytest.param("Namespace", ["Name", "Status", "Age"], [], id="namespace"),
        pytest.param("Secret", ["Name", "Type", "Data", "Age"], [], id="secret"),
        pytest.param("ConfigMap", ["Name", "Data", "Age"], [], id="configmap"),
        pytest.param(
            "Deployment",
            ["Name", "Ready", "Up-to-date", "Available", "Age"],
            ["Containers", "Images", "Selector"],
            id="deployment",
        ),
        pytest.param(
            "ReplicaSet",
            ["Name", "Desired", "Current", "Ready", "Age"],
            ["Containers", "Images", "Selector"],
            id="replicaset",
        ),
        pytest.param(
            "EndpointSlice",
            ["Name", "AddressType", "Ports", "Endpoints", "Age"],
            [],
            id="endpointslice",
        ),
        pytest.param(
            "Ingress", ["Name", "Class", "Hosts", "Address", "Ports", "Age"], [], id="ingress"
        ),
        pytest.param(
            "IngressClass", ["Name", "Controller", "Parameters", "Age"], [], id="ingressclass"
        ),
        pytest.param("Lease", ["Name", "Holder", "Age"], [], id="lease"),
        pytest.param("Widget", ["Name", "Created At"], [], id="default-convertor"),
    ],
)
def test_column_names_and_priorities(kind: str, names: list[str], wide: list[str]) -> None:
    cols = tables.column_definitions(kind)
    assert [c["name"] for c in cols if c["priority"] == 0] == names
    assert [c["name"] for c in cols if c["priority"] == 1] == wide


def test_event_column_order() -> None:
    names = [c["name"] for c in tables.column_definitions("Event")]
    assert names == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]


@pytest.mark.parametrize(
    ("kind", "column", "type_"),
    [
        pytest.param("Pod", "Restarts", "string", id="pod-restarts"),
        pytest.param("ReplicaSet", "Desired", "integer", id="rs-desired"),
        pytest.param("Deployment", "Up-to-date", "string", id="deploy-up-to-date"),
        pytest.param("Event", "Count", "string", id="event-count"),
        pytest.param("Widget", "Created At", "date", id="default-created-at"),
    ],
)
def test_column_types(kind: str, column: str, type_: str) -> None:
    cols = {c["name"]: c for c in tables.column_definitions(kind)}
    assert cols[column]["type"] == type_


def test_column_definitions_are_copies() -> None:
    tables.column_definitions("Pod")[0]["name"] = "mutated"
    assert tables.column_definitions("Pod")[0]["name"] == "Name"


# --- Pod --------------------------------------------------------------------------------------


def pod(
    phase: str = "Running",
    statuses: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    containers: int = 1,
    conditions: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": meta("web-1", **metadata),
        "spec": {
            "containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
            "initContainers": init or [],
            **(spec or {}),
        },
        "status": {
            "phase": phase,
            "conditions": conditions or [],
            "containerStatuses": statuses or [],
            "initContainerStatuses": init_statuses or [],
            **(status or {}),
        },
    }


def running(name: str = "c0", ready: bool = True, restarts: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "started": True,
        "state": {"running": {"startedAt": CREATED}},
    }


def waiting(reason: str, name: str = "c0", restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason}},
        **extra,
    }


def terminated(name: str = "c0", exit_code: int = 0, reason: str = "", **t: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": exit_code, **t}
    if reason:
        state["reason"] = reason
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}}


READY = [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]


@pytest.mark.parametrize(
    ("obj", "ready", "status", "restarts"),
    [
        pytest.param(pod("Pending"), "0/1", "Pending", "0", id="pending-unscheduled"),
        pytest.param(
            pod("Pending", [waiting("ContainerCreating")]),
            "0/1",
            "ContainerCreating",
            "0",
            id="container-creating",
        ),
        pytest.param(
            pod("Running", [running()], conditions=READY), "1/1", "Running", "0", id="running"
        ),
        pytest.param(
            pod(
                "Running",
                [
                    waiting(
                        "CrashLoopBackOff",
                        restarts=3,
                        lastState={"terminated": {"exitCode": 1, "finishedAt": ago(minutes=5)}},
                    )
                ],
            ),
            "0/1",
            "CrashLoopBackOff",
            "3 (5m ago)",
            id="crashloop-restarts-ago",
        ),
        pytest.param(
            pod("Running", [running(restarts=2)]),
            "1/1",
            "Running",
            "2",
            id="restarts-without-last-state",
        ),
        pytest.param(
            pod("Succeeded", [terminated(reason="Completed")]),
            "0/1",
            "Completed",
            "0",
            id="completed",
        ),
        pytest.param(
            pod("Failed", [terminated(exit_code=137, reason="Error")]),
            "0/1",
            "Error",
            "0",
            id="failed-error",
        ),
        pytest.param(
            pod("Failed", [terminated(exit_code=2)]),
            "0/1",
            "ExitCode:2",
            "0",
            id="exit-code-without-reason",
        ),
        pytest.param(
            pod("Failed", [terminated(exit_code=137, signal=9)]),
            "0/1",
            "Signal:9",
            "0",
            id="signal-without-reason",
        ),
        pytest.param(
            pod("Running", [running()], deletionTimestamp=ago(seconds=3)),
            "1/1",
            "Terminating",
            "0",
            id="terminating",
        ),
        pytest.param(
            pod("Succeeded", [terminated(reason="Completed")], deletionTimestamp=ago(seconds=3)),
            "0/1",
            "Completed",
            "0",
            id="terminal-phase-not-terminating",
        ),
        pytest.param(
            pod(
                "Running",
                [running()],
                status={"reason": "NodeLost"},
                deletionTimestamp=ago(seconds=3),
            ),
            "1/1",
            "Unknown",
            "0",
            id="node-lost",
        ),
        pytest.param(
            pod("Failed", status={"reason": "Evicted"}), "0/1", "Evicted", "0", id="evicted"
        ),
        pytest.param(
            pod(
                "Pending",
                conditions=[
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                ],
            ),
            "0/1",
            "SchedulingGated",
            "0",
            id="scheduling-gated",
        ),
        pytest.param(
            pod(
                "Pending",
                [waiting("PodInitializing")],
                init=[{"name": "init", "image": "busybox"}],
                init_statuses=[waiting("PodInitializing", name="init")],
            ),
            "0/1",
            "Init:0/1",
            "0",
            id="init-0-of-1",
        ),
        pytest.param(
            pod(
                "Pending",
                init=[{"name": "a", "image": "x"}, {"name": "b", "image": "x"}],
                init_statuses=[
                    terminated(name="a", reason="Completed"),
                    {"name": "b", "ready": False, "restartCount": 0, "state": {"running": {}}},
                ],
            ),
            "0/1",
            "Init:1/2",
            "0",
            id="init-1-of-2",
        ),
        pytest.param(
            pod(
                "Pending",
                init=[{"name": "init", "image": "busybox"}],
                init_statuses=[
                    waiting(
                        "CrashLoopBackOff",
                        name="init",
                        restarts=2,
                        lastState={"terminated": {"exitCode": 1, "finishedAt": ago(minutes=2)}},
                    )
                ],
            ),
            "0/1",
            "Init:CrashLoopBackOff",
            "2 (2m ago)",
            id="init-crashloop",
        ),
        pytest.param(
            pod(
                "Pending",
                init=[{"name": "init", "image": "busybox"}],
                init_statuses=[terminated(name="init", exit_code=1, reason="Error")],
            ),
            "0/1",
            "Init:Error",
            "0",
            id="init-error",
        ),
        pytest.param(
            pod(
                "Pending",
                init=[{"name": "init", "image": "busybox"}],
                init_statuses=[terminated(name="init", exit_code=3)],
            ),
            "0/1",
            "Init:ExitCode:3",
            "0",
            id="init-exit-code",
        ),
        pytest.param(
            pod(
                "Running",
                [running()],
                init=[{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
                init_statuses=[running(name="proxy", restarts=1)],
                conditions=READY,
            ),
            "2/2",
            "Running",
            "1",
            id="sidecar-counts-and-restarts",
        ),
        pytest.param(
            pod(
                "Running",
                [terminated(name="c0", reason="Completed"), running(name="c1")],
                containers=2,
                conditions=[{"type": "Ready", "status": "False"}],
            ),
            "1/2",
            "NotReady",
            "0",
            id="completed-with-running-not-ready",
        ),
        pytest.param(
            pod(
                "Running",
                [terminated(name="c0", reason="Completed"), running(name="c1")],
                containers=2,
                conditions=READY,
            ),
            "1/2",
            "Running",
            "0",
            id="completed-with-running-ready",
        ),
    ],
)
def test_pod_status_cells(obj: dict[str, Any], ready: str, status: str, restarts: str) -> None:
    cells = tables.row_cells("Pod", obj, NOW)
    assert cells[:5] == ["web-1", ready, status, restarts, "30m"]


def test_pod_wide_cells() -> None:
    obj = pod(
        "Running",
        [running()],
        conditions=[*READY, {"type": "example.com/gate", "status": "True"}],
        spec={
            "nodeName": "node-a",
            "readinessGates": [
                {"conditionType": "example.com/gate"},
                {"conditionType": "example.com/other"},
            ],
        },
        status={
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
            "nominatedNodeName": "node-b",
        },
    )
    assert tables.row_cells("Pod", obj, NOW)[5:] == ["10.244.1.5", "node-a", "node-b", "1/2"]


def test_pod_wide_defaults() -> None:
    assert tables.row_cells("Pod", pod("Pending"), NOW)[5:] == [
        "<none>",
        "<none>",
        "<none>",
        "<none>",
    ]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        pytest.param("Running", [], id="running"),
        pytest.param(
            "Succeeded",
            [
                {
                    "type": "Completed",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "The pod has completed successfully.",
                }
            ],
            id="succeeded",
        ),
        pytest.param(
            "Failed",
            [
                {
                    "type": "Completed",
                    "status": "True",
                    "reason": "Failed",
                    "message": "The pod failed.",
                }
            ],
            id="failed",
        ),
    ],
)
def test_pod_row_conditions(phase: str, expected: list[dict[str, str]]) -> None:
    assert tables.row_conditions("Pod", pod(phase)) == expected
    assert tables.row_conditions("Service", pod(phase)) == []


# --- Service ----------------------------------------------------------------------------------


def service(
    svc_type: str = "ClusterIP",
    ports: list[dict[str, Any]] | None = None,
    cluster_ip: str | None = "10.96.0.10",
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": svc_type, "ports": ports or [], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
        body["clusterIPs"] = [cluster_ip]
    return {"kind": "Service", "metadata": meta("web"), "spec": body, "status": status or {}}


HTTP = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            service(ports=[HTTP], selector={"app": "web", "tier": "fe"}),
            ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "30m", "app=web,tier=fe"],
            id="cluster-ip",
        ),
        pytest.param(
            service(
                ports=[
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ]
            ),
            ["web", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "30m", "<none>"],
            id="multiple-ports-no-selector",
        ),
        pytest.param(
            service(ports=[HTTP], externalIPs=["192.0.2.1", "192.0.2.2"]),
            ["web", "ClusterIP", "10.96.0.10", "192.0.2.1,192.0.2.2", "80/TCP", "30m", "<none>"],
            id="cluster-ip-external-ips",
        ),
        pytest.param(
            service("NodePort", [{**HTTP, "nodePort": 30080}], selector={"app": "web"}),
            ["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP", "30m", "app=web"],
            id="node-port",
        ),
        pytest.param(
            service("LoadBalancer", [{**HTTP, "nodePort": 31000}]),
            ["web", "LoadBalancer", "10.96.0.10", "<pending>", "80:31000/TCP", "30m", "<none>"],
            id="load-balancer-pending",
        ),
        pytest.param(
            service(
                "LoadBalancer",
                [{**HTTP, "nodePort": 31000}],
                status={
                    "loadBalancer": {
                        "ingress": [
                            {"hostname": "lb.example.com"},
                            {"ip": "203.0.113.20"},
                            {"ip": "203.0.113.20"},
                        ]
                    }
                },
            ),
            [
                "web",
                "LoadBalancer",
                "10.96.0.10",
                "203.0.113.20,lb.example.com",
                "80:31000/TCP",
                "30m",
                "<none>",
            ],
            id="load-balancer-ingress-sorted-unique-not-truncated",
        ),
        pytest.param(
            service(
                "LoadBalancer",
                [{**HTTP, "nodePort": 31000}],
                externalIPs=["198.51.100.7"],
                status={"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}]}},
            ),
            [
                "web",
                "LoadBalancer",
                "10.96.0.10",
                "203.0.113.20,198.51.100.7",
                "80:31000/TCP",
                "30m",
                "<none>",
            ],
            id="load-balancer-ingress-and-external-ips",
        ),
        pytest.param(
            service("LoadBalancer", [{**HTTP, "nodePort": 31000}], externalIPs=["198.51.100.7"]),
            ["web", "LoadBalancer", "10.96.0.10", "198.51.100.7", "80:31000/TCP", "30m", "<none>"],
            id="load-balancer-external-ips-only",
        ),
        pytest.param(
            service("ExternalName", cluster_ip=None, externalName="db.example.com"),
            ["web", "ExternalName", "<none>", "db.example.com", "<none>", "30m", "<none>"],
            id="external-name",
        ),
        pytest.param(
            service(ports=[HTTP], cluster_ip="None", selector={"app": "db"}),
            ["web", "ClusterIP", "None", "<none>", "80/TCP", "30m", "app=db"],
            id="headless",
        ),
        pytest.param(
            service(ports=[{"port": 5000}], cluster_ip="fd00:10:96::a"),
            ["web", "ClusterIP", "fd00:10:96::a", "<none>", "5000/TCP", "30m", "<none>"],
            id="ipv6-default-protocol",
        ),
    ],
)
def test_service_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells("Service", obj, NOW) == expected


# --- Endpoints / EndpointSlice ----------------------------------------------------------------


def endpoints(*subsets: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Endpoints", "metadata": meta("web"), "subsets": list(subsets)}


def addrs(*ips: str) -> list[dict[str, str]]:
    return [{"ip": ip} for ip in ips]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(endpoints(), "<none>", id="no-subsets"),
        pytest.param(
            endpoints({"addresses": addrs("10.244.1.5", "10.244.2.3"), "ports": [{"port": 8080}]}),
            "10.244.1.5:8080,10.244.2.3:8080",
            id="two",
        ),
        pytest.param(
            endpoints(
                {
                    "addresses": addrs("10.244.1.5", "10.244.2.3", "10.244.3.4", "10.244.4.9"),
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }
            ),
            "10.244.1.5:8080,10.244.2.3:8080,10.244.3.4:8080 + 1 more...",
            id="more-than-three",
        ),
        pytest.param(
            endpoints(
                {
                    "addresses": addrs("10.0.0.1", "10.0.0.2"),
                    "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
                }
            ),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
            id="ports-times-addresses",
        ),
        pytest.param(
            endpoints(
                {"addresses": addrs("10.0.0.1"), "ports": [{"port": 80}]},
                {"addresses": addrs("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5")},
            ),
            "10.0.0.1:80,10.0.0.2,10.0.0.3 + 2 more...",
            id="multiple-subsets-headless",
        ),
        pytest.param(
            endpoints({"addresses": addrs("fd00::1"), "ports": [{"port": 80}]}),
            "[fd00::1]:80",
            id="ipv6-brackets",
        ),
        pytest.param(
            endpoints({"notReadyAddresses": addrs("10.0.0.9"), "ports": [{"port": 80}]}),
            "",
            id="only-not-ready",
        ),
    ],
)
def test_endpoints_cells(obj: dict[str, Any], expected: str) -> None:
    assert tables.row_cells("Endpoints", obj, NOW) == ["web", expected, "30m"]


def endpoint_slice(ports: list[dict[str, Any]], eps: list[list[str]]) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{"addresses": a, "conditions": {"ready": True}} for a in eps],
    }


@pytest.mark.parametrize(
    ("obj", "ports", "eps"),
    [
        pytest.param(endpoint_slice([], []), "<unset>", "<unset>", id="empty"),
        pytest.param(
            endpoint_slice([{"name": "http", "port": 8080}], [["10.244.1.5"], ["10.244.2.3"]]),
            "8080",
            "10.244.1.5,10.244.2.3",
            id="simple",
        ),
        pytest.param(
            endpoint_slice(
                [{"port": 80}, {"name": "named"}, {}, {"port": 9090}, {"port": 9091}],
                [["10.0.0.1", "10.0.0.2"], ["10.0.0.3"], ["10.0.0.4"], ["10.0.0.5"]],
            ),
            "80,named,* + 2 more...",
            "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
            id="more-than-three",
        ),
    ],
)
def test_endpoint_slice_cells(obj: dict[str, Any], ports: str, eps: str) -> None:
    assert tables.row_cells("EndpointSlice", obj, NOW) == ["web-abc12", "IPv4", ports, eps, "30m"]


# --- Node -------------------------------------------------------------------------------------


def node(
    labels: dict[str, str] | None = None,
    conditions: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    addresses: list[dict[str, str]] | None = None,
    info: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": "node-a", "creationTimestamp": CREATED, "labels": labels or {}},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": conditions or [],
            "addresses": addresses or [],
            "nodeInfo": info or {},
        },
    }


NODE_INFO = {
    "kubeletVersion": "v1.32.4",
    "osImage": "Ubuntu 24.04.1 LTS",
    "kernelVersion": "6.8.0-45-generic",
    "containerRuntimeVersion": "containerd://1.7.22",
}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            node(
                {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-a"},
                [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                addresses=[
                    {"type": "Hostname", "address": "node-a"},
                    {"type": "InternalIP", "address": "10.0.0.1"},
                ],
                info=NODE_INFO,
            ),
            [
                "node-a",
                "Ready",
                "control-plane",
                "30m",
                "v1.32.4",
                "10.0.0.1",
                "<none>",
                "Ubuntu 24.04.1 LTS",
                "6.8.0-45-generic",
                "containerd://1.7.22",
            ],
            id="control-plane-ready",
        ),
        pytest.param(
            node(
                {
                    "kubernetes.io/role": "worker",
                    "node-role.kubernetes.io/infra": "",
                    "node-role.kubernetes.io/": "",
                    "node-role.kubernetes.io/worker": "",
                },
                [{"type": "Ready", "status": "False"}],
                unschedulable=True,
                addresses=[
                    {"type": "ExternalIP", "address": "203.0.113.9"},
                    {"type": "InternalIP", "address": "10.0.0.2"},
                    {"type": "InternalIP", "address": "10.0.0.3"},
                ],
                info={"kubeletVersion": "v1.32.4"},
            ),
            [
                "node-a",
                "NotReady,SchedulingDisabled",
                "infra,worker",
                "30m",
                "v1.32.4",
                "10.0.0.2",
                "203.0.113.9",
                "<unknown>",
                "<unknown>",
                "<unknown>",
            ],
            id="not-ready-cordoned-roles",
        ),
        pytest.param(
            node(),
            [
                "node-a",
                "Unknown",
                "<none>",
                "30m",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>",
            ],
            id="no-conditions",
        ),
        pytest.param(
            node(conditions=[{"type": "Ready", "status": "Unknown"}], unschedulable=True),
            [
                "node-a",
                "NotReady,SchedulingDisabled",
                "<none>",
                "30m",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>",
            ],
            id="ready-unknown",
        ),
    ],
)
def test_node_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells("Node", obj, NOW) == expected


# --- Event ------------------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "Event",
        "metadata": meta("web-1.17f0a"),
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "type": "Normal",
        "reason": "Pulled",
        "message": "Container image pulled",
        **fields,
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            event(
                firstTimestamp=ago(minutes=10),
                lastTimestamp=ago(minutes=2),
                count=3,
                source={"component": "kubelet", "host": "node-a"},
                involvedObject={
                    "kind": "Pod",
                    "name": "web-1",
                    "fieldPath": "spec.containers{web}",
                },
                message="  Container image pulled\n",
            ),
            [
                "2m",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, node-a",
                "Container image pulled",
                "10m",
                3,
                "web-1.17f0a",
            ],
            id="core-event",
        ),
        pytest.param(
            event(
                eventTime="2026-11-26T22:29:15.000000Z",
                reportingComponent="default-scheduler",
                reportingInstance="default-scheduler-node-a",
                type="Warning",
                reason="FailedScheduling",
            ),
            [
                "45s",
                "Warning",
                "FailedScheduling",
                "pod/web-1",
                "",
                "default-scheduler, default-scheduler-node-a",
                "Container image pulled",
                "45s",
                1,
                "web-1.17f0a",
            ],
            id="events-api-style-singleton",
        ),
        pytest.param(
            event(
                eventTime="2026-11-26T22:20:00.000000Z",
                series={"count": 7, "lastObservedTime": "2026-11-26T22:29:30.000000Z"},
                reportingComponent="kubelet",
                count=2,
            ),
            [
                "30s",
                "Normal",
                "Pulled",
                "pod/web-1",
                "",
                "kubelet",
                "Container image pulled",
                "10m",
                7,
                "web-1.17f0a",
            ],
            id="series",
        ),
        pytest.param(
            event(
                involvedObject={"kind": "Node"},
                firstTimestamp=ago(hours=3),
                lastTimestamp=None,
                source={"component": "kubelet"},
                count=1,
            ),
            [
                "3h",
                "Normal",
                "Pulled",
                "node",
                "",
                "kubelet",
                "Container image pulled",
                "3h",
                1,
                "web-1.17f0a",
            ],
            id="no-object-name-last-falls-back-to-first",
        ),
        pytest.param(
            event(),
            [
                "<unknown>",
                "Normal",
                "Pulled",
                "pod/web-1",
                "",
                "",
                "Container image pulled",
                "<unknown>",
                1,
                "web-1.17f0a",
            ],
            id="no-timestamps",
        ),
    ],
)
def test_event_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells("Event", obj, NOW) == expected


# --- workloads --------------------------------------------------------------------------------


def workload(kind: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx:1.27"},
                {"name": "sidecar", "image": "busybox"},
            ]
        },
    }
    return {
        "kind": kind,
        "metadata": meta("web"),
        "spec": {"template": template, **spec},
        "status": status,
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            workload(
                "Deployment",
                {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}}},
                {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
            ),
            ["web", "2/3", 3, 2, "30m", "web,sidecar", "nginx:1.27,busybox", "app=web,tier=fe"],
            id="deployment",
        ),
        pytest.param(
            workload(
                "Deployment",
                {
                    "replicas": 0,
                    "selector": {
                        "matchLabels": {"app": "web"},
                        "matchExpressions": [
                            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                            {"key": "canary", "operator": "DoesNotExist"},
                            {"key": "zone", "operator": "Exists"},
                            {"key": "arch", "operator": "NotIn", "values": ["arm"]},
                        ],
                    },
                },
                {},
            ),
            [
                "web",
                "0/0",
                0,
                0,
                "30m",
                "web,sidecar",
                "nginx:1.27,busybox",
                "app=web,arch notin (arm),!canary,env in (dev,prod),zone",
            ],
            id="deployment-expressions-empty-status",
        ),
        pytest.param(
            workload(
                "Deployment",
                {
                    "replicas": 1,
                    "selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]},
                },
                {},
            ),
            ["web", "0/1", 0, 0, "30m", "web,sidecar", "nginx:1.27,busybox", "<invalid>"],
            id="deployment-invalid-selector",
        ),
        pytest.param(
            workload("Deployment", {"replicas": 2, "selector": {}}, {}),
            ["web", "0/2", 0, 0, "30m", "web,sidecar", "nginx:1.27,busybox", ""],
            id="deployment-empty-selector",
        ),
    ],
)
def test_deployment_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells("Deployment", obj, NOW) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            workload(
                "ReplicaSet",
                {"replicas": 3, "selector": {"matchLabels": {"app": "web", "hash": "5d9c"}}},
                {"replicas": 3, "readyReplicas": 1},
            ),
            ["web", 3, 3, 1, "30m", "web,sidecar", "nginx:1.27,busybox", "app=web,hash=5d9c"],
            id="replicaset",
        ),
        pytest.param(
            workload("ReplicaSet", {"replicas": 0, "selector": {}}, {"replicas": 0}),
            ["web", 0, 0, 0, "30m", "web,sidecar", "nginx:1.27,busybox", "<none>"],
            id="replicaset-empty-selector",
        ),
        pytest.param(
            workload(
                "ReplicaSet",
                {"replicas": 1, "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
                {},
            ),
            ["web", 1, 0, 0, "30m", "web,sidecar", "nginx:1.27,busybox", "<error>"],
            id="replicaset-invalid-selector",
        ),
    ],
)
def test_replicaset_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells("ReplicaSet", obj, NOW) == expected


# --- networking -------------------------------------------------------------------------------


def ingress(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Ingress", "metadata": meta("web"), "spec": spec, "status": status or {}}


def rule(host: str = "") -> dict[str, Any]:
    return {"host": host} if host else {"http": {"paths": []}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            ingress({"rules": [rule()]}),
            ["web", "<none>", "*", "", "80", "30m"],
            id="catch-all-no-class",
        ),
        pytest.param(
            ingress(
                {
                    "ingressClassName": "nginx",
                    "rules": [rule("a.example.com"), rule("b.example.com")],
                    "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
                },
                {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}, {"hostname": "lb.example"}]}},
            ),
            [
                "web",
                "nginx",
                "a.example.com,b.example.com",
                "192.0.2.10,lb.example",
                "80, 443",
                "30m",
            ],
            id="tls-and-address",
        ),
        pytest.param(
            ingress(
                {
                    "ingressClassName": "nginx",
                    "rules": [rule("a.io"), rule(), rule("b.io"), rule("c.io"), rule("d.io")],
                }
            ),
            ["web", "nginx", "a.io,b.io,c.io + 2 more...", "", "80", "30m"],
            id="more-than-three-hosts",
        ),
        pytest.param(
            ingress({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}),
            ["web", "<none>", "*", "", "80", "30m"],
            id="default-backend-only",
        ),
    ],
)
def test_ingress_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells("Ingress", obj, NOW) == expected


@pytest.mark.parametrize(
    ("spec", "parameters"),
    [
        pytest.param({"controller": "k8s.io/ingress-nginx"}, "<none>", id="no-parameters"),
        pytest.param(
            {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {
                    "apiGroup": "k8s.example.com",
                    "kind": "IngressParameters",
                    "name": "external-lb",
                },
            },
            "IngressParameters.k8s.example.com/external-lb",
            id="with-api-group",
        ),
        pytest.param(
            {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {"kind": "ConfigMap", "name": "cfg", "scope": "Namespace"},
            },
            "ConfigMap/cfg",
            id="core-kind",
        ),
    ],
)
def test_ingress_class_cells(spec: dict[str, Any], parameters: str) -> None:
    obj = {"kind": "IngressClass", "metadata": {"name": "nginx", "creationTimestamp": CREATED}}
    cells = tables.row_cells("IngressClass", {**obj, "spec": spec}, NOW)
    assert cells == ["nginx", "k8s.io/ingress-nginx", parameters, "30m"]


# --- config and the rest ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        pytest.param(
            "Namespace",
            {
                "metadata": {"name": "default", "creationTimestamp": CREATED},
                "status": {"phase": "Active"},
            },
            ["default", "Active", "30m"],
            id="namespace",
        ),
        pytest.param(
            "Namespace",
            {
                "metadata": {"name": "old", "creationTimestamp": ago(days=400)},
                "status": {"phase": "Terminating"},
            },
            ["old", "Terminating", "400d"],
            id="namespace-terminating",
        ),
        pytest.param(
            "Secret",
            {
                "metadata": meta("tls"),
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Y3J0", "tls.key": "a2V5"},
            },
            ["tls", "kubernetes.io/tls", 2, "30m"],
            id="secret",
        ),
        pytest.param(
            "Secret",
            {"metadata": meta("empty"), "type": "Opaque"},
            ["empty", "Opaque", 0, "30m"],
            id="secret-empty",
        ),
        pytest.param(
            "ConfigMap",
            {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
            ["cfg", 3, "30m"],
            id="configmap-data-and-binary",
        ),
        pytest.param(
            "ConfigMap",
            {"metadata": meta("kube-root-ca.crt", creationTimestamp=None)},
            ["kube-root-ca.crt", 0, "<unknown>"],
            id="configmap-empty-no-timestamp",
        ),
        pytest.param(
            "Lease",
            {"metadata": meta("node-a"), "spec": {"holderIdentity": "node-a"}},
            ["node-a", "node-a", "30m"],
            id="lease",
        ),
        pytest.param(
            "Lease",
            {"metadata": meta("orphan"), "spec": {}},
            ["orphan", "", "30m"],
            id="lease-no-holder",
        ),
        pytest.param(
            "Widget",
            {"metadata": {"name": "w", "creationTimestamp": "2026-11-27T00:00:00+02:00"}},
            ["w", "2026-11-26T22:00:00Z"],
            id="default-convertor",
        ),
        pytest.param(
            "Widget",
            {"metadata": {"name": "w"}},
            ["w", "0001-01-01T00:00:00Z"],
            id="default-convertor-no-timestamp",
        ),
    ],
)
def test_simple_cells(kind: str, obj: dict[str, Any], expected: list[Any]) -> None:
    assert tables.row_cells(kind, obj, NOW) == expected


# --- shape ------------------------------------------------------------------------------------

SAMPLES: dict[str, dict[str, Any]] = {
    "Pod": pod(),
    "Service": service(ports=[HTTP]),
    "Endpoints": endpoints(),
    "Node": node(),
    "Event": event(),
    "Namespace": {"metadata": {"name": "ns"}},
    "Secret": {"metadata": {"name": "s"}},
    "ConfigMap": {"metadata": {"name": "c"}},
    "Deployment": workload("Deployment", {}, {}),
    "ReplicaSet": workload("ReplicaSet", {}, {}),
    "EndpointSlice": endpoint_slice([], []),
    "Ingress": ingress({}),
    "IngressClass": {"metadata": {"name": "i"}, "spec": {}},
    "Lease": {"metadata": {"name": "l"}},
}


for _kind in KINDS:
    # the other kinds: the docs-like manifests the hostile tests use
    SAMPLES.setdefault(_kind.kind, payloads.sample(_kind.kind, "sample"))


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_one_cell_per_column(kind: str) -> None:
    cells = tables.row_cells(kind, SAMPLES[kind], NOW)
    assert len(cells) == len(tables.column_definitions(kind))
    # upstream prints some booleans as text (CronJob's Suspend) and some as JSON booleans
    assert all(isinstance(c, str | int) for c in cells)


def test_naive_now_is_treated_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert tables.age(CREATED, naive) == "30m"


def test_cited_field_descriptions_are_the_documents() -> None:
    from kubesvc.api import openapi
    from kubesvc.api.table_docs import FIELD_DOCS

    for (type_name, field), text in FIELD_DOCS.items():
        found = [
            doc["components"]["schemas"][type_name]["properties"][field]["description"]
            for key in openapi.available()
            if type_name
            in (doc := openapi.parsed(key) or {}).get("components", {}).get("schemas", {})
        ]
        assert found and found[0] == text, (type_name, field)
