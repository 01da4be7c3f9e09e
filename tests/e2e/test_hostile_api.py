"""Hostile requests from the hardening issue, one regression test each, against a real API
server process: the answer's code, its Status and wording, nothing stored changed, every
list still strict JSON and `kubectl get svc -A` still working. The expensive ones must also
leave /healthz (probed from another process) answering within 100 ms."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubesvc.api.kinds import BY_KIND
from tests.e2e.harness import ApiServerProcess
from tests.hostile import payloads
from tests.hostile.client import Client, Response, assert_status, snapshot, status_problem
from tests.hostile.probe import HealthzProbe

pytestmark = pytest.mark.e2e

NS = "hostile"
SVCS = f"/api/v1/namespaces/{NS}/services"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
PODS = f"/api/v1/namespaces/{NS}/pods"
HEALTHZ_MAX_MS = 100.0
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class Cluster:
    def __init__(self, api: ApiServerProcess, probe: HealthzProbe) -> None:
        self.api, self.probe = api, probe
        self.client = Client(api.port, api.data_dir)

    def request(self, method: str, path: str, body: bytes = b"", **kw: Any) -> Response:
        return self.client.request(method, path, body, **kw)

    def unchanged(self, send: Any) -> Response:
        """send() with the stored state compared before and after, kubectl checked after."""
        before = snapshot(self.client)
        resp = send()
        assert status_problem(resp) is None, status_problem(resp)
        assert snapshot(self.client) == before, "a rejected request changed the stored state"
        out = self.api.out("get", "svc", "-A", "-o", "json")
        assert {i["metadata"]["name"] for i in json.loads(out)["items"]} >= {"web", "kubernetes"}
        return resp

    def timed(self, send: Any) -> tuple[Response, Any]:
        """send() and the /healthz probes that overlap it."""
        t0 = time.monotonic()
        resp = send()
        stats = self.probe.window(t0, time.monotonic())
        return resp, stats


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    api = ApiServerProcess(tmp_path_factory.mktemp("hostile") / "data")
    api.start()
    try:
        with HealthzProbe(api.port, api.data_dir / "pki" / "ca.crt") as probe:
            c = Cluster(api, probe)
            api.out("create", "namespace", NS)
            web = payloads.sample("Service", "web")
            assert c.request("POST", SVCS, json.dumps(web).encode()).status == 201
            cm = payloads.sample("ConfigMap", "cm")
            assert c.request("POST", CMS, json.dumps(cm).encode()).status == 201
            deploy = payloads.sample("Deployment", "d")
            assert c.request("POST", DEPLOYS, json.dumps(deploy).encode()).status == 201
            yield c
            c.client.close()
    finally:
        api.stop()


def _body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


# -- 1. NaN and Infinity --------------------------------------------------------------------

NAN_CASES = [
    pytest.param(SVCS, "Service", ("metadata", "labels", "a"), b"NaN", "'N'", id="svc-label-nan"),
    pytest.param(SVCS, "Service", ("spec", "ports", "[]", "port"), b"NaN", "'N'", id="svc-port"),
    pytest.param(DEPLOYS, "Deployment", ("spec", "replicas"), b"Infinity", "'I'", id="replicas"),
    pytest.param(
        PODS,
        "Pod",
        ("spec", "terminationGracePeriodSeconds"),
        b"NaN",
        "'N'",
        id="termination-grace",
    ),
    pytest.param(
        PODS,
        "Pod",
        ("spec", "containers", "[]", "readinessProbe", "periodSeconds"),
        b"Infinity",
        "'I'",
        id="probe-period",
    ),
]


@pytest.mark.parametrize(("path", "kind", "field", "literal", "char"), NAN_CASES)
def test_nan_and_infinity_in_json(
    cluster: Cluster, path: str, kind: str, field: tuple[str, ...], literal: bytes, char: str
) -> None:
    body = payloads.json_with(payloads.sample(kind, "nan"), field, literal)
    resp = cluster.unchanged(lambda: cluster.request("POST", path, body))
    assert_status(
        resp,
        400,
        f"couldn't get version/kind; json parse error: invalid character {char} "
        "looking for beginning of value",
    )


@pytest.mark.parametrize(
    ("literal", "shown"),
    [(".nan", "NaN"), (".inf", "+Inf"), ("-.inf", "-Inf"), (".NaN", "NaN"), ("+.Inf", "+Inf")],
)
def test_nan_and_infinity_in_yaml(cluster: Cluster, literal: str, shown: str) -> None:
    body = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: yaml-nan}\n"
        f"spec: {{replicas: {literal}}}\n"
    ).encode()
    resp = cluster.unchanged(
        lambda: cluster.request("POST", DEPLOYS, body, content_type="application/yaml")
    )
    assert_status(resp, 400, f"unsupported value: {shown}")


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        pytest.param(MERGE_PATCH, b'{"data":{"a":NaN}}', id="merge"),
        pytest.param(STRATEGIC_PATCH, b'{"metadata":{"labels":{"a":Infinity}}}', id="strategic"),
        pytest.param(JSON_PATCH, b'[{"op":"add","path":"/data/a","value":NaN}]', id="json-patch"),
        pytest.param(
            APPLY_PATCH, b"apiVersion: v1\nkind: ConfigMap\ndata: {a: .nan}\n", id="apply"
        ),
    ],
)
def test_nan_through_patches(cluster: Cluster, ctype: str, body: bytes) -> None:
    path = f"{CMS}/cm?fieldManager=hostile"
    resp = cluster.unchanged(lambda: cluster.request("PATCH", path, body, content_type=ctype))
    assert_status(resp, 400)
    assert "NaN" in resp.message or "invalid character" in resp.message


# -- 2. wrong JSON types ----------------------------------------------------------------------

WRONG_TYPES = [
    pytest.param(
        SVCS,
        "Service",
        ("metadata", "labels"),
        "x",
        "cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type "
        "map[string]string",
        id="labels-string",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("metadata", "annotations", "a"),
        5,
        "cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type "
        "string",
        id="annotation-number",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("metadata", "ownerReferences"),
        {"a": 1},
        "cannot unmarshal object into Go struct field ObjectMeta.metadata.ownerReferences of "
        "type []v1.OwnerReference",
        id="owner-references-object",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("metadata", "finalizers"),
        True,
        "cannot unmarshal bool into Go struct field ObjectMeta.metadata.finalizers of type "
        "[]string",
        id="finalizers-bool",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("spec", "selector"),
        5,
        "cannot unmarshal number into Go struct field ServiceSpec.spec.selector of type "
        "map[string]string",
        id="selector-number",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("spec", "externalName"),
        5,
        "cannot unmarshal number into Go struct field ServiceSpec.spec.externalName of type string",
        id="external-name-number",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("spec", "ports"),
        "x",
        "cannot unmarshal string into Go struct field ServiceSpec.spec.ports of type "
        "[]v1.ServicePort",
        id="ports-string",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("spec", "ports", "[]", "port"),
        1.5,
        "cannot unmarshal number 1.5 into Go struct field ServicePort.spec.ports.port of type "
        "int32",
        id="port-fraction",
    ),
    pytest.param(
        SVCS,
        "Service",
        ("spec",),
        [],
        "cannot unmarshal array into Go struct field Service.spec of type v1.ServiceSpec",
        id="spec-array",
    ),
    pytest.param(
        CMS,
        "ConfigMap",
        ("data", "a"),
        ["x"],
        "cannot unmarshal array into Go struct field ConfigMap.data of type string",
        id="configmap-data-list",
    ),
    pytest.param(
        DEPLOYS,
        "Deployment",
        ("spec", "replicas"),
        2**40,
        "cannot unmarshal number 1099511627776 into Go struct field DeploymentSpec.spec.replicas "
        "of type int32",
        id="replicas-too-big",
    ),
]


@pytest.mark.parametrize(("path", "kind", "field", "value", "fragment"), WRONG_TYPES)
def test_wrong_type_is_cannot_unmarshal(
    cluster: Cluster, path: str, kind: str, field: tuple[str, ...], value: Any, fragment: str
) -> None:
    body = _body(payloads.set_at(payloads.sample(kind, "wrong"), field, value))
    resp = cluster.unchanged(lambda: cluster.request("POST", path, body))
    assert_status(resp, 400, f'{kind} in version "v1" cannot be handled as a {kind}: json: ')
    assert resp.message.endswith(fragment), resp.message
    assert resp.json()["reason"] == "BadRequest"


@pytest.mark.parametrize("kind", ["Service", "ConfigMap"])
def test_wrong_type_at_every_field_is_refused(cluster: Cluster, kind: str) -> None:
    """Each wrong-typed value at each field of the schema, sent alone: 400, and for the plain
    Go types the `Go struct field Struct.dotted.path` of upstream's message."""
    k = BY_KIND[kind]
    path = payloads.collection_path(k, NS)
    base = payloads.sample(kind, "every")
    before = snapshot(cluster.client)
    failures = []
    sent = 0
    for field in payloads.typed_fields(kind):
        for wrong in payloads.wrong_values(field):
            body = _body(payloads.set_at(base, field.path, wrong.value))
            resp = cluster.request("POST", path, body)
            sent += 1
            want = payloads.wrong_type_message(kind, "v1", field, wrong)
            if resp.status != 400 or want not in resp.message or status_problem(resp):
                failures.append(f"{field.id} = {wrong.value!r}: {resp}")
    assert sent > 150
    assert not failures, f"{len(failures)} of {sent}:\n" + "\n".join(failures[:30])
    assert snapshot(cluster.client) == before


# -- 3. requests that used to block the event loop -------------------------------------------


def test_billion_laughs_yaml(cluster: Cluster) -> None:
    body = payloads.billion_laughs_yaml()
    assert len(body) < 500
    resp, stats = cluster.timed(
        lambda: cluster.unchanged(
            lambda: cluster.request("POST", CMS, body, content_type="application/yaml")
        )
    )
    assert_status(resp, 400, "yaml: document contains excessive aliasing")
    assert resp.elapsed < 1.0, resp.elapsed
    assert stats.max_ms < HEALTHZ_MAX_MS and not stats.failed, stats


@pytest.mark.parametrize("ops", [20, 25])
def test_json_patch_copy_doubling(cluster: Cluster, ops: int) -> None:
    body = payloads.copy_doubling_patch(ops)
    assert len(body) < 2500
    path = f"{CMS}/cm"
    resp, stats = cluster.timed(
        lambda: cluster.unchanged(
            lambda: cluster.request("PATCH", path, body, content_type=JSON_PATCH)
        )
    )
    assert_status(resp, 422)
    assert resp.message.startswith(
        "Unable to complete the copy, the accumulated size increase of copy is"
    ), resp.message
    assert resp.elapsed < 10.0, resp.elapsed
    assert stats.max_ms < HEALTHZ_MAX_MS and not stats.failed, stats


def test_json_patch_operation_limit(cluster: Cluster) -> None:
    ops = [{"op": "test", "path": "/metadata/name", "value": "cm"}] * 10_001
    resp = cluster.unchanged(
        lambda: cluster.request("PATCH", f"{CMS}/cm", _body(ops), content_type=JSON_PATCH)  # type: ignore[arg-type]
    )
    assert_status(resp, 413, "The allowed maximum operations in a JSON patch is 10000, got 10001")
    ok = cluster.request(
        "PATCH",
        f"{CMS}/cm",
        _body(ops[:10_000]),
        content_type=JSON_PATCH,  # type: ignore[arg-type]
    )
    assert ok.status == 200, ok


def test_yaml_configmap_of_100000_keys(cluster: Cluster) -> None:
    body = payloads.many_keys_yaml(100_000, "many-keys")
    assert len(body) > 1_000_000
    resp, stats = cluster.timed(
        lambda: cluster.request("POST", CMS, body, content_type="application/yaml")
    )
    assert resp.status == 201, resp
    assert len(resp.json()["data"]) == 100_000
    assert stats.max_ms < HEALTHZ_MAX_MS and not stats.failed, stats
    assert cluster.request("DELETE", f"{CMS}/many-keys").status == 200


# -- 4. what used to be a 500 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "literal", "stored"),
    [
        pytest.param(("metadata", "annotations", "a"), b'"x\\ud800y"', "x\ufffdy", id="surrogate"),
        pytest.param(("metadata", "annotations", "a"), b'"\\udc00"', "\ufffd", id="low-surrogate"),
        pytest.param(("metadata", "annotations", "a"), b'"x\xffy"', "x\ufffdy", id="invalid-utf8"),
        pytest.param(
            ("data", "a"), b'"\xed\xa0\x80"', "\ufffd\ufffd\ufffd", id="encoded-surrogate"
        ),
    ],
)
def test_bad_text_is_replaced_as_go_does(
    cluster: Cluster, field: tuple[str, ...], literal: bytes, stored: str
) -> None:
    obj = payloads.sample("ConfigMap", "text")
    resp = cluster.request("POST", CMS, payloads.json_with(obj, field, literal))
    assert resp.status == 201, resp
    got = cluster.request("GET", f"{CMS}/text").json()
    value = got["data"]["a"] if field[0] == "data" else got["metadata"]["annotations"]["a"]
    assert value == stored
    snapshot(cluster.client)  # every list is still strict JSON
    assert cluster.request("DELETE", f"{CMS}/text").status == 200


@pytest.mark.parametrize(
    "literal", [b'"a\\ud800"', b'"a\xff"'], ids=["surrogate-name", "invalid-utf8-name"]
)
def test_bad_text_in_a_name_is_invalid(cluster: Cluster, literal: bytes) -> None:
    body = payloads.json_with(payloads.sample("ConfigMap", "x"), ("metadata", "name"), literal)
    resp = cluster.unchanged(lambda: cluster.request("POST", CMS, body))
    assert_status(resp, 422, 'ConfigMap "a\ufffd" is invalid: metadata.name: Invalid value')


def test_nesting_within_the_limit_is_a_type_error(cluster: Cluster) -> None:
    body = b'{"metadata":{"name":"deep"},"data":{"a":' + payloads.nested_json(1000) + b"}}"
    resp = cluster.unchanged(lambda: cluster.request("POST", CMS, body))
    assert_status(
        resp,
        400,
        "json: cannot unmarshal array into Go struct field ConfigMap.data of type string",
    )
    deeper = b'{"metadata":{"name":"deep"},"data":{"a":' + payloads.nested_json(9_990) + b"}}"
    resp = cluster.unchanged(lambda: cluster.request("POST", CMS, deeper))
    assert_status(resp, 400, "cannot unmarshal array into Go struct field ConfigMap.data")


@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_beyond_10000_levels(cluster: Cluster, kind: str) -> None:
    body = b'{"metadata":{"name":"deep"},"data":{"a":' + payloads.nested_json(10_001, kind) + b"}}"
    resp, stats = cluster.timed(
        lambda: cluster.unchanged(lambda: cluster.request("POST", CMS, body))
    )
    assert_status(resp, 400, "exceeded max depth")
    assert stats.max_ms < HEALTHZ_MAX_MS, stats


def test_limit_at_or_below_zero_lists_everything(cluster: Cluster) -> None:
    everything = cluster.request("GET", "/api/v1/configmaps").json()["items"]
    for limit in ("-1", "0", "-9999999999999999999"):
        resp = cluster.request("GET", f"/api/v1/configmaps?limit={limit}")
        assert resp.status == 200, resp
        doc = resp.json()
        assert len(doc["items"]) == len(everything) and "continue" not in doc["metadata"]
    resp = cluster.unchanged(lambda: cluster.request("GET", "/api/v1/configmaps?limit=abc"))
    assert_status(resp, 400, "limit")


@pytest.mark.parametrize("method", ["CONNECT", "PROPFIND", "TRACE", "FOO"])
@pytest.mark.parametrize("path", [SVCS, f"{SVCS}/web", "/api/v1/services"])
def test_unknown_methods_are_405(cluster: Cluster, method: str, path: str) -> None:
    resp = cluster.unchanged(lambda: cluster.request(method, path, content_type=None))
    assert_status(resp, 405)
    assert resp.json()["reason"] == "MethodNotAllowed"


@pytest.mark.parametrize("method", ["DELETE", "POST", "PUT", "PATCH"])
def test_writes_to_all_namespaces_path_are_405(cluster: Cluster, method: str) -> None:
    """A namespaced kind's all-namespaces path only lists and watches (upstream installs no
    other verb there): DELETE must not delete every namespace's Services."""
    resp = cluster.unchanged(
        lambda: cluster.request(
            method, "/api/v1/services?dryRun=All", b"{}", content_type=MERGE_PATCH
        )
    )
    assert_status(resp, 405)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b'{"gracePeriodSeconds":"x"}',
            "cannot unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds of "
            "type int64",
        ),
        (
            b'{"propagationPolicy":5}',
            "cannot unmarshal number into Go struct field DeleteOptions.propagationPolicy",
        ),
        (b'{"preconditions":"x"}', "Go struct field DeleteOptions.preconditions"),
        (b'{"dryRun":"All"}', "Go struct field DeleteOptions.dryRun of type []string"),
    ],
)
def test_wrong_typed_delete_options(cluster: Cluster, body: bytes, fragment: str) -> None:
    resp = cluster.unchanged(lambda: cluster.request("DELETE", f"{SVCS}/web", body))
    assert_status(resp, 400, 'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: ')
    assert fragment in resp.message


def test_gzip_content_encoding(cluster: Cluster) -> None:
    plain = _body(payloads.sample("ConfigMap", "gz"))
    gz = {"Content-Encoding": "gzip"}
    resp = cluster.unchanged(lambda: cluster.request("POST", CMS, plain, headers=gz))
    assert_status(resp, 400)
    resp = cluster.request("POST", CMS, gzip.compress(plain), headers=gz)
    assert resp.status == 201, resp
    assert cluster.request("GET", f"{CMS}/gz").json()["data"] == {"a": "1", "b.txt": "two"}
    assert cluster.request("DELETE", f"{CMS}/gz").status == 200


def test_apply_with_managed_fields_is_a_bad_request(cluster: Cluster) -> None:
    config = payloads.sample("ConfigMap", "cm")
    config["metadata"]["managedFields"] = [{"manager": "someone", "operation": "Apply"}]
    path = f"{CMS}/cm?fieldManager=hostile"
    resp = cluster.unchanged(
        lambda: cluster.request("PATCH", path, _body(config), content_type=APPLY_PATCH)
    )
    assert_status(resp, 400, "metadata.managedFields must be nil")


# -- 5. authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_bearer_scheme_in_any_case(cluster: Cluster, scheme: str) -> None:
    token = cluster.client.token
    resp = cluster.request("GET", "/api/v1/namespaces", content_type=None, auth=f"{scheme} {token}")
    assert resp.status == 200, resp


@pytest.mark.parametrize(
    "auth", ["", "Bearer", "Bearer wrong", "Basic YWRtaW46YWRtaW4=", "bearer\ttoken"]
)
def test_bad_credentials_are_401(cluster: Cluster, auth: str) -> None:
    resp = cluster.unchanged(
        lambda: cluster.request("GET", "/api/v1/namespaces", content_type=None, auth=auth)
    )
    assert_status(resp, 401, "Unauthorized")


def test_probe_saw_the_server_answer_throughout(cluster: Cluster) -> None:
    samples = cluster.probe.samples()
    assert len(samples) > 100 and all(ok for _, _, ok in samples)
