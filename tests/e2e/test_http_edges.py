"""Authentication, bad bodies and limits over real HTTPS: clear Status errors, no crash."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e


def _request(
    api: ApiServerProcess,
    method: str,
    path: str,
    body: bytes = b"",
    ctype: str = "application/json",
    token: bool = True,
) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(api.data_dir / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=30)
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = "Bearer " + (api.data_dir / "pki" / "token").read_text().strip()
    conn.request(method, path, body=body or None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data.startswith(b"{") else {}


@pytest.mark.parametrize(
    ("body", "ctype", "code", "reason"),
    [
        pytest.param(b"{not json", "application/json", 400, "BadRequest", id="malformed-json"),
        pytest.param(b"a: [b", "application/yaml", 400, "BadRequest", id="malformed-yaml"),
        pytest.param(
            b"k8s\x00\x0a\xff\xff",
            "application/vnd.kubernetes.protobuf",
            400,
            "BadRequest",
            id="bad-protobuf",
        ),
        pytest.param(b"[1,2]", "application/json", 400, "BadRequest", id="not-an-object"),
        pytest.param(
            b"x" * (3 * 1024 * 1024 + 1),
            "application/json",
            413,
            "RequestEntityTooLarge",
            id="too-large",
        ),
    ],
)
def test_bad_bodies_get_status(
    api: ApiServerProcess, body: bytes, ctype: str, code: int, reason: str
) -> None:
    status, obj = _request(api, "POST", "/api/v1/namespaces/default/configmaps", body, ctype)
    assert status == code
    assert obj["kind"] == "Status" and obj["reason"] == reason and obj["code"] == code
    # the server is still there
    assert _request(api, "GET", "/api/v1/namespaces/default")[0] == 200


def test_requires_credentials(api: ApiServerProcess) -> None:
    status, obj = _request(api, "GET", "/api/v1/namespaces", token=False)
    assert status == 401 and obj["reason"] == "Unauthorized"
    assert _request(api, "GET", "/version", token=False)[0] == 200


def test_unknown_paths_and_fields(api: ApiServerProcess) -> None:
    status, obj = _request(api, "GET", "/api/v1/widgets")
    assert status == 404 and obj["kind"] == "Status"
    body = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict"}, "bogus": 1}
    )
    status, obj = _request(
        api, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", body.encode()
    )
    assert status == 400 and 'unknown field "bogus"' in obj["message"]


def test_aggregated_discovery(api: ApiServerProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(api.data_dir / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=30)
    token = (api.data_dir / "pki" / "token").read_text().strip()
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    conn.request("GET", "/apis", headers={"Accept": accept, "Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.getheader("Content-Type") == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    groups = {g["metadata"]["name"]: g for g in body["items"]}
    apps = groups["apps"]["versions"][0]["resources"]
    deploy = next(r for r in apps if r["resource"] == "deployments")
    assert deploy["shortNames"] == ["deploy"] and deploy["categories"] == ["all"]
    assert {s["subresource"] for s in deploy["subresources"]} == {"status", "scale"}


def test_binding_sets_node_once(api: ApiServerProcess, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "pause"}]},
    }
    api.out("-n", ns, "create", "-f", "-", input=json.dumps(pod))
    binding = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p"},
            "target": {"kind": "Node", "name": "node-a"},
        }
    ).encode()
    path = f"/api/v1/namespaces/{ns}/pods/p/binding"
    assert _request(api, "POST", path, binding)[0] == 201
    got = json.loads(api.out("-n", ns, "get", "pod", "p", "-o", "json"))
    assert got["spec"]["nodeName"] == "node-a"
    status, obj = _request(api, "POST", path, binding)
    assert status == 409 and 'is already assigned to node "node-a"' in obj["message"]


def test_unknown_field_warning(api: ApiServerProcess, ns: str) -> None:
    cm = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "w"},
            "data": {"a": "b"},
            "extra": True,
        }
    )
    res = api.kubectl("-n", ns, "create", "--validate=warn", "-f", "-", input=cm)
    assert 'Warning: unknown field "extra"' in res.stderr
    assert "extra" not in api.out("-n", ns, "get", "cm", "w", "-o", "json")
