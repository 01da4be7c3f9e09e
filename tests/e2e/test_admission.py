"""What the API server decides on create as upstream's admission and REST layer do: the
default IngressClass, a single-stack cluster's IP families, strict decoding and the Status
bytes."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import ApiServerProcess
from tests.hostile.client import Client

pytestmark = pytest.mark.e2e


def _raw(api: ApiServerProcess, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    client = Client(api.port, api.data_dir)
    try:
        resp = client.request(method, path, json.dumps(body).encode() if body is not None else b"")
    finally:
        client.close()
    return resp.status, resp.body


CLASS = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {name}
  annotations: {annotations}
spec:
  controller: example.com/{name}
"""

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  annotations: {annotations}
spec:
  {spec}
  defaultBackend:
    service: {{name: web, port: {{number: 80}}}}
"""


def test_an_ingress_without_a_class_gets_the_default_one(api: ApiServerProcess, ns: str) -> None:
    default = '{"ingressclass.kubernetes.io/is-default-class": "true"}'
    for name, notes in (("plain", "{}"), ("b-default", default), ("a-default", default)):
        api.out("apply", "-f", "-", input=CLASS.format(name=f"{ns}-{name}", annotations=notes))

    def create(name: str, annotations: str = "{}", spec: str = "") -> str:
        api.out(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=INGRESS.format(name=name, annotations=annotations, spec=spec),
        )
        got = json.loads(api.out("get", "ingress", name, "-n", ns, "-o", "json"))
        return str(got["spec"].get("ingressClassName", ""))

    # two defaults created in the same second: the lower name wins, as upstream sorts them
    assert create("none") == f"{ns}-a-default"
    assert create("explicit", spec=f"ingressClassName: {ns}-plain") == f"{ns}-plain"
    assert create("legacy", annotations='{"kubernetes.io/ingress.class": "nginx"}') == ""
    for name in ("plain", "b-default", "a-default"):
        api.out("delete", "ingressclass", f"{ns}-{name}")
    assert create("after") == ""


def test_a_single_stack_cluster_refuses_other_families(api: ApiServerProcess, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/services"
    ports = [{"port": 80}]
    code, body = _raw(
        api,
        "POST",
        path,
        {
            "metadata": {"name": "dual"},
            "spec": {"ipFamilyPolicy": "RequireDualStack", "ports": ports},
        },
    )
    assert code == 422
    assert json.loads(body)["message"] == (
        'Service "dual" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": '
        "this cluster is not configured for dual-stack services"
    )
    code, body = _raw(
        api,
        "POST",
        path,
        {"metadata": {"name": "six"}, "spec": {"ipFamilies": ["IPv6"], "ports": ports}},
    )
    assert code == 422
    assert json.loads(body)["message"] == (
        'Service "six" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": '
        "not configured on this cluster"
    )
    # headless Services may list any family, as upstream allows on a single-stack cluster
    headless = {"clusterIP": "None", "ipFamilies": ["IPv4", "IPv6"], "ports": ports}
    headless["ipFamilyPolicy"] = "PreferDualStack"
    code, _ = _raw(api, "POST", path, {"metadata": {"name": "headless"}, "spec": headless})
    assert code == 201
    assert api.out("get", "svc", "-n", ns, "-o", "name").split() == ["service/headless"]


def test_strict_decoding_errors_name_the_kind(api: ApiServerProcess, ns: str) -> None:
    code, body = _raw(
        api,
        "POST",
        f"/api/v1/namespaces/{ns}/services?fieldValidation=Strict",
        {"metadata": {"name": "s"}, "spec": {"foo": 1, "ports": [{"port": 80}]}},
    )
    assert code == 400
    assert json.loads(body)["message"] == (
        'Service in version "v1" cannot be handled as a Service: '
        'strict decoding error: unknown field "spec.foo"'
    )


def test_status_bodies_are_upstream_bytes(api: ApiServerProcess, ns: str) -> None:
    code, body = _raw(api, "GET", f"/api/v1/namespaces/{ns}/services/missing")
    assert code == 404
    assert body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"services \\"missing\\" not found","reason":"NotFound",'
        b'"details":{"name":"missing","kind":"services"},"code":404}\n'
    )
