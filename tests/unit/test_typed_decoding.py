"""Request bodies parsed and decoded as upstream's decoders do (kubesvc.api.bodies, .typed)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api import bodies, typed

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    },
}


def mismatch(api_version: str, kind: str, obj: Any) -> str:
    with pytest.raises(typed.TypeMismatch) as e:
        typed.decode(api_version, kind, obj)
    return str(e.value)


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            b'{"a":NaN}', "invalid character 'N' looking for beginning of value", id="nan"
        ),
        pytest.param(
            b'{"a":Infinity}', "invalid character 'I' looking for beginning of value", id="inf"
        ),
        pytest.param(b'{"a":-Infinity}', "invalid character 'I' in numeric literal", id="-inf"),
        pytest.param(
            b'{"a":1e999}', "json: cannot unmarshal number 1e999 into Go value of type float64"
        ),
        pytest.param(b'{"a":', "unexpected end of JSON input", id="truncated"),
        pytest.param(b'{"a" 1}', "invalid character '1' after object key", id="colon"),
        pytest.param(b"[1 2]", "invalid character '2' after array element", id="array-comma"),
        pytest.param(
            b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair", id="obj-comma"
        ),
        pytest.param(b'{"a":1}x', "invalid character 'x' after top-level value", id="trailing"),
        pytest.param(b"{a:1}", "invalid character 'a' looking for beginning of object key string"),
    ],
)
def test_json_syntax_errors_use_go_wording(raw: bytes, message: str) -> None:
    with pytest.raises(bodies.BodyError) as e:
        bodies.parse_json(raw)
    assert str(e.value) == message


def test_invalid_utf8_and_lone_surrogates_become_replacement_characters() -> None:
    assert bodies.parse_json(b'{"a":"\xff\xfe"}').value == {"a": "\ufffd\ufffd"}
    assert bodies.parse_json(b'{"a":"\\ud800x","\\udfff":1}').value == {
        "a": "\ufffdx",
        "\ufffd": 1,
    }
    # a valid pair stays one character
    assert bodies.parse_json(b'{"a":"\\ud83d\\ude00"}').value == {"a": "\U0001f600"}


def test_duplicate_keys_are_reported_where_they_are() -> None:
    parsed = bodies.parse_json(b'{"metadata":{"name":"a","name":"b"},"spec":{}}')
    decoded = typed.decode("v1", "ConfigMap", parsed.value, parsed.duplicates)
    assert decoded.obj["metadata"]["name"] == "b"  # the last wins, as in Go
    assert decoded.strict_errors() == ['duplicate field "metadata.name"', 'unknown field "spec"']


@pytest.mark.parametrize("depth", [999, 5000, 10_000])
def test_nesting_up_to_go_limit_parses(depth: int) -> None:
    value = bodies.parse_json("[" * depth + "]" * depth).value
    assert isinstance(value, list)


def test_nesting_beyond_go_limit_is_exceeded_max_depth() -> None:
    with pytest.raises(bodies.BodyError) as e:
        bodies.parse_json("[" * 10_001 + "]" * 10_001)
    assert str(e.value) == "invalid character '[' exceeded max depth"


def test_max_depth_ignores_brackets_in_strings() -> None:
    assert bodies.max_depth('{"a":"[[[[{{{","b":[[1]]}') == 3


# --------------------------------------------------------------------------- YAML

BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{n}: &{n} [{','.join(['*' + p] * 9)}]"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    with pytest.raises(bodies.BodyError) as e:
        bodies.parse_yaml(BILLION_LAUGHS)
    assert str(e.value) == (
        "error converting YAML to JSON: yaml: document contains excessive aliasing"
    )


def test_yaml_modest_aliases_are_expanded() -> None:
    doc = "base: &b {app: web}\none: *b\ntwo: *b\n"
    assert bodies.parse_yaml(doc) == {
        "base": {"app": "web"},
        "one": {"app": "web"},
        "two": {"app": "web"},
    }


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("a: 2020-01-01", {"a": "2020-01-01"}),  # timestamps stay strings
        ("a: 2.0", {"a": 2}),  # integral floats become integers
        ("a: 2.5", {"a": 2.5}),
        ("1: x", {"1": "x"}),
        ("true: x", {"true": "x"}),
        ("", None),
    ],
)
def test_yaml_to_json(doc: str, expected: Any) -> None:
    assert bodies.parse_yaml(doc) == expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("a: .nan", "json: unsupported value: NaN"),
        ("a: .inf", "json: unsupported value: +Inf"),
        ("a: -.inf", "json: unsupported value: -Inf"),
        ("a: &a [*a]", "yaml: anchor value contains itself"),
        ("a: [" * 2000, "exceeded"),
    ],
)
def test_yaml_refusals(doc: str, message: str) -> None:
    with pytest.raises(bodies.BodyError) as e:
        bodies.parse_yaml(doc)
    assert message in str(e.value)


# --------------------------------------------------------------------------- typed decoding


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"metadata": {"labels": "x"}},
            "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels"
            " of type map[string]string",
        ),
        (
            {"metadata": {"labels": {"a": 5}}},
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels"
            " of type string",
        ),
        (
            {"spec": {"ports": [{"port": "80"}]}},
            "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port"
            " of type int32",
        ),
        (
            {"spec": {"ports": [{"port": 80.5}]}},
            "json: cannot unmarshal number 80.5 into Go struct field ServicePort.spec.ports.port"
            " of type int32",
        ),
        (
            {"spec": {"ports": [{"port": 2**31}]}},
            "json: cannot unmarshal number 2147483648 into Go struct field"
            " ServicePort.spec.ports.port of type int32",
        ),
        (
            {"spec": {"ports": {"port": 80}}},
            "json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports"
            " of type []v1.ServicePort",
        ),
        (
            {"spec": "x"},
            "json: cannot unmarshal string into Go struct field Service.spec"
            " of type v1.ServiceSpec",
        ),
        (
            {"spec": {"type": "ExternalName", "externalName": 5}},
            "json: cannot unmarshal number into Go struct field ServiceSpec.spec.externalName"
            " of type string",
        ),
        (
            {"metadata": {"ownerReferences": True}},
            "json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.ownerReferences"
            " of type []v1.OwnerReference",
        ),
        (
            {"spec": {"ports": [{"port": 80, "targetPort": True}]}},
            "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort"
            " of type int32",
        ),
        (
            {"metadata": {"creationTimestamp": "yesterday"}},
            'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday"'
            ' as "2006"',
        ),
    ],
)
def test_wrong_types_get_go_messages(patch: dict[str, Any], message: str) -> None:
    obj = {**json.loads(json.dumps(SERVICE)), **patch}
    assert mismatch("v1", "Service", obj) == message


def test_cannot_handle_wording() -> None:
    assert typed.cannot_handle("apps/v1", "Deployment", typed.TypeMismatch("x")) == (
        'Deployment in version "v1" cannot be handled as a Deployment: x'
    )


def test_valid_objects_decode_unchanged() -> None:
    decoded = typed.decode("v1", "Service", json.loads(json.dumps(SERVICE)))
    assert decoded.obj == SERVICE
    assert decoded.strict_errors() == []


def test_unknown_fields_are_pruned_and_reported_with_paths() -> None:
    obj = json.loads(json.dumps(SERVICE))
    obj["spec"]["colour"] = "blue"
    obj["spec"]["ports"][0]["weight"] = 3
    decoded = typed.decode("v1", "Service", obj)
    assert "colour" not in decoded.obj["spec"]
    assert "weight" not in decoded.obj["spec"]["ports"][0]
    assert decoded.unknown == ["spec.ports[0].weight", "spec.colour"]  # document order


def test_nulls_become_what_go_produces() -> None:
    obj = {
        "metadata": {"name": "x", "labels": {"a": None}, "annotations": None},
        "spec": {"ports": [None, {"port": 80, "name": None}], "selector": None},
    }
    decoded = typed.decode("v1", "Service", obj).obj
    assert decoded == {
        "metadata": {"name": "x", "labels": {"a": ""}},
        "spec": {"ports": [{}, {"port": 80}]},
    }


def test_quantities_bytes_and_int_or_string() -> None:
    pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1.5}}}]}}
    assert typed.decode("v1", "Pod", pod).obj["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1.5"}
    }
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = True
    assert mismatch("v1", "Pod", pod) == typed.QUANTITY_FORMAT_ERROR
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1.2.3"
    assert mismatch("v1", "Pod", pod) == "unable to parse numeric part of quantity"
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1Qi"
    assert "quantit" in mismatch("v1", "Pod", pod)
    assert typed.decode("v1", "Secret", {"data": {"a": "YWJj"}}).obj == {"data": {"a": "YWJj"}}
    assert mismatch("v1", "Secret", {"data": {"a": "!!!!"}}) == (
        "illegal base64 data at input byte 0"
    )
    assert mismatch("v1", "Secret", {"data": {"a": "YWJjYWJ"}}) == (
        "illegal base64 data at input byte 4"
    )


def test_free_form_fields_are_bounded_in_depth() -> None:
    deep: Any = {}
    for _ in range(typed.MAX_FREE_FORM_DEPTH + 1):
        deep = {"f:x": deep}
    obj = {"metadata": {"managedFields": [{"manager": "m", "fieldsV1": deep}]}}
    assert "nested more than" in mismatch("v1", "ConfigMap", obj)
    obj["metadata"]["managedFields"][0]["fieldsV1"] = {"f:a": {"f:b": {}}}
    typed.decode("v1", "ConfigMap", obj)


def test_subresource_bodies_have_schemas() -> None:
    assert mismatch("autoscaling/v1", "Scale", {"spec": {"replicas": "3"}}) == (
        "json: cannot unmarshal string into Go struct field ScaleSpec.spec.replicas of type int32"
    )
    assert mismatch("v1", "DeleteOptions", {"gracePeriodSeconds": "x"}) == (
        "json: cannot unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds"
        " of type int64"
    )
    assert typed.decode("v1", "Binding", {"target": {"name": "n"}}).obj == {"target": {"name": "n"}}


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
SCHEMA_KEYS = [
    "metadata",
    "spec",
    "status",
    "labels",
    "ports",
    "port",
    "name",
    "selector",
    "targetPort",
    "containers",
    "resources",
    "limits",
    "data",
    "subsets",
    "addresses",
    "endpoints",
    "conditions",
    "ownerReferences",
    "finalizers",
    "replicas",
    "template",
]


@st.composite
def mutated_objects(draw: st.DrawFn) -> Any:
    """Valid-shaped objects with values of random types at schema-like keys."""
    keys = st.sampled_from(SCHEMA_KEYS) | st.text(max_size=6)
    return draw(
        st.recursive(
            json_values,
            lambda children: (
                st.dictionaries(keys, children, max_size=5) | st.lists(children, max_size=3)
            ),
            max_leaves=30,
        )
    )


KINDS = [
    ("v1", "Service"),
    ("v1", "Pod"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Endpoints"),
    ("v1", "Node"),
    ("v1", "Namespace"),
    ("v1", "Event"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress"),
    ("coordination.k8s.io/v1", "Lease"),
]


@pytest.mark.parametrize(("api_version", "kind"), KINDS)
@settings(max_examples=100, deadline=None, derandomize=True)
@given(value=mutated_objects())
def test_decoding_any_value_either_fails_cleanly_or_yields_typed_json(
    api_version: str, kind: str, value: Any
) -> None:
    try:
        decoded = typed.decode(api_version, kind, value)
    except typed.TypeMismatch as e:
        assert str(e)
        return
    # what decoding returns is always encodable JSON with no NaN, and decodes again the same
    text = json.dumps(decoded.obj, allow_nan=False)
    again = typed.decode(api_version, kind, json.loads(text))
    assert again.obj == decoded.obj
    assert again.unknown == []


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_parse_json_never_raises_anything_but_body_error(raw: bytes) -> None:
    try:
        value = bodies.parse_json(raw).value
    except bodies.BodyError:
        return
    json.dumps(value, allow_nan=False).encode()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=st.text(max_size=80))
def test_parse_yaml_never_raises_anything_but_body_error(raw: str) -> None:
    try:
        value = bodies.parse_yaml(raw)
    except bodies.BodyError:
        return
    assert not isinstance(value, float) or math.isfinite(value)
    json.dumps(value, allow_nan=False).encode()


def test_repair_leaves_out_what_does_not_decode() -> None:
    stored = {
        "metadata": {
            "name": "a",
            "labels": "x",
            "annotations": {"a": 1, "b": "c"},
            "ownerReferences": [5, {"uid": "u", "name": 7}],
        },
        "spec": {"ports": [{"port": "a", "nodePort": 1.5}, "x", {"port": 80}], "clusterIP": 5},
    }
    obj, dropped = typed.repair("v1", "Service", stored)
    assert obj == {
        "metadata": {"name": "a", "annotations": {"b": "c"}, "ownerReferences": [{"uid": "u"}]},
        "spec": {"ports": [{}, {"port": 80}]},
    }
    assert [d.split(":")[0] for d in dropped] == [
        "metadata.labels",
        "metadata.annotations.a",
        "metadata.ownerReferences[0]",
        "metadata.ownerReferences[1].name",
        "spec.ports[0].port",
        "spec.ports[0].nodePort",
        "spec.ports[1]",
        "spec.clusterIP",
    ]
    assert typed.repair("v1", "Service", [1])[0] == {}
    nan = {"spec": {"ports": [{"port": float("nan")}]}}
    assert typed.repair("v1", "Service", nan)[0] == {"spec": {"ports": [{}]}}


@pytest.mark.parametrize(("api_version", "kind"), KINDS)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(value=mutated_objects())
def test_repair_always_yields_what_decodes(api_version: str, kind: str, value: Any) -> None:
    obj, _ = typed.repair(api_version, kind, value)
    assert typed.decode(api_version, kind, obj).obj == obj


@pytest.mark.parametrize("depth", [500, 999])
def test_yaml_nested_as_deep_as_libyaml_allows_parses(depth: int) -> None:
    value = bodies.parse_yaml("{a: " + "[" * depth + "]" * depth + "}")
    assert isinstance(value["a"], list)


# ------------------------------------------------------------- unknown fields (strict decoding)


def unknown(api_version: str, kind: str, obj: Any) -> list[str]:
    return typed.decode(api_version, kind, obj).unknown


SCHEMA_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "web",
        "labels": {"app": "web", "anything/goes": "x"},
        "annotations": {"a": "b"},
        "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:x": {}}}}],
    },
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}],
        "type": "ClusterIP",
    },
}


def test_valid_service_has_no_unknown_fields() -> None:
    assert unknown("v1", "Service", SCHEMA_SERVICE) == []


def test_unknown_fields_paths_in_document_order() -> None:
    obj = json.loads(json.dumps(SCHEMA_SERVICE))
    obj["spec"]["foo"] = 1
    obj["spec"]["ports"][1]["bar"] = None
    obj["metadata"]["unknownMeta"] = "x"
    obj["extra"] = True
    assert unknown("v1", "Service", obj) == [
        "metadata.unknownMeta",
        "spec.ports[1].bar",
        "spec.foo",
        "extra",
    ]


def test_unknown_fields_in_nested_templates() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "nginx",
                            "resources": {"limits": {"cpu": "100m", "memory": 1}},
                            "ports": [{"containerPort": 80}],
                            "unknownNested": 1,
                        }
                    ]
                },
            },
            "unknown1": 1,
        },
    }
    assert unknown("apps/v1", "Deployment", deploy) == [
        "spec.template.spec.containers[0].unknownNested",
        "spec.unknown1",
    ]


def test_free_form_maps() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}, "binaryData": {"b": "YQ=="}}
    assert unknown("v1", "ConfigMap", cm) == []
    secret = {"kind": "Secret", "data": {"x": "YQ=="}, "stringData": {"y": "z"}, "type": "Opaque"}
    assert unknown("v1", "Secret", secret) == []
    node = {"status": {"capacity": {"cpu": "4", "pods": 110}}}
    assert unknown("v1", "Node", node) == []


def test_other_kinds() -> None:
    ing = {
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "a.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "s", "port": {"number": 80}}},
                                "weight": 3,
                            }
                        ]
                    },
                }
            ],
        }
    }
    assert unknown("networking.k8s.io/v1", "Ingress", ing) == ["spec.rules[0].http.paths[0].weight"]
    lease = {"spec": {"holderIdentity": "x", "renewTime": "2024-01-01T00:00:00.000000Z"}}
    assert unknown("coordination.k8s.io/v1", "Lease", lease) == []
    eps = {"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "zone": "z"}]}
    assert unknown("discovery.k8s.io/v1", "EndpointSlice", eps) == []
    ev = {"involvedObject": {"kind": "Pod"}, "reason": "r", "count": 1, "colour": "red"}
    assert unknown("v1", "Event", ev) == ["colour"]


def test_unknown_fields_edge_cases() -> None:
    assert unknown("v1", "NoSuchKind", {"spec": {"x": 1}}) == []
    assert unknown("batch/v2", "Job", {"spec": {"x": 1}}) == []
    # wrong value types fail decoding before anything is reported
    with pytest.raises(typed.TypeMismatch):
        unknown("v1", "Service", {"spec": "x", "metadata": []})
    many = {"spec": {f"f{i}": i for i in range(150)}}
    decoded = typed.decode("v1", "Service", many)
    assert len(decoded.unknown) == len(decoded.strict_errors()) == typed.MAX_STRICT_ERRORS
    assert decoded.obj == {"spec": {}}  # all of them pruned


def test_unknown_fields_are_pruned() -> None:
    obj = json.loads(json.dumps(SCHEMA_SERVICE))
    obj["spec"]["ports"][0]["bogus"] = 1
    obj["spec"]["foo"] = {"deep": 1}
    obj["extra"] = 1
    decoded = typed.decode("v1", "Service", obj)
    assert decoded.unknown == ["spec.ports[0].bogus", "spec.foo", "extra"]
    assert decoded.obj == SCHEMA_SERVICE
    assert typed.decode("v1", "Service", decoded.obj).unknown == []
