"""CustomResourceDefinitions: validation messages, status (names, conditions), printer
columns and their JSONPath, custom object decoding, OpenAPI documents."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api import typed
from kubesvc.api.crd import columns, jsonpath, objects, openapi
from kubesvc.api.crd.kinds import kinds_for
from kubesvc.api.crd.status import desired_statuses
from kubesvc.api.crd.validation import validate_crd, validate_crd_update

NOW = "2026-01-01T00:00:00Z"


def crd(group: str = "example.com", plural: str = "widgets", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "creationTimestamp": NOW},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "default": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    body["spec"].update(spec)
    return body


def texts(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_crd(obj)]


def test_a_valid_crd() -> None:
    assert texts(crd()) == []


def test_name_group_scope_and_names() -> None:
    bad = crd(scope="Everywhere", group="example")
    bad["metadata"]["name"] = "widgets"
    bad["spec"]["names"]["kind"] = "wid get"
    assert texts(bad) == [
        'metadata.name: Invalid value: "widgets": must be spec.names.plural+"."+spec.group',
        'spec.group: Invalid value: "example": should be a domain with at least one dot',
        'spec.scope: Unsupported value: "Everywhere": supported values: "Cluster", "Namespaced"',
        'spec.names.kind: Invalid value: "wid get": may have mixed case, but should otherwise '
        "match: [a-z]([-a-z0-9]*[a-z0-9])?",
    ]


def test_preserve_unknown_fields_is_per_schema_in_v1() -> None:
    assert texts(crd(preserveUnknownFields=True)) == [
        "spec.preserveUnknownFields: Invalid value: true: cannot set to true, set "
        "x-kubernetes-preserve-unknown-fields to true in openAPIV3Schema instead"
    ]


def test_protected_groups_need_approval() -> None:
    errs = texts(crd(group="things.k8s.io"))
    assert errs == [
        "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups "
        'must have approval annotation "api-approved.kubernetes.io", see '
        "https://github.com/kubernetes/enhancements/pull/1111"
    ]
    approved = crd(group="things.k8s.io")
    approved["metadata"]["annotations"] = {"api-approved.kubernetes.io": "https://x"}
    assert texts(approved) == []


def test_versions_need_one_storage_version_and_schemas() -> None:
    obj = crd()
    v = obj["spec"]["versions"][0]
    obj["spec"]["versions"].append({**copy.deepcopy(v), "name": "v2"})
    errs = texts(obj)
    assert errs[-1].endswith("must have exactly one version marked as storage version")
    obj = crd()
    del obj["spec"]["versions"][0]["schema"]
    assert texts(obj) == [
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
    ]


def test_structural_schema_rules() -> None:
    obj = crd()
    schema = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    props = schema["properties"]
    props["spec"]["properties"]["untyped"] = {"description": "no type"}
    props["spec"]["properties"]["list"] = {"type": "array", "items": {"type": "string"}}
    props["spec"]["properties"]["list"]["x-kubernetes-list-type"] = "map"
    props["spec"]["properties"]["re"] = {"type": "string", "pattern": "(a"}
    props["metadata"] = {"type": "object", "properties": {"labels": {"type": "object"}}}
    p = "spec.versions[0].schema.openAPIV3Schema"
    # upstream sorts the structural errors
    assert texts(obj) == [
        f"{p}.properties[metadata]: Forbidden: must not specify anything other than name and "
        "generateName, but metadata is implicitly specified",
        f"{p}.properties[spec].properties[list].x-kubernetes-list-map-keys: Required value: "
        "must not be empty if x-kubernetes-list-type is map",
        f'{p}.properties[spec].properties[re].pattern: Invalid value: "(a": must be a valid '
        "regular expression, but isn't: error parsing regexp: missing ): (a",
        f"{p}.properties[spec].properties[untyped].type: Required value: must not be empty for "
        "specified object fields",
    ]


def test_defaults_must_be_valid_for_their_schema() -> None:
    obj = crd()
    props = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"]["size"]["default"] = "big"
    props["spec"]["properties"]["mode"] = {"type": "string", "enum": ["a"], "default": "b"}
    props["spec"]["properties"]["obj"] = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "default": {"a": 1, "b": 2},
    }
    p = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties"
    assert texts(obj) == [
        f'{p}[mode].default: Unsupported value: "b": supported values: "a"',
        f'{p}[obj].default: Invalid value: {{"a":1,"b":2}}: must not have unknown fields: b',
        f'{p}[size].default: Invalid value: "string": default in body must be of type integer: '
        '"string"',
    ]


def test_value_validations_are_not_structural_except_int_or_string() -> None:
    obj = crd()
    props = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"]["port"] = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    props["spec"]["properties"]["either"] = {
        "type": "object",
        "anyOf": [{"required": ["a"]}, {"type": "object", "description": "b"}],
        "properties": {"a": {"type": "string"}},
    }
    p = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[either]"
    assert texts(obj) == [
        f"{p}.anyOf[1].description: Forbidden: must be empty to be structural",
        f"{p}.anyOf[1].type: Forbidden: must be empty to be structural",
    ]


def test_columns_and_scale_paths() -> None:
    obj = crd()
    v = obj["spec"]["versions"][0]
    v["additionalPrinterColumns"] = [{"name": "X", "type": "float", "jsonPath": "spec.x"}]
    v["subresources"] = {"scale": {"specReplicasPath": ".status.r", "statusReplicasPath": ""}}
    p = "spec.versions[0]"
    assert texts(obj) == [
        f'{p}.additionalPrinterColumns[0].type: Unsupported value: "float": supported values: '
        '"integer", "number", "string", "boolean", "date"',
        f'{p}.additionalPrinterColumns[0].jsonPath: Invalid value: "spec.x": must be a simple '
        "json path: unrecognized character in action: 's'",
        f'{p}.subresources.scale.specReplicasPath: Invalid value: ".status.r": should be a '
        "json path under .spec.",
        f"{p}.subresources.scale.statusReplicasPath: Required value",
    ]


def test_scope_and_group_are_immutable() -> None:
    old = crd()
    new = crd(scope="Cluster")
    assert [str(e) for e in validate_crd_update(new, old)] == [
        'spec.scope: Invalid value: "Cluster": field is immutable'
    ]


def test_names_conflicts_and_conditions() -> None:
    first = crd()
    second = crd(plural="gadgets")
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    other_group = crd(group="other.com")
    statuses = desired_statuses([second, first, other_group], NOW)
    ok = {c["type"]: c for c in statuses["widgets.example.com"]["conditions"]}
    assert ok["NamesAccepted"]["reason"] == "NoConflicts"
    assert ok["Established"]["status"] == "True"
    assert statuses["widgets.example.com"]["acceptedNames"]["listKind"] == "WidgetList"
    bad = {c["type"]: c for c in statuses["gadgets.example.com"]["conditions"]}
    assert bad["NamesAccepted"]["status"] == "False"
    assert bad["NamesAccepted"]["message"] == '"Widget" is already in use'
    assert bad["Established"]["reason"] == "NotAccepted"
    assert "acceptedNames" not in statuses["gadgets.example.com"]
    # another group may use the same names
    other = {c["type"]: c for c in statuses["widgets.other.com"]["conditions"]}
    assert other["NamesAccepted"]["status"] == "True"
    # once accepted, a CRD keeps its names even when an older one asks for them
    first["status"] = statuses["widgets.example.com"]
    assert desired_statuses([first], NOW)["widgets.example.com"] == first["status"]


def test_terminating_condition() -> None:
    obj = crd()
    obj["metadata"]["deletionTimestamp"] = NOW
    conds = {
        c["type"]: c for c in desired_statuses([obj], NOW)["widgets.example.com"]["conditions"]
    }
    assert conds["Terminating"]["reason"] == "InstanceDeletionInProgress"


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (".spec.size", [3]),
        (".spec.list[*].name", ["a", "b"]),
        (".spec.list[1].name", ["b"]),
        (".spec.list[-1].name", ["b"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type!='Ready')].type", ["Other"]),
        (".spec.list[?(@.port>80)].name", ["b"]),
        (".metadata.labels['app.kubernetes.io/name']", ["x"]),
        ("{.spec.size}", [3]),
        (".spec.missing", []),
        (".spec.size.deeper", []),
    ],
)
def test_jsonpath(path: str, want: list[Any]) -> None:
    obj = {
        "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
        "spec": {"size": 3, "list": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "F"}]
        },
    }
    assert jsonpath.find(jsonpath.parse(path), obj) == want


@pytest.mark.parametrize("bad", ["spec.x", ".a..b", ".a[", ".a[?(@.x =~ 1)]", "." + "a" * 600])
def test_jsonpath_errors(bad: str) -> None:
    with pytest.raises(jsonpath.JsonPathError):
        jsonpath.parse(bad)


@given(st.text(max_size=60))
def test_jsonpath_never_crashes(text: str) -> None:
    try:
        steps = jsonpath.parse(text)
    except jsonpath.JsonPathError:
        return
    jsonpath.find(steps, {"a": [1, {"b": None}], "c": "d"})


def test_columns_as_upstream_prints_them() -> None:
    cols = (
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Names", "type": "string", "jsonPath": ".spec.list[*].name"},
        {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"},
        {"name": "Ready", "type": "boolean", "jsonPath": ".spec.ready"},
        {"name": "Missing", "type": "string", "jsonPath": ".spec.none"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Wrong", "type": "integer", "jsonPath": ".spec.hosts"},
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    obj = {
        "metadata": {"name": "w", "creationTimestamp": (now - timedelta(minutes=5)).isoformat()},
        "spec": {"size": 3, "list": [{"name": "a"}, {"name": "b"}], "hosts": ["x"], "ready": True},
    }
    assert columns.row_cells(cols, obj, now) == ["w", 3, "a b", '["x"]', True, None, "5m", None]
    defs = columns.column_definitions(cols[:1])
    assert [d["name"] for d in defs] == ["Name", "Size"]
    assert defs[1]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.size"
    )


def test_custom_object_decoding_prunes_and_reports() -> None:
    kind = kinds_for(crd())[0]
    obj, strict = objects.decode(
        kind,
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "bogus": 1},
            "spec": {"size": 2, "extra": True},
            "other": 1,
        },
    )
    assert obj == {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 2},
    }
    assert strict == [
        'unknown field "metadata.bogus"',
        'unknown field "spec.extra"',
        'unknown field "other"',
    ]
    with pytest.raises(typed.TypeMismatch, match=r"ObjectMeta\.metadata\.labels"):
        objects.decode(kind, {"metadata": {"labels": "x"}})
    deep: Any = 1
    for _ in range(typed.MAX_FREE_FORM_DEPTH + 1):
        deep = [deep]
    with pytest.raises(typed.TypeMismatch, match="nested more than"):
        objects.decode(kind, {"metadata": {"name": "w"}, "spec": deep})


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "x"]), _json)
)
def test_hostile_custom_objects_are_errors_not_crashes(body: dict[str, Any]) -> None:
    kind = kinds_for(crd())[0]
    try:
        obj, _ = objects.decode(kind, body)
    except typed.TypeMismatch:
        return
    obj.setdefault("metadata", {})
    objects.apply_defaults(kind, obj)
    errs = objects.validate(kind, obj)
    assert all(str(e) for e in errs)


def test_openapi_document_for_explain() -> None:
    obj = crd()
    obj["spec"]["versions"][0]["subresources"] = {"status": {}}
    kind = kinds_for(obj)[0]
    doc = openapi.document("example.com", "v1", [kind])
    schemas = doc["components"]["schemas"]
    widget = schemas["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    assert widget["properties"]["metadata"]["allOf"][0]["$ref"].endswith("v1.ObjectMeta")
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status" in doc["paths"]


def test_server_side_apply_merges_list_maps_of_custom_objects() -> None:
    from kubesvc.api import apply, mergekeys
    from kubesvc.api.crd import ssa

    obj = crd()
    spec = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["ports"] = {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
    }
    spec["properties"]["tags"] = {"type": "array", "items": {"type": "string"}}
    kinds = kinds_for(obj)
    ssa.register(kinds)
    try:
        name = ssa.type_name(kinds[0])
        live = {"metadata": {"name": "w"}, "spec": {"ports": [{"name": "a"}], "tags": ["x"]}}
        config = {"metadata": {"name": "w"}, "spec": {"ports": [{"name": "b"}], "tags": ["y"]}}
        merged = apply.merge(name, live, config)
        assert merged["spec"] == {"ports": [{"name": "a"}, {"name": "b"}], "tags": ["y"]}
    finally:
        ssa.register([])
    assert name not in mergekeys.TYPES


@pytest.mark.parametrize(
    ("replicas", "error"),
    [
        (3, None),
        (-1, "spec.replicas: Invalid value: -1: should be a non-negative integer"),
        ("x", 'spec.replicas: Invalid value: "x": should be a non-negative integer'),
        (
            2**31,
            "spec.replicas: Invalid value: 2147483648: should be less than or equal to 2147483647",
        ),
    ],
)
def test_scale_replicas_must_be_an_int32(replicas: Any, error: str | None) -> None:
    obj = crd()
    version = obj["spec"]["versions"][0]
    version["subresources"] = {
        "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
    }
    version["schema"]["openAPIV3Schema"]["x-kubernetes-preserve-unknown-fields"] = True
    kind = kinds_for(obj)[0]
    widget = {"metadata": {"name": "w", "namespace": "d"}, "spec": {"replicas": replicas}}
    errs = [str(e) for e in objects.validate(kind, widget)]
    assert errs == ([error] if error else [])
    scale = objects.to_scale(kind, {**widget, "status": {"replicas": 2}})
    assert scale["status"]["replicas"] == 2
