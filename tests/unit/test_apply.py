"""Server-side apply and managedFields bookkeeping."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubesvc.api.apply import (
    LAST_APPLIED,
    ApplyConflict,
    apply_patch,
    conflict_causes,
    conflict_message,
    decode_fields,
    default_manager,
    encode_fields,
    path_string,
    update_managed_fields,
)
from kubesvc.api.patch import PatchError

T0, T1, T2, T3 = (f"2024-05-01T10:0{i}:00Z" for i in range(4))
PORT80 = 'k:{"port":80,"protocol":"TCP"}'


def svc_config(*ports: dict, labels: dict | None = None, **spec: Any) -> dict:
    """An apply configuration as `kubectl apply --server-side -f svc.yaml` sends it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": labels or {"app": "web"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": list(ports) or [{"port": 80, "targetPort": 8080}],
            **spec,
        },
    }


def defaulted(obj: dict) -> dict:
    """What the server stores after defaulting (protocol, type, sessionAffinity)."""
    out = copy.deepcopy(obj)
    for port in out["spec"].get("ports", []):
        port.setdefault("protocol", "TCP")
    out["spec"].setdefault("type", "ClusterIP")
    out["spec"].setdefault("sessionAffinity", "None")
    return out


def entries(obj: dict) -> dict[str, dict]:
    """managedFields by manager name."""
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


def fields(obj: dict, manager: str) -> dict:
    return entries(obj)[manager]["fieldsV1"]


def applied_by_kubectl(config: dict | None = None) -> dict:
    return defaulted(apply_patch("Service", None, config or svc_config(), "kubectl", False, T0))


# ----------------------------------------------------------------------------- apply


def test_apply_creates_object_with_managed_fields() -> None:
    config = svc_config()
    before = copy.deepcopy(config)
    out = apply_patch("Service", None, config, "kubectl", False, T0)
    assert config == before
    assert out["spec"] == {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    assert out["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:ports": {PORT80: {".": {}, "f:port": {}, "f:targetPort": {}}},
                    "f:selector": {"f:app": {}},
                },
            },
        }
    ]


APPLY_AGAIN = [
    pytest.param(
        svc_config({"port": 8080, "targetPort": 8080}),
        {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 8080}]},
        {"app": "web"},
        id="changed-port-replaces-item",
    ),
    pytest.param(
        svc_config({"port": 80, "targetPort": 9090}),
        {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 9090, "protocol": "TCP"}],
        },
        {"app": "web"},
        id="changed-target-port",
    ),
    pytest.param(
        svc_config(labels={"tier": "fe"}),
        {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
        {"tier": "fe"},
        id="removed-label-is-removed",
    ),
    pytest.param(
        {**svc_config(), "spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
        {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        {"app": "web"},
        id="removed-selector-map-dropped",
    ),
]


@pytest.mark.parametrize(("config", "spec", "labels"), APPLY_AGAIN)
def test_apply_again_same_manager(config: dict, spec: dict, labels: dict) -> None:
    live = applied_by_kubectl()
    out = apply_patch("Service", live, config, "kubectl", False, T1)
    expected_spec = {**spec, "type": "ClusterIP", "sessionAffinity": "None"}
    assert out["spec"] == expected_spec
    assert out["metadata"]["labels"] == labels
    entry = entries(out)["kubectl"]
    assert entry["time"] == T1
    assert decode_fields(entry["fieldsV1"]) == decode_fields(
        apply_patch("Service", None, config, "kubectl", False, T1)["metadata"]["managedFields"][0][
            "fieldsV1"
        ]
    )


def test_apply_unchanged_keeps_time() -> None:
    live = applied_by_kubectl()
    out = apply_patch("Service", live, svc_config(), "kubectl", False, T1)
    assert out == live


def test_apply_keeps_fields_other_managers_own() -> None:
    live = applied_by_kubectl(svc_config(labels={"app": "web", "tier": "fe"}))
    new = copy.deepcopy(live)
    new["metadata"]["labels"]["tier"] = "be"
    update_managed_fields("Service", live, new, "kubectl-label", "Update", T1)
    out = apply_patch("Service", new, svc_config(), "kubectl", False, T2)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "be"}


def test_apply_conflict_with_update_manager() -> None:
    live = applied_by_kubectl()
    edited = copy.deepcopy(live)
    edited["spec"]["ports"][0]["targetPort"] = 9090
    update_managed_fields("Service", live, edited, "kubectl-client-side-apply", "Update", T1)
    with pytest.raises(ApplyConflict) as info:
        apply_patch("Service", edited, svc_config(), "kubectl", False, T2)
    path = '.spec.ports[port=80,protocol="TCP"].targetPort'
    assert info.value.message == (
        f'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: {path}'
    )
    assert info.value.causes() == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using v1',
            "field": path,
        }
    ]


def test_apply_force_takes_ownership() -> None:
    live = applied_by_kubectl()
    edited = copy.deepcopy(live)
    edited["spec"]["ports"][0]["targetPort"] = 9090
    update_managed_fields("Service", live, edited, "kubectl-edit", "Update", T1)
    assert "kubectl-edit" in entries(edited)
    out = apply_patch("Service", edited, svc_config(), "kubectl", True, T2)
    assert out["spec"]["ports"][0]["targetPort"] == 8080
    assert "kubectl-edit" not in entries(out)  # its only field moved to the applier
    assert fields(out, "kubectl")["f:spec"]["f:ports"][PORT80]["f:targetPort"] == {}


def test_apply_same_value_shares_ownership() -> None:
    live = applied_by_kubectl()
    other = svc_config(labels={"app": "web"})
    del other["spec"]
    out = apply_patch("Service", live, other, "other-applier", False, T1)
    assert set(entries(out)) == {"kubectl", "other-applier"}
    assert fields(out, "other-applier") == {"f:metadata": {"f:labels": {"f:app": {}}}}


def test_apply_conflicts_between_appliers_listed_per_manager() -> None:
    live = applied_by_kubectl()
    config = svc_config({"port": 80, "targetPort": 1}, labels={"app": "api"})
    with pytest.raises(ApplyConflict) as info:
        apply_patch("Service", live, config, "helm", False, T1)
    assert info.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl":\n'
        "- .metadata.labels.app\n"
        '- .spec.ports[port=80,protocol="TCP"].targetPort'
    )


def test_kubectl_migrates_from_client_side_apply() -> None:
    """Fields still equal to the last-applied annotation are taken over without --force."""
    last = svc_config()
    created = defaulted(copy.deepcopy(last))
    created["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(last)}
    update_managed_fields("Service", None, created, "kubectl-client-side-apply", "Update", T0)
    out = apply_patch("Service", created, svc_config({"port": 80, "targetPort": 9090}), "kubectl",
                      False, T1)  # fmt: skip
    assert out["spec"]["ports"][0]["targetPort"] == 9090
    assert json.loads(out["metadata"]["annotations"][LAST_APPLIED])["spec"]["ports"] == [
        {"port": 80, "targetPort": 9090}
    ]
    with pytest.raises(ApplyConflict):
        apply_patch("Service", created, svc_config({"port": 80, "targetPort": 9090}), "other",
                    False, T1)  # fmt: skip


def test_apply_status_not_owned_on_main_resource() -> None:
    config = {**svc_config(), "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}
    out = apply_patch("Service", None, config, "kubectl", False, T0)
    assert "f:status" not in fields(out, "kubectl")
    status_config = {**svc_config(), "status": config["status"]}
    del status_config["metadata"]["labels"]
    status = apply_patch("Service", out, status_config, "lb", False, T1, subresource="status")
    lb = entries(status)["lb"]
    assert lb["subresource"] == "status"
    assert lb["fieldsV1"] == {"f:status": {"f:loadBalancer": {"f:ingress": {}}}}


def test_apply_rejects_managed_fields_in_config() -> None:
    config = svc_config()
    config["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(PatchError) as info:
        apply_patch("Service", None, config, "kubectl", False, T0)
    assert info.value.code == 400


def test_apply_deployment_containers() -> None:
    config = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "finalizers": ["example.com/x"]},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }
    out = apply_patch("Deployment", None, config, "mgr", False, T0)
    assert fields(out, "mgr") == {
        "f:metadata": {"f:finalizers": {'v:"example.com/x"': {}}},
        "f:spec": {
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"c"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                'k:{"containerPort":80,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:containerPort": {},
                                }
                            },
                        }
                    }
                },
            },
        },
    }
    # A second container from another applier is kept; dropping ours removes only ours.
    other = copy.deepcopy(config)
    del other["metadata"]["finalizers"]
    other["spec"]["template"]["spec"]["containers"] = [{"name": "side", "image": "s"}]
    both = apply_patch("Deployment", out, other, "other", False, T1)
    assert [c["name"] for c in both["spec"]["template"]["spec"]["containers"]] == ["c", "side"]
    mine = copy.deepcopy(config)
    mine["spec"]["template"]["spec"]["containers"] = [{"name": "c2", "image": "i"}]
    final = apply_patch("Deployment", both, mine, "mgr", False, T2)
    assert [c["name"] for c in final["spec"]["template"]["spec"]["containers"]] == ["side", "c2"]


# ----------------------------------------------------------------------------- Update operations


def test_update_on_create_records_everything() -> None:
    obj = defaulted(svc_config())
    update_managed_fields("Service", None, obj, "kubectl-create", "Update", T0)
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:ports": {
                        ".": {},
                        PORT80: {".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}},
                    },
                    "f:selector": {".": {}, "f:app": {}},
                    "f:sessionAffinity": {},
                    "f:type": {},
                },
            },
        }
    ]


UPDATE_CASES = [
    pytest.param(
        lambda o: o["metadata"]["labels"].update(tier="fe"),
        {"kubectl-create", "kubectl-label"},
        {"f:metadata": {"f:labels": {"f:tier": {}}}},
        id="new-label-new-manager",
    ),
    pytest.param(
        lambda o: o["spec"].update(type="NodePort"),
        {"kubectl-create", "kubectl-label"},
        {"f:spec": {"f:type": {}}},
        id="changed-field-moves",
    ),
    pytest.param(
        lambda o: o["metadata"].update(resourceVersion="7", generation=2),
        {"kubectl-create"},
        None,
        id="stripped-fields-not-tracked",
    ),
    pytest.param(
        lambda o: o.update(status={"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}),
        {"kubectl-create"},
        None,
        id="status-ignored-on-main-resource",
    ),
]


@pytest.mark.parametrize(("change", "managers", "label_fields"), UPDATE_CASES)
def test_update_managed_fields(change: Any, managers: set[str], label_fields: dict | None) -> None:
    old = defaulted(svc_config())
    update_managed_fields("Service", None, old, "kubectl-create", "Update", T0)
    new = copy.deepcopy(old)
    change(new)
    update_managed_fields("Service", old, new, "kubectl-label", "Update", T1)
    assert set(entries(new)) == managers
    if label_fields is not None:
        assert fields(new, "kubectl-label") == label_fields
        assert entries(new)["kubectl-label"]["time"] == T1
    if "kubectl-label" in managers and "f:type" in json.dumps(label_fields):
        assert "f:type" not in fields(new, "kubectl-create")["f:spec"]
    assert entries(new)["kubectl-create"]["time"] == T0


def test_update_removed_fields_leave_all_managers() -> None:
    old = defaulted(svc_config(labels={"app": "web", "tier": "fe"}))
    update_managed_fields("Service", None, old, "kubectl-create", "Update", T0)
    new = copy.deepcopy(old)
    del new["metadata"]["labels"]["tier"]
    update_managed_fields("Service", old, new, "kubectl-edit", "Update", T1)
    assert "kubectl-edit" not in entries(new)  # removing a field owns nothing
    assert "f:tier" not in fields(new, "kubectl-create")["f:metadata"]["f:labels"]


def test_update_untracked_object_stays_untracked() -> None:
    old = defaulted(svc_config())
    new = copy.deepcopy(old)
    new["spec"]["type"] = "NodePort"
    update_managed_fields("Service", old, new, "kubectl-edit", "Update", T1)
    assert "managedFields" not in new["metadata"]


def test_update_with_managed_fields_in_request_replaces_them() -> None:
    old = defaulted(svc_config())
    update_managed_fields("Service", None, old, "kubectl-create", "Update", T0)
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{}]
    update_managed_fields("Service", old, new, "kubectl-edit", "Update", T1)
    assert "managedFields" not in new["metadata"]


def test_update_caps_update_managers() -> None:
    obj = defaulted(svc_config())
    update_managed_fields("Service", None, obj, "m00", "Update", "2024-05-01T00:00:00Z")
    for i in range(1, 12):
        new = copy.deepcopy(obj)
        new["metadata"]["labels"][f"l{i}"] = "x"
        update_managed_fields(
            "Service", obj, new, f"m{i:02}", "Update", f"2024-05-01T00:00:{i:02}Z"
        )
        obj = new
    names = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(names) == 10
    assert "ancient-changes" in names and "m00" not in names and "m11" in names


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("path", "text"),
    [
        pytest.param(
            (
                ("f", "spec"),
                ("f", "ports"),
                ("k", (("port", 80), ("protocol", "TCP"))),
                ("f", "targetPort"),
            ),
            '.spec.ports[port=80,protocol="TCP"].targetPort',
            id="keyed",
        ),
        pytest.param(
            (("f", "metadata"), ("f", "finalizers"), ("v", "a")),
            '.metadata.finalizers[="a"]',
            id="set-item",
        ),
        pytest.param((("f", "x"), ("i", 3)), ".x[3]", id="index"),
    ],
)
def test_path_string(path: tuple, text: str) -> None:
    assert path_string(path) == text


def test_fields_v1_round_trip() -> None:
    raw = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:finalizers": {'v:"x"': {}}},
        "f:spec": {"f:ports": {PORT80: {".": {}, "f:port": {}}}, "f:type": {}},
    }
    assert encode_fields(decode_fields(raw)) == raw


@pytest.mark.parametrize(
    ("conflicts", "message"),
    [
        pytest.param(
            [("kubectl-client-side-apply", ".spec.type")],
            'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply": .spec.type',
            id="bare-name",
        ),
        pytest.param(
            [('{"manager":"kubelet","operation":"Update","apiVersion":"v1","subresource":"status"}',
              ".status.phase")],
            'Apply failed with 1 conflict: conflict with "kubelet" with subresource "status" '
            "using v1: .status.phase",
            id="subresource",
        ),
        pytest.param(
            [
                ('{"manager":"b","operation":"Apply"}', ".x"),
                ('{"manager":"a","operation":"Update","apiVersion":"v1"}', ".y"),
                ('{"manager":"b","operation":"Apply"}', ".z"),
            ],
            'Apply failed with 3 conflicts: conflicts with "a" using v1:\n- .y\n'
            'conflicts with "b":\n- .x\n- .z',
            id="grouped-by-manager",
        ),
    ],
)  # fmt: skip
def test_conflict_message(conflicts: list[tuple[str, str]], message: str) -> None:
    assert conflict_message(conflicts) == message
    assert [c["field"] for c in conflict_causes(conflicts)] == [p for _, p in conflicts]


@pytest.mark.parametrize(
    ("user_agent", "manager"),
    [
        pytest.param("kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd", "kubectl", id="kubectl"),
        pytest.param("OpenAPI-Generator/37.0.2/python", "OpenAPI-Generator", id="python-client"),
        pytest.param("", "", id="empty"),
        pytest.param("x" * 200, "x" * 128, id="truncated"),
        pytest.param("a\tb/1", "ab", id="unprintable-dropped"),
    ],
)
def test_default_manager(user_agent: str, manager: str) -> None:
    assert default_manager(user_agent) == manager
