"""The real kubectl's client-side validation against /openapi/v2 (kind: List files)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e

LIST = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: list-a}
  data: {a: "1"}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: list-b}
  data: {b: "2"}
- apiVersion: v1
  kind: Service
  metadata: {name: list-svc}
  spec:
    selector: {app: list}
    ports: [{name: http, port: 80, targetPort: http}]
"""

BAD_LIST = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: bad-a}
  data: {a: "1"}
  bogus: true
"""

WRONG_TYPE_LIST = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: bad-svc}
  spec:
    ports: [{port: eighty}]
"""

SVC = """
apiVersion: v1
kind: Service
metadata: {name: plain}
spec:
  selector: {app: plain}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_create_list(api: ApiServerProcess, ns: str) -> None:
    out = api.out("create", "-n", ns, "-f", "-", input=LIST)
    assert "configmap/list-a created" in out
    assert "configmap/list-b created" in out
    assert "service/list-svc created" in out
    names = api.out("get", "-n", ns, "configmaps,services", "-o", "name").split()
    assert {"configmap/list-a", "configmap/list-b", "service/list-svc"} <= set(names)


def test_unknown_field_in_list_item_is_rejected(api: ApiServerProcess, ns: str) -> None:
    err = api.fails("create", "-n", ns, "-f", "-", input=BAD_LIST)
    assert "error validating data" in err
    assert 'ValidationError(ConfigMap): unknown field "bogus"' in err
    assert api.kubectl("get", "-n", ns, "configmap", "bad-a", check=False).returncode != 0


def test_wrong_type_in_list_item_is_rejected(api: ApiServerProcess, ns: str) -> None:
    err = api.fails("create", "-n", ns, "-f", "-", input=WRONG_TYPE_LIST)
    assert "ValidationError(Service.spec.ports[0].port): invalid type" in err


def test_list_with_validation_off(api: ApiServerProcess, ns: str) -> None:
    out = api.out("create", "-n", ns, "--validate=false", "-f", "-", input=LIST)
    assert "configmap/list-a created" in out


def test_plain_apply_still_works(api: ApiServerProcess, ns: str) -> None:
    assert "service/plain created" in api.out("apply", "-n", ns, "-f", "-", input=SVC)


def test_explain_v3_and_v2(api: ApiServerProcess) -> None:
    assert "FIELD: ports <[]ServicePort>" in api.out("explain", "service.spec.ports")
    out = api.out("explain", "configmap", "--output=plaintext-openapiv2")
    assert "KIND:     ConfigMap" in out
    assert "ConfigMap holds configuration data" in out


def test_openapi_v2_json(api: ApiServerProcess) -> None:
    out = api.out("get", "--raw", "/openapi/v2")
    assert out.startswith('{"swagger":"2.0"')
    assert '"io.k8s.api.core.v1.ConfigMap"' in out
