"""Structural schemas of custom resources: pruning, defaulting and validation with upstream's
messages, and hostile schemas and objects (Hypothesis)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.api.crd import schema
from kubesvc.api.crd.kinds import kinds_for, version_priority
from kubesvc.api.errors import FieldError

WIDGET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["color"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "tags": {
                    "type": "array",
                    "maxItems": 2,
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer", "default": 80},
                        },
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "port": {"x-kubernetes-int-or-string": True},
                "ip": {"type": "string", "format": "ipv4"},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}
ROOT = schema.compile_schema(WIDGET)


def texts(errs: list[FieldError]) -> list[str]:
    return [str(e) for e in errs]


def obj(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_prune_removes_unknown_fields_and_reports_paths() -> None:
    o = obj(color="red", extra=1, ports=[{"name": "a", "junk": True}], raw={"any": {"x": 1}})
    o["top"] = 1
    assert schema.prune(ROOT, o) == ["spec.extra", "spec.ports[0].junk", "top"]
    assert o["spec"] == {"color": "red", "ports": [{"name": "a"}], "raw": {"any": {"x": 1}}}
    assert o["metadata"] == {"name": "w"}


def test_defaults_fill_missing_and_nested_fields() -> None:
    o = obj(color="red", ports=[{"name": "a"}, {"name": "b", "port": 8}])
    schema.default(ROOT, o)
    assert o["spec"]["size"] == 3
    assert o["spec"]["ports"] == [{"name": "a", "port": 80}, {"name": "b", "port": 8}]
    o = obj(color="red", size=None)
    schema.default(ROOT, o)
    assert o["spec"]["size"] == 3  # null and not nullable: defaulted, as upstream


def test_upstream_messages() -> None:
    o = obj(
        size="big",
        color="green",
        name="TooLongName",
        ratio=1,
        tags=["a", "a", "b"],
        ports=[{"name": "a"}, {"name": "a"}],
        port=True,
        ip="300.1.1.1",
    )
    assert texts(schema.validate(ROOT, o)) == [
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"',
        'spec.color: Unsupported value: "green": supported values: "red", "blue"',
        "spec.name: Too long: may not be more than 5 bytes",
        "spec.name: Invalid value: \"TooLongName\": spec.name in body should match '^[a-z]+$'",
        "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
        "spec.tags: Too many: 3: must have at most 2 items",
        'spec.tags[1]: Duplicate value: "a"',
        'spec.ports[1]: Duplicate value: {"name":"a"}',
        'spec.port: Invalid value: "boolean": spec.port in body must be of type '
        'integer,string: "boolean"',
        'spec.ip: Invalid value: "300.1.1.1": spec.ip in body must be of type ipv4: "300.1.1.1"',
    ]


def test_required_and_bounds() -> None:
    assert texts(schema.validate(ROOT, obj(size=0))) == [
        "spec.color: Required value",
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
    ]
    assert schema.validate(ROOT, obj(color="red", size=10, port="http", labels={"a": "b"})) == []


def test_a_hostile_pattern_runs_in_linear_time() -> None:
    root = schema.compile_schema(
        {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}
    )
    errs = schema.validate(root, {"x": "a" * 50_000 + "!"})
    assert texts(errs) == [
        'x: Invalid value: "' + "a" * 50_000 + "!\": x in body should match '^(a+)+$'"
    ]


def test_too_deep_objects_are_refused() -> None:
    deep: Any = "x"
    for _ in range(schema.MAX_OBJECT_DEPTH + 5):
        deep = {"a": deep}
    errs = schema.validate(ROOT, obj(color="red", raw=deep))
    assert errs and "nested more than" in str(errs[0])


def test_version_priority() -> None:
    versions = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"]
    assert sorted(versions, key=version_priority) == [
        "v10",
        "v2",
        "v1",
        "v1beta2",
        "v1beta1",
        "v1alpha1",
        "foo",
    ]


def test_kinds_for_served_versions() -> None:
    crd = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [
                {"name": "v1beta1", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}},
                {"name": "v0", "served": False, "storage": False},
            ],
        },
    }
    kinds = kinds_for(crd)
    assert [(k.version, k.storage_version, k.namespaced) for k in kinds] == [
        ("v1", "v1", False),
        ("v1beta1", "v1", False),
    ]
    assert kinds[0].subresources == ("status",) and kinds[1].subresources == ()
    assert kinds[0].singular == "widget"


# --------------------------------------------------------------------------- Hypothesis

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)
_keywords = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["object", "array", "string", "integer", "number", "boolean", "", "bogus"]
        ),
        "nullable": st.booleans(),
        "default": _values,
        "enum": st.lists(_values, max_size=3),
        "required": st.lists(st.text(max_size=4), max_size=3),
        "maximum": st.one_of(st.integers(-5, 5), st.floats(allow_nan=False)),
        "minimum": st.one_of(st.integers(-5, 5), st.floats(allow_nan=False)),
        "exclusiveMaximum": st.booleans(),
        "multipleOf": st.one_of(st.integers(-3, 3), st.floats(allow_nan=False)),
        "maxLength": st.integers(-2, 5),
        "minLength": st.integers(-2, 5),
        "pattern": st.sampled_from(["^a+$", "(", "^(a|a)*$", "[[:alpha:]]", "\\d{2,}"]),
        "format": st.sampled_from(["ipv4", "ipv6", "cidr", "uuid", "date-time", "byte", "x"]),
        "maxItems": st.integers(-1, 3),
        "uniqueItems": st.booleans(),
        "x-kubernetes-list-type": st.sampled_from(["set", "map", "atomic", "x"]),
        "x-kubernetes-list-map-keys": st.lists(st.text(max_size=3), max_size=2),
        "x-kubernetes-preserve-unknown-fields": st.booleans(),
        "x-kubernetes-int-or-string": st.booleans(),
        "x-kubernetes-embedded-resource": st.booleans(),
        "additionalProperties": st.one_of(st.booleans(), st.just({"type": "string"})),
    },
)
_schemas = st.recursive(
    _keywords,
    lambda inner: st.one_of(
        st.builds(
            lambda k, p: {**k, "type": "object", "properties": p},
            _keywords,
            st.dictionaries(st.text(max_size=4), inner, max_size=3),
        ),
        st.builds(lambda k, i: {**k, "type": "array", "items": i}, _keywords, inner),
        st.builds(lambda k, subs: {**k, "anyOf": subs}, _keywords, st.lists(inner, max_size=2)),
        st.builds(lambda k, n: {**k, "not": n}, _keywords, inner),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(_schemas, _values), value=_values)
def test_any_schema_and_any_object_give_errors_not_exceptions(raw: Any, value: Any) -> None:
    root = schema.compile_schema(raw)
    o = {"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": value}
    schema.prune(root, o)
    assert schema.prune(root, copy.deepcopy(o)) == []  # pruning twice prunes nothing more
    schema.default(root, o)
    again = copy.deepcopy(o)
    schema.default(root, again)
    assert again == o  # defaulting twice changes nothing more
    errs = schema.validate(root, o)
    assert all(isinstance(e, FieldError) and str(e) for e in errs)
    assert len(errs) <= schema.MAX_ERRORS
    json.dumps(o)  # still JSON


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(min_value=1, max_value=5000))
def test_deep_schemas_compile_within_bounds(depth: int) -> None:
    raw: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        raw = {"type": "object", "properties": {"a": raw}}
    root = schema.compile_schema(raw)
    value: Any = "x"
    for _ in range(min(depth, 50)):
        value = {"a": value}
    schema.validate(root, {"spec": value})
