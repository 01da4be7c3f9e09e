"""Strategic merge patch, JSON merge patch and JSON patch over plain dicts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesvc.api import mergekeys
from kubesvc.api.patch import (
    MAX_COPY_BYTES,
    PatchError,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)


def make_service(**spec: Any) -> dict:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "fe"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
            ],
            "type": "ClusterIP",
        },
    }
    svc["spec"].update(spec)
    return svc


def make_deployment(*containers: dict, **spec: Any) -> dict:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers)},
            },
        },
    }
    dep["spec"].update(spec)
    return dep


NGINX = {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}]}
SIDECAR = {"name": "sidecar", "image": "busybox"}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# ----------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("kind", "path", "strategy", "merge_key", "ssa_type", "ssa_keys"),
    [
        pytest.param(
            "Pod", ["spec", "containers"], "merge", "name", "map", ("name",), id="containers"
        ),
        pytest.param(
            "Deployment",
            ["spec", "template", "spec", "containers", "ports"],
            "merge",
            "containerPort",
            "map",
            ("containerPort", "protocol"),
            id="container-ports",
        ),
        pytest.param(
            "Pod", ["spec", "containers", "env"], "merge", "name", "map", ("name",), id="env"
        ),
        pytest.param(
            "Pod", ["spec", "volumes"], "merge,retainKeys", "name", "map", ("name",), id="volumes"
        ),
        pytest.param(
            "Service",
            ["spec", "ports"],
            "merge",
            "port",
            "map",
            ("port", "protocol"),
            id="svc-ports",
        ),
        pytest.param("Pod", ["metadata", "finalizers"], "merge", "", "set", (), id="finalizers"),
        pytest.param(
            "Node", ["status", "addresses"], "merge", "type", "map", ("type",), id="node-addresses"
        ),
        pytest.param("Pod", ["status", "hostIPs"], "merge", "ip", "atomic", (), id="hostIPs"),
        pytest.param("Pod", ["spec", "tolerations"], "", "", "atomic", (), id="tolerations"),
        pytest.param("Service", ["spec", "clusterIPs"], "", "", "atomic", (), id="clusterIPs"),
        pytest.param("Pod", ["spec", "unknown", "list"], "", "", "atomic", (), id="unknown"),
    ],
)
def test_lookup(
    kind: str,
    path: list[str],
    strategy: str,
    merge_key: str,
    ssa_type: str,
    ssa_keys: tuple[str, ...],
) -> None:
    meta = mergekeys.lookup(kind, path)
    assert meta.patch_strategy == strategy
    assert meta.patch_merge_key == merge_key
    assert meta.ssa_list_type == ssa_type
    assert meta.ssa_keys == ssa_keys


def test_lookup_retain_keys_strategy() -> None:
    meta = mergekeys.lookup("Deployment", ["spec", "strategy"])
    assert meta.retain_keys and meta.merge_strategy == ""


# ----------------------------------------------------------------------------- strategic merge


def _svc_expect(ports: list[dict], labels: dict | None = None) -> dict:
    out = make_service(ports=ports)
    if labels is not None:
        out["metadata"]["labels"] = labels
    return out


SMP_CASES = [
    pytest.param(
        "Service",
        make_service(),
        {
            "metadata": {"labels": {"tier": None}},
            "spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                "ports": [{"port": 80, "targetPort": 9090}],
            },
        },
        _svc_expect(
            [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
            ],
            {"app": "web"},
        ),
        id="kubectl-apply-change-target-port-and-drop-label",
    ),
    pytest.param(
        "Service",
        make_service(),
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 443}, {"port": 8000}, {"port": 80}],
                "ports": [{"port": 8000, "name": "alt", "targetPort": 8000}],
            }
        },
        _svc_expect(
            [
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
                {"port": 8000, "name": "alt", "targetPort": 8000},
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            ]
        ),
        id="set-element-order-reorders-and-inserts",
    ),
    pytest.param(
        "Service",
        make_service(),
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 443}],
                "ports": [{"$patch": "delete", "port": 80}],
            }
        },
        _svc_expect([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}]),
        id="patch-delete-port",
    ),
    pytest.param(
        "Service",
        make_service(),
        {"spec": {"ports": [{"port": 443, "name": "tls"}, {"port": 8443, "name": "new"}]}},
        _svc_expect(
            [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "tls", "port": 443, "protocol": "TCP", "targetPort": 8443},
                {"port": 8443, "name": "new"},
            ]
        ),
        id="merge-by-key-without-order",
    ),
    pytest.param(
        "Service",
        make_service(),
        {"spec": {"ports": [{"$patch": "replace"}, {"port": 53, "protocol": "UDP"}]}},
        _svc_expect([{"port": 53, "protocol": "UDP"}]),
        id="patch-replace-list",
    ),
    pytest.param(
        "Service",
        make_service(),
        {"spec": {"selector": {"$patch": "replace", "role": "api"}}},
        make_service(selector={"role": "api"}),
        id="patch-replace-map",
    ),
    pytest.param(
        "Service",
        make_service(),
        {"spec": {"selector": {"$patch": "delete"}}},
        make_service(selector={}),
        id="patch-delete-map",
    ),
    pytest.param(
        "Service",
        make_service(clusterIPs=["10.0.0.1"]),
        {"spec": {"clusterIPs": ["10.0.0.2"], "type": "NodePort", "selector": None}},
        {
            **make_service(),
            "spec": {
                "ports": make_service()["spec"]["ports"],
                "type": "NodePort",
                "clusterIPs": ["10.0.0.2"],
            },
        },
        id="atomic-list-replaced-scalar-set-null-deletes",
    ),
    pytest.param(
        "Deployment",
        make_deployment(NGINX),
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "nginx"}],
                        "containers": [
                            {
                                "name": "nginx",
                                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                                "env": [{"name": "B", "value": "2"}],
                            }
                        ],
                    }
                }
            }
        },
        make_deployment(
            {**NGINX, "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
        ),
        id="container-env-merge",
    ),
    pytest.param(
        "Deployment",
        make_deployment(NGINX),
        {"spec": {"template": {"spec": {"containers": [SIDECAR]}}}},
        make_deployment(SIDECAR, NGINX),
        id="new-container-without-order-goes-first",
    ),
    pytest.param(
        "Deployment",
        make_deployment(NGINX, SIDECAR),
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                        "containers": [{"name": "nginx", "image": "nginx:1.27"}],
                    }
                }
            }
        },
        make_deployment(SIDECAR, {**NGINX, "image": "nginx:1.27"}),
        id="set-element-order-containers",
    ),
    pytest.param(
        "Deployment",
        make_deployment(NGINX),
        {"metadata": {"finalizers": ["c", "a"]}},
        {
            **make_deployment(NGINX),
            "metadata": {**make_deployment()["metadata"], "finalizers": ["c", "a", "b"]},
        },
        id="primitive-merge-list-union-patch-items-first",
    ),
    pytest.param(
        "Deployment",
        make_deployment(NGINX),
        {
            "metadata": {
                "$setElementOrder/finalizers": ["b"],
                "$deleteFromPrimitiveList/finalizers": ["a"],
            }
        },
        {
            **make_deployment(NGINX),
            "metadata": {**make_deployment()["metadata"], "finalizers": ["b"]},
        },
        id="delete-from-primitive-list",
    ),
    pytest.param(
        "Deployment",
        make_deployment(NGINX),
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}
            }
        },
        make_deployment(NGINX, strategy={"type": "Recreate"}),
        id="retain-keys-strategy",
    ),
    pytest.param(
        "Pod",
        {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}},
        {
            "spec": {
                "volumes": [
                    {"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "c"}}
                ]
            }
        },
        {
            "spec": {
                "volumes": [
                    {"name": "v", "configMap": {"name": "c"}},
                    {"name": "w", "emptyDir": {}},
                ]
            }
        },
        id="retain-keys-volume-item",
    ),
    pytest.param(
        "Pod",
        {"metadata": {"name": "p"}},
        {"metadata": {"labels": {"a": "1", "b": None}}, "spec": {"tolerations": [{"key": "k"}]}},
        {"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"tolerations": [{"key": "k"}]}},
        id="new-fields-drop-nulls",
    ),
    pytest.param(
        "ConfigMap",
        {"data": {"a": "1"}},
        {"data": "not-a-map"},
        {"data": "not-a-map"},
        id="type-change-replaces",
    ),
]


@pytest.mark.parametrize(("kind", "original", "patch", "expected"), SMP_CASES)
def test_strategic_merge_patch(kind: str, original: dict, patch: dict, expected: dict) -> None:
    before_original, before_patch = copy.deepcopy(original), copy.deepcopy(patch)
    assert strategic_merge_patch(kind, original, patch) == expected
    assert original == before_original and patch == before_patch


SMP_ERRORS = [
    pytest.param(
        {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
        422,
        "map: map[image:x] does not contain declared merge key: name",
        id="missing-merge-key",
    ),
    pytest.param(
        {"spec": {"selector": {"$patch": "bogus"}}},
        422,
        "unknown patch type: bogus in map: map[$patch:bogus]",
        id="unknown-map-directive",
    ),
    pytest.param(
        {"spec": {"template": {"spec": {"containers": [{"name": "x", "$patch": "merge"}]}}}},
        422,
        "merging lists cannot yet be specified in the patch",
        id="merge-directive-in-list",
    ),
    pytest.param(
        {"spec": {"strategy": {"$retainKeys": "type"}}},
        400,
        "invalid patch format of retainKeys",
        id="retain-keys-not-a-list",
    ),
    pytest.param(
        {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}},
        400,
        "invalid patch format of retainKeys",
        id="retain-keys-missing-field",
    ),
    pytest.param(
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "nginx"}],
                        "containers": [{"name": "other"}],
                    }
                }
            }
        },
        422,
        "doesn't match $setElementOrder/ list",
        id="set-element-order-mismatch",
    ),
    pytest.param(
        {"metadata": {"finalizers": [["x"]]}},
        422,
        "list element types are not identical: [[a b] [[x]]]",
        id="mixed-element-types",
    ),
]


@pytest.mark.parametrize(("patch", "code", "message"), SMP_ERRORS)
def test_strategic_merge_patch_errors(patch: dict, code: int, message: str) -> None:
    with pytest.raises(PatchError) as info:
        strategic_merge_patch("Deployment", make_deployment(NGINX), patch)
    assert info.value.code == code
    assert message in info.value.message


# ----------------------------------------------------------------------------- JSON merge patch


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": None, "c": 3}, {"a": 1, "c": 3}, id="null-deletes"),
        pytest.param(
            {"m": {"x": 1, "y": 2}},
            {"m": {"y": None, "z": {"k": None, "v": 1}}},
            {"m": {"x": 1, "z": {"v": 1}}},
            id="nested",
        ),
        pytest.param(
            make_service(),
            {"spec": {"ports": [{"port": 1}]}},
            {**make_service(), "spec": {**make_service()["spec"], "ports": [{"port": 1}]}},
            id="lists-replace",
        ),
        pytest.param({"m": "scalar"}, {"m": {"a": 1}}, {"m": {"a": 1}}, id="scalar-to-map"),
    ],
)
def test_json_merge_patch(original: dict, patch: dict, expected: dict) -> None:
    before = copy.deepcopy(original)
    assert json_merge_patch(original, patch) == expected
    assert original == before


def test_json_merge_patch_rejects_non_object() -> None:
    with pytest.raises(PatchError) as info:
        json_merge_patch({}, [1])  # type: ignore[arg-type]
    assert info.value.code == 400


# ----------------------------------------------------------------------------- JSON patch

DOC = {"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 80}, {"port": 81}]}}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param(
            [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
            {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": DOC["spec"]},
            id="add",
        ),
        pytest.param(
            [
                {"op": "test", "path": "/spec/ports/0/port", "value": 80},
                {"op": "replace", "path": "/spec/ports/0/port", "value": 8080},
            ],
            {"metadata": DOC["metadata"], "spec": {"ports": [{"port": 8080}, {"port": 81}]}},
            id="test-then-replace",
        ),
        pytest.param(
            [
                {"op": "remove", "path": "/spec/ports/1"},
                {"op": "add", "path": "/spec/ports/-", "value": {"port": 9}},
            ],
            {"metadata": DOC["metadata"], "spec": {"ports": [{"port": 80}, {"port": 9}]}},
            id="remove-and-append",
        ),
        pytest.param(
            [{"op": "move", "from": "/metadata/labels", "path": "/metadata/annotations"}],
            {"metadata": {"annotations": {"a": "1"}}, "spec": DOC["spec"]},
            id="move",
        ),
        pytest.param(
            [{"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/c"}],
            {"metadata": {"labels": {"a": "1", "c": "1"}}, "spec": DOC["spec"]},
            id="copy",
        ),
        pytest.param(
            [{"op": "add", "path": "/metadata/labels~1x", "value": 1}],
            {"metadata": {"labels": {"a": "1"}, "labels/x": 1}, "spec": DOC["spec"]},
            id="escaped-pointer",
        ),
    ],
)
def test_json_patch(ops: list, expected: dict) -> None:
    before = copy.deepcopy(DOC)
    assert json_patch(DOC, ops) == expected
    assert before == DOC


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        pytest.param(
            [{"op": "test", "path": "/metadata/labels/a", "value": "2"}],
            "testing value /metadata/labels/a failed: test failed",
            id="test-failed",
        ),
        pytest.param(
            [{"op": "add", "path": "/status/phase", "value": "x"}],
            'add operation does not apply: doc is missing path: "/status/phase": missing value',
            id="add-missing-parent",
        ),
        pytest.param(
            [{"op": "remove", "path": "/metadata/annotations"}],
            "error in remove for path: '/metadata/annotations': Unable to remove nonexistent key: "
            "annotations: missing value",
            id="remove-missing-key",
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/replicas", "value": 3}],
            "replace operation does not apply: doc is missing key: /spec/replicas: missing value",
            id="replace-missing-key",
        ),
        pytest.param(
            [{"op": "remove", "path": "/spec/ports/5"}],
            "error in remove for path: '/spec/ports/5': Unable to access invalid index: 5: "
            "invalid index referenced",
            id="remove-bad-index",
        ),
        pytest.param(
            [{"op": "move", "from": "/nope", "path": "/x"}],
            "move operation does not apply: doc is missing from path: /nope: missing value",
            id="move-missing-from",
        ),
        pytest.param([{"op": "frob", "path": "/x"}], "Unexpected kind: frob", id="bad-op"),
    ],
)
def test_json_patch_errors(ops: list, message: str) -> None:
    with pytest.raises(PatchError) as info:
        json_patch(DOC, ops)
    assert info.value.message == message
    assert info.value.code == 422


def test_json_patch_rejects_non_list() -> None:
    with pytest.raises(PatchError) as info:
        json_patch(DOC, {"op": "add"})  # type: ignore[arg-type]
    assert info.value.code == 400


def test_json_patch_copies_are_bounded_in_accumulated_size() -> None:
    # each copy doubles the annotations: 25 of them would make 3 GB
    doc = {"metadata": {"annotations": {"a": "x" * 100}}}
    ops = [
        {"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/k{i}"}
        for i in range(25)
    ]
    with pytest.raises(PatchError) as e:
        json_patch(doc, ops)
    assert e.value.code == 422
    assert e.value.message.startswith(
        "Unable to complete the copy, the accumulated size increase of copy is "
    )
    assert e.value.message.endswith(f"exceeding the limit {MAX_COPY_BYTES}")
    # a few copies stay within the limit
    small = json_patch(doc, ops[:3])
    assert set(small["metadata"]["annotations"]) == {"a", "k0", "k1", "k2"}
