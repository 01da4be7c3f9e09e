"""Defaulting: upstream v1 defaults, idempotence, and Service update normalisation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesvc.api.defaults import apply_defaults, prepare_for_update

Obj = dict[str, Any]


def _defaulted(kind: str, obj: Obj) -> Obj:
    obj = copy.deepcopy(obj)
    apply_defaults(kind, obj)
    return obj


def _svc(**spec: Any) -> Obj:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


SERVICE_CASES = [
    pytest.param(
        _svc(ports=[{"port": 80}]),
        {
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        id="clusterip",
    ),
    pytest.param(
        _svc(type="NodePort", ports=[{"port": 80, "targetPort": "http"}]),
        {
            "type": "NodePort",
            "sessionAffinity": "None",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}],
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        id="nodeport",
    ),
    pytest.param(
        _svc(type="LoadBalancer", ports=[{"port": 443, "protocol": "UDP"}]),
        {
            "type": "LoadBalancer",
            "sessionAffinity": "None",
            "ports": [{"port": 443, "protocol": "UDP", "targetPort": 443}],
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "allocateLoadBalancerNodePorts": True,
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        id="loadbalancer",
    ),
    pytest.param(
        _svc(type="ExternalName", externalName="db.example.com"),
        {"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"},
        id="externalname",
    ),
    pytest.param(
        _svc(sessionAffinity="ClientIP", clusterIP="10.96.0.10", ports=[{"port": 80}]),
        {
            "type": "ClusterIP",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        id="client-ip-and-cluster-ips",
    ),
    pytest.param(
        _svc(externalIPs=["1.2.3.4"], ports=[{"port": 80}]),
        {
            "type": "ClusterIP",
            "externalIPs": ["1.2.3.4"],
            "sessionAffinity": "None",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        id="external-ips-are-externally-accessible",
    ),
]


@pytest.mark.parametrize(("obj", "spec"), SERVICE_CASES)
def test_service(obj: Obj, spec: Obj) -> None:
    assert _defaulted("Service", obj)["spec"] == spec


POD_SPEC = {
    "containers": [
        {
            "name": "app",
            "image": "nginx",
            "imagePullPolicy": "Always",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "livenessProbe": {
                "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                "timeoutSeconds": 1,
                "periodSeconds": 10,
                "successThreshold": 1,
                "failureThreshold": 3,
            },
        }
    ],
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "terminationGracePeriodSeconds": 30,
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "enableServiceLinks": True,
}


def test_pod() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                }
            ]
        },
    }
    out = _defaulted("Pod", pod)
    assert out["spec"] == POD_SPEC
    assert out["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        pytest.param("nginx", "Always", id="no-tag"),
        pytest.param("nginx:latest", "Always", id="latest"),
        pytest.param("nginx:1.25", "IfNotPresent", id="tag"),
        pytest.param("localhost:5000/nginx", "Always", id="registry-port-no-tag"),
        pytest.param("localhost:5000/nginx:1.0", "IfNotPresent", id="registry-port-tag"),
        pytest.param("nginx@sha256:" + "a" * 64, "IfNotPresent", id="digest"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = {"metadata": {}, "spec": {"containers": [{"name": "c", "image": image}]}}
    assert _defaulted("Pod", pod)["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_pod_requests_default_to_limits_and_qos() -> None:
    limits = {"cpu": "1", "memory": "1Gi"}
    pod = {"spec": {"containers": [{"name": "c", "image": "x:1", "resources": {"limits": limits}}]}}
    out = _defaulted("Pod", pod)
    assert out["spec"]["containers"][0]["resources"]["requests"] == limits
    assert out["status"]["qosClass"] == "Guaranteed"


def test_deployment() -> None:
    dep = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    spec = _defaulted("Deployment", dep)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert "status" not in _defaulted("Deployment", dep)


def test_recreate_strategy_has_no_rolling_update() -> None:
    dep = {"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {}}}}
    assert _defaulted("Deployment", dep)["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        pytest.param(
            "Namespace",
            {"metadata": {"name": "prod", "namespace": "ignored"}},
            {
                "metadata": {"name": "prod", "labels": {"kubernetes.io/metadata.name": "prod"}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
            id="namespace",
        ),
        pytest.param(
            "Secret",
            {"metadata": {"name": "s"}, "stringData": {"user": "admin"}},
            {"metadata": {"name": "s"}, "type": "Opaque", "data": {"user": "YWRtaW4="}},
            id="secret",
        ),
        pytest.param(
            "EndpointSlice",
            {"addressType": "IPv4", "ports": [{"port": 80}]},
            {"addressType": "IPv4", "ports": [{"port": 80, "name": "", "protocol": "TCP"}]},
            id="endpointslice",
        ),
        pytest.param(
            "Endpoints",
            {"subsets": [{"ports": [{"port": 80}]}]},
            {"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]},
            id="endpoints",
        ),
        pytest.param(
            "ReplicaSet",
            {"spec": {"template": {"spec": {}}}},
            {
                "spec": {
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "dnsPolicy": "ClusterFirst",
                            "restartPolicy": "Always",
                            "securityContext": {},
                            "terminationGracePeriodSeconds": 30,
                            "schedulerName": "default-scheduler",
                            "enableServiceLinks": True,
                        }
                    },
                }
            },
            id="replicaset",
        ),
        pytest.param("Lease", {"spec": {}}, {"spec": {}}, id="lease-untouched"),
    ],
)
def test_other_kinds(kind: str, obj: Obj, expected: Obj) -> None:
    assert _defaulted(kind, obj) == expected


KINDS = [
    ("Service", _svc(type="LoadBalancer", sessionAffinity="ClientIP", ports=[{"port": 1}])),
    ("Pod", {"spec": {"containers": [{"name": "c", "image": "x", "readinessProbe": {}}]}}),
    ("Deployment", {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}),
    ("Namespace", {"metadata": {"name": "a"}}),
    ("Secret", {"stringData": {"a": "b"}}),
]


@pytest.mark.parametrize(("kind", "obj"), [pytest.param(k, o, id=k) for k, o in KINDS])
def test_idempotent(kind: str, obj: Obj) -> None:
    once = _defaulted(kind, obj)
    assert _defaulted(kind, once) == once


def test_namespace_finalizer_not_readded_after_finalize() -> None:
    ns = _defaulted("Namespace", {"metadata": {"name": "a"}})
    ns["spec"] = {}
    ns["status"]["phase"] = "Terminating"
    assert _defaulted("Namespace", ns)["spec"] == {}


def _stored_svc(**spec: Any) -> Obj:
    return _defaulted("Service", _svc(**spec))


@pytest.mark.parametrize(
    ("old", "changes", "expected"),
    [
        pytest.param(
            _stored_svc(clusterIP="10.96.0.10", ports=[{"port": 80}]),
            {"type": "ExternalName", "externalName": "db.example.com"},
            {
                "type": "ExternalName",
                "externalName": "db.example.com",
                "sessionAffinity": "None",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "internalTrafficPolicy": "Cluster",
            },
            id="to-externalname-wipes-ips",
        ),
        pytest.param(
            _stored_svc(
                type="NodePort", clusterIP="10.96.0.10", ports=[{"port": 80, "nodePort": 30080}]
            ),
            {"type": "ClusterIP"},
            {
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
            id="nodeport-to-clusterip-wipes-node-ports-and-etp",
        ),
        pytest.param(
            _stored_svc(clusterIP="10.96.0.10", ports=[{"port": 80}]),
            {"clusterIPs": None},
            {
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
            id="old-client-omits-cluster-ips",
        ),
    ],
)
def test_service_prepare_for_update(old: Obj, changes: Obj, expected: Obj) -> None:
    new = copy.deepcopy(old)
    for key, value in changes.items():
        if value is None:
            new["spec"].pop(key, None)
        else:
            new["spec"][key] = value
    prepare_for_update("Service", new, old)
    apply_defaults("Service", new)
    assert new["spec"] == expected
