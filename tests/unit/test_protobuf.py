"""Tests for kubesvc.api.protobuf: real kubectl bodies, hand-built bodies, malformed input.

The fixtures are request bodies captured from kubectl 1.32.4 talking to a stub server. For the
`kubectl create ...` commands the expected JSON is what the same command prints with
`--dry-run=client -o json`. `kubectl debug` has no dry run: the Pod the stub served to
`kubectl debug --copy-to` is debug_copy.source.json, and a test below derives the expected copy
from it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kubesvc.api import protobuf
from kubesvc.api.protobuf import MAGIC, ProtobufError, decode_body
from kubesvc.api.protobuf_schema import SCHEMA

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"

# fixture name -> the kubectl command that sent it
CAPTURED = {
    "namespace": "create namespace demo",
    "secret_generic": "create secret generic creds --from-literal=username=admin "
    "--from-literal=password='s3cr3t!'",
    "secret_generic_type": "create secret generic typed --type=example.com/custom "
    "--from-literal=k=v",
    "secret_docker": "create secret docker-registry regcred --docker-server=registry.local "
    "--docker-username=u --docker-password=p --docker-email=u@example.com",
    "secret_tls": "create secret tls my-cert --cert=tls.crt --key=tls.key",
    "configmap": "create configmap app-config --from-literal=mode=prod --from-literal=level=debug",
    "configmap_files": "create configmap files --from-file=app.properties "
    "--from-file=blob=fixed.bin",
    "service_clusterip": "create service clusterip web --tcp=80:8080",
    "service_clusterip_multi": "create service clusterip multi --tcp=80:8080 --tcp=443:8443",
    "service_headless": "create service clusterip headless --clusterip=None",
    "service_nodeport": "create service nodeport np --tcp=80:8080 --node-port=30080",
    "service_loadbalancer": "create service loadbalancer lb --tcp=443:8443",
    "service_externalname": "create service externalname ext --external-name=example.com",
    "ingress": "create ingress simple --rule=foo.com/bar*=svc:8080,tls=my-cert "
    "--default-backend=defsvc:http",
    "ingress_class": "create ingress routed --class=nginx "
    "--annotation=nginx.ingress.kubernetes.io/rewrite-target=/ --rule=a.example.com/=svc-a:80 "
    "--rule=b.example.com/api*=svc-b:http,tls --rule=/exact=svc-c:9090",
    "deployment": "create deployment web --image=nginx:1.25 --replicas=3 --port=80",
    "deployment_multi": "create deployment multi --image=nginx:1.25 --image=redis:7 --port=80",
    "deployment_zero": "create deployment idle --image=busybox --replicas=0 -- sleep 3600",
    "debug_copy": "debug rich --copy-to=rich-copy --image=busybox:1.36 --container=debugger "
    "--keep-liveness --keep-readiness --keep-startup --keep-labels --keep-annotations "
    "--keep-init-containers=true -- sleep 1d",
    "debug_node": "debug node/node1 --image=busybox:1.36",
}


def _fixture(name: str) -> tuple[bytes, Any]:
    body = (FIXTURES / f"{name}.pb").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    return body, expected


# ---------------------------------------------------------------------------------------------
# A minimal encoder for hand-built bodies


def uvarint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def vf(number: int, value: int) -> bytes:
    """A varint field."""
    return uvarint(number << 3) + uvarint(value)


def lf(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field."""
    data = payload.encode() if isinstance(payload, str) else payload
    return uvarint(number << 3 | 2) + uvarint(len(data)) + data


def entry(number: int, key: str, value: bytes | str) -> bytes:
    """One map entry."""
    return lf(number, lf(1, key) + lf(2, value))


def envelope(api_version: str, kind: str, raw: bytes, encoding: str = "") -> bytes:
    type_meta = lf(1, api_version) + lf(2, kind)
    return MAGIC + lf(1, type_meta) + lf(2, raw) + lf(3, encoding) + lf(4, "")


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    return vf(1, seconds) + vf(2, nanos)


NOV_26 = 1795731862  # 2026-11-26T22:24:22Z


# ---------------------------------------------------------------------------------------------
# Captured kubectl bodies


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in CAPTURED])
def test_kubectl_bodies_decode_to_the_dry_run_json(name: str) -> None:
    body, expected = _fixture(name)
    assert body.startswith(MAGIC)
    assert decode_body(body) == expected


def test_every_fixture_is_listed() -> None:
    assert {p.stem for p in FIXTURES.glob("*.pb")} == set(CAPTURED)


def test_pointer_zero_stays_and_omitempty_zero_goes() -> None:
    body, _ = _fixture("deployment_zero")
    spec = decode_body(body)["spec"]
    assert spec["replicas"] == 0
    container = spec["template"]["spec"]["containers"][0]
    assert "imagePullPolicy" not in container  # "" on the wire, omitempty in Go
    assert container["resources"] == {}  # non-pointer struct: always present


def test_ingress_rule_value_is_inlined() -> None:
    body, _ = _fixture("ingress")
    rule = decode_body(body)["spec"]["rules"][0]
    assert set(rule) == {"host", "http"}
    assert rule["http"]["paths"][0]["backend"]["service"]["port"] == {"number": 8080}


def test_secret_data_is_base64() -> None:
    body, _ = _fixture("secret_generic")
    assert decode_body(body)["data"] == {"password": "czNjcjN0IQ==", "username": "YWRtaW4="}


def test_debug_copy_is_the_source_pod_with_kubectl_debug_changes() -> None:
    """kubectl debug --copy-to keeps the spec, renames, drops status and adds a container."""
    source = json.loads((FIXTURES / "debug_copy.source.json").read_text())
    expected = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "rich-copy",
            "namespace": "default",
            "creationTimestamp": None,
            "annotations": source["metadata"]["annotations"],
        },
        "spec": source["spec"],
        "status": {},
    }
    app = expected["spec"]["containers"][0]
    del app["stdin"], app["tty"]  # false and omitempty: Go never sends them
    expected["spec"]["containers"].append(
        {
            "name": "debugger",
            "image": "busybox:1.36",
            "command": ["sleep", "1d"],
            "resources": {},
            "terminationMessagePolicy": "File",
        }
    )
    body, fixture = _fixture("debug_copy")
    assert decode_body(body) == expected == fixture


def test_pod_probes_volumes_and_env() -> None:
    body, _ = _fixture("debug_copy")
    pod = decode_body(body)
    app = pod["spec"]["containers"][0]
    assert app["livenessProbe"]["httpGet"]["port"] == "http"  # IntOrString string, inline handler
    assert app["readinessProbe"]["tcpSocket"]["port"] == 8080  # IntOrString int
    assert app["startupProbe"]["terminationGracePeriodSeconds"] == 0  # pointer zero
    assert app["env"][1] == {"name": "EMPTY"}
    assert app["env"][2]["valueFrom"]["secretKeyRef"] == {  # inline LocalObjectReference
        "name": "creds",
        "key": "password",
        "optional": False,
    }
    assert app["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert app["securityContext"]["runAsGroup"] == 0
    assert pod["spec"]["volumes"][0] == {
        "name": "cache",
        "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"},
    }
    assert pod["spec"]["volumes"][-1] == {"name": "empty", "emptyDir": {}}
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [3000, 4000]
    assert pod["spec"]["automountServiceAccountToken"] is False


# ---------------------------------------------------------------------------------------------
# Hand-built bodies


def test_object_meta() -> None:
    owner = lf(5, "apps/v1") + lf(1, "ReplicaSet") + lf(3, "web-1") + lf(4, "u-1") + vf(6, 1)
    meta = b"".join(
        [
            lf(1, "web"),
            lf(2, "web-"),
            lf(3, "default"),
            lf(4, ""),  # selfLink "": omitempty
            lf(5, "0f0e0d0c"),
            lf(6, "42"),
            vf(7, 3),
            lf(8, timestamp(NOV_26, 999)),  # Time keeps whole seconds only
            lf(9, timestamp(NOV_26 + 60)),
            vf(10, 0),  # deletionGracePeriodSeconds: pointer, 0 stays
            entry(11, "app", "web"),
            entry(11, "tier", ""),
            entry(12, "note", "hi"),
            lf(13, owner),
            lf(14, "example.com/a"),
            lf(14, "example.com/b"),
        ]
    )
    got = decode_body(envelope("v1", "ConfigMap", lf(1, meta)))
    assert got == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": "web",
            "generateName": "web-",
            "namespace": "default",
            "uid": "0f0e0d0c",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2026-11-26T22:24:22Z",
            "deletionTimestamp": "2026-11-26T22:25:22Z",
            "deletionGracePeriodSeconds": 0,
            "labels": {"app": "web", "tier": ""},
            "annotations": {"note": "hi"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-1",
                    "uid": "u-1",
                    "controller": True,
                }
            ],
            "finalizers": ["example.com/a", "example.com/b"],
        },
    }


@pytest.mark.parametrize(
    ("time_bytes", "expected"),
    [
        pytest.param(b"", None, id="zero-time-is-null"),
        pytest.param(timestamp(0), "1970-01-01T00:00:00Z", id="epoch"),
        pytest.param(timestamp(-1), "1969-12-31T23:59:59Z", id="negative"),
        pytest.param(timestamp(253402300799), "9999-12-31T23:59:59Z", id="year-9999"),
        pytest.param(timestamp(-62135596800), "0001-01-01T00:00:00Z", id="year-1"),
    ],
)
def test_time(time_bytes: bytes, expected: str | None) -> None:
    meta = lf(1, "x") + lf(8, time_bytes)
    got = decode_body(envelope("v1", "Namespace", lf(1, meta)))
    assert got["metadata"] == {"name": "x", "creationTimestamp": expected}


def test_lease_micro_time_and_pointer_zeroes() -> None:
    spec = b"".join(
        [
            lf(1, "node-a"),
            vf(2, 0),
            lf(3, timestamp(NOV_26, 123_456_789)),
            lf(4, b""),
            vf(5, 0),
        ]
    )
    got = decode_body(envelope("coordination.k8s.io/v1", "Lease", lf(2, spec)))
    assert got["spec"] == {
        "holderIdentity": "node-a",
        "leaseDurationSeconds": 0,
        "acquireTime": "2026-11-26T22:24:22.123456Z",
        "renewTime": None,
        "leaseTransitions": 0,
    }


def test_service_ports_int_or_string_and_unknown_fields() -> None:
    http = lf(1, "http") + lf(2, "TCP") + vf(3, 80) + lf(4, vf(1, 1) + lf(3, "web")) + vf(5, 0)
    dns = lf(2, "UDP") + vf(3, 53) + lf(4, vf(1, 0) + vf(2, 5353))
    spec = b"".join(
        [
            lf(1, http),
            lf(1, dns),
            entry(2, "app", "web"),
            lf(3, ""),  # clusterIP "": omitempty
            vf(99, 7),  # unknown fields of every wire type are skipped
            uvarint(98 << 3 | 1) + b"\x00" * 8,
            uvarint(97 << 3 | 5) + b"\x00" * 4,
            lf(96, b"\xff\xff"),
            lf(4, "ClusterIP"),
        ]
    )
    raw = lf(2, spec) + lf(3, lf(1, b""))  # status.loadBalancer {}
    got = decode_body(envelope("v1", "Service", raw))
    assert got == {
        "kind": "Service",
        "apiVersion": "v1",
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"},
                {"protocol": "UDP", "port": 53, "targetPort": 5353},
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


def test_negative_ints_and_packed_repeated() -> None:
    security = vf(4, 1000) + lf(4, uvarint(3000) + uvarint(4000)) + vf(2, -1)
    spec = vf(25, -5) + vf(5, -30) + lf(14, security)
    got = decode_body(envelope("v1", "Pod", lf(2, spec)))
    assert got["spec"] == {
        "priority": -5,
        "activeDeadlineSeconds": -30,
        "securityContext": {"supplementalGroups": [1000, 3000, 4000], "runAsUser": -1},
    }


def test_secret_map_values() -> None:
    raw = b"".join(
        [
            entry(2, "bin", b"\x00\xff"),
            entry(2, "empty", b""),
            lf(2, lf(1, "absent")),  # no value field: Go's nil []byte, JSON null
            entry(4, "plain", "text"),
            lf(3, "Opaque"),
            vf(5, 0),  # immutable: pointer, false stays
        ]
    )
    got = decode_body(envelope("v1", "Secret", raw))
    assert got == {
        "kind": "Secret",
        "apiVersion": "v1",
        "data": {"bin": "AP8=", "empty": "", "absent": None},
        "stringData": {"plain": "text"},
        "type": "Opaque",
        "immutable": False,
    }


def test_endpoint_slice_pointer_strings() -> None:
    port = lf(1, "") + lf(2, "TCP") + vf(3, 8080)
    endpoint = lf(1, "10.0.0.5") + lf(2, vf(1, 1) + vf(2, 1) + vf(3, 0))
    raw = lf(2, endpoint) + lf(3, port) + lf(4, "IPv4")
    got = decode_body(envelope("discovery.k8s.io/v1", "EndpointSlice", raw))
    assert got["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    assert got["endpoints"] == [
        {
            "addresses": ["10.0.0.5"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
        }
    ]
    assert got["addressType"] == "IPv4"


def test_managed_fields_raw_json() -> None:
    managed = (
        lf(1, "kubectl") + lf(2, "Update") + lf(6, "FieldsV1") + lf(7, lf(1, b'{"f:data":{}}'))
    )
    got = decode_body(envelope("v1", "ConfigMap", lf(1, lf(17, managed))))
    assert got["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {}},
        }
    ]


def test_last_value_wins_and_zero_clears() -> None:
    raw = lf(1, lf(1, "first") + lf(1, "second") + lf(2, "gen-") + lf(2, ""))
    assert decode_body(envelope("v1", "Namespace", raw))["metadata"] == {"name": "second"}


def test_invalid_utf8_becomes_replacement_character() -> None:
    got = decode_body(envelope("v1", "Namespace", lf(1, lf(1, b"a\xffb"))))
    assert got["metadata"]["name"] == "a\ufffdb"


def test_accepts_bytearray_and_memoryview() -> None:
    body, expected = _fixture("namespace")
    assert decode_body(bytearray(body)) == expected
    assert decode_body(memoryview(body)) == expected


# ---------------------------------------------------------------------------------------------
# Malformed input


NS = ("v1", "Namespace")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "k8s\\x00 prefix", id="empty"),
        pytest.param(b"k8s", "k8s\\x00 prefix", id="short-magic"),
        pytest.param(b'{"kind":"Namespace"}', "k8s\\x00 prefix", id="json"),
        pytest.param(MAGIC, "no apiVersion and kind", id="empty-envelope"),
        pytest.param(MAGIC + lf(1, lf(2, "Namespace")), "no apiVersion and kind", id="no-version"),
        pytest.param(MAGIC + b"\x0a", "truncated varint", id="truncated-key"),
        pytest.param(MAGIC + b"\x0a\x80", "truncated varint", id="truncated-length"),
        pytest.param(MAGIC + b"\x0a\x05ab", "runs past the end", id="length-past-end"),
        pytest.param(MAGIC + b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10", id="long-varint"),
        pytest.param(MAGIC + b"\x0b", "wire type 3", id="group"),
        pytest.param(MAGIC + b"\x0e", "wire type 6", id="wire-type-6"),
        pytest.param(MAGIC + b"\x02\x00", "field number 0", id="field-zero"),
        pytest.param(MAGIC + b"\x09\x00\x00", "runs past the end", id="short-fixed64"),
        pytest.param(envelope("v1", "Frobnicator", b""), "v1, Kind=Frobnicator", id="unknown-kind"),
        pytest.param(envelope(*NS, b"", encoding="gzip"), "contentEncoding", id="encoding"),
        pytest.param(envelope(*NS, vf(1, 5)), "expected length-delimited", id="wire-mismatch"),
        pytest.param(
            envelope(*NS, lf(1, vf(1, 5))), "expected length-delimited", id="name-as-varint"
        ),
        pytest.param(envelope(*NS, lf(1, lf(7, b""))), "expected varint", id="generation-as-len"),
        pytest.param(
            envelope(*NS, lf(1, lf(8, timestamp(1 << 62)))), "out of range", id="time-overflow"
        ),
        pytest.param(envelope(*NS, lf(1, lf(8, lf(1, b"")))), "not a varint", id="time-bad-field"),
        pytest.param(
            envelope("v1", "Service", lf(2, lf(1, lf(4, vf(1, 7))))),
            "invalid IntOrString",
            id="int-or-string-type",
        ),
        pytest.param(
            envelope("v1", "ConfigMap", lf(1, lf(17, lf(7, lf(1, b"{"))))),
            "FieldsV1",
            id="fields-v1-not-json",
        ),
        pytest.param(
            envelope("v1", "Secret", lf(2, vf(1, 1))), "length-delimited", id="map-varint"
        ),
    ],
)
def test_malformed(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match="unable to decode protobuf body") as info:
        decode_body(body)
    assert message in str(info.value)


def test_error_is_a_value_error() -> None:
    assert issubclass(ProtobufError, ValueError)
    with pytest.raises(ProtobufError):
        decode_body("k8s\x00text")  # type: ignore[arg-type]


def _decodes_or_fails_cleanly(body: bytes) -> None:
    try:
        got = decode_body(body)
    except ProtobufError:
        return
    assert isinstance(got, dict)
    json.dumps(got)  # always JSON-serialisable


def test_every_truncation_of_every_fixture() -> None:
    for name in CAPTURED:
        body, _ = _fixture(name)
        for end in range(len(body)):
            _decodes_or_fails_cleanly(body[:end])


def test_random_mutations_of_fixtures() -> None:
    rng = random.Random(1234)
    bodies = [_fixture(name)[0] for name in CAPTURED]
    for _ in range(3000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(body))
            action = rng.randrange(3)
            if action == 0:
                body[pos] = rng.randrange(256)
            elif action == 1:
                body.insert(pos, rng.randrange(256))
            else:
                del body[pos]
        _decodes_or_fails_cleanly(bytes(body))


@pytest.mark.parametrize("api_kind", [pytest.param(k, id=f"{k[0]}-{k[1]}") for k in protobuf.KINDS])
def test_random_payloads_for_every_kind(api_kind: tuple[str, str]) -> None:
    rng = random.Random(api_kind[1])
    for _ in range(300):
        raw = rng.randbytes(rng.randrange(64))
        _decodes_or_fails_cleanly(envelope(*api_kind, raw))
        _decodes_or_fails_cleanly(MAGIC + rng.randbytes(rng.randrange(64)))


# ---------------------------------------------------------------------------------------------
# The schema table


SCALARS = {"string", "bytes", "bool", "int32", "int64"}


def test_schema_references_resolve() -> None:
    special = set(protobuf._SPECIAL)
    for message, fields in SCHEMA.items():
        for number, field in fields.items():
            assert number > 0
            assert field.type in SCALARS | special | set(SCHEMA), (message, number, field)
            assert field.json or field.type in SCHEMA, (message, number)
    for target in protobuf.KINDS.values():
        assert target in SCHEMA


def test_schema_is_acyclic() -> None:
    """No message contains itself, so decoding always terminates."""
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done or name not in SCHEMA:
            return
        for field in SCHEMA[name].values():
            visit(field.type, (*path, name))
        done.add(name)

    for name in SCHEMA:
        visit(name, ())
