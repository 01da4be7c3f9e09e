"""Where pods/proxy, services/proxy and nodes/proxy requests go (upstream's ResourceLocation
of each registry) and which headers pass."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.api.errors import ApiError
from kubesvc.apiserver import proxy_location as loc


def pod(name: str = "web", ip: str = "10.244.1.5", ports: list[int] | None = None) -> Any:
    containers = [{"name": "c", "ports": [{"containerPort": p} for p in ports or []]}]
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": containers, "nodeName": "n1"},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    }


@pytest.mark.parametrize(
    ("id_", "parsed"),
    [
        ("web", ("", "web", "")),
        ("web:8080", ("", "web", "8080")),
        ("https:web:8443", ("https", "web", "8443")),
        ("http:web:", ("http", "web", "")),
        ("ftp:web:21", None),
        (":8080", None),
        ("a:b:c:d", None),
        ("", None),
    ],
)
def test_split_scheme_name_port(id_: str, parsed: tuple[str, str, str] | None) -> None:
    assert loc.split_scheme_name_port(id_) == parsed


def test_invalid_request_wording() -> None:
    with pytest.raises(ApiError) as e:
        loc.parse_id("ftp:web:21", "pod")
    assert (e.value.code, e.value.message) == (400, 'invalid pod request "ftp:web:21"')


def test_pod_port_defaults_to_the_first_container_port_then_80() -> None:
    assert loc.pod_target(pod(ports=[8080, 9090]), "", "").port == 8080
    assert loc.pod_target(pod(), "", "").port == 80
    assert loc.pod_target(pod(ports=[8080]), "", "9376").port == 9376
    target = loc.pod_target(pod(), "", "")
    assert (target.namespace, target.name, target.ip, target.scheme) == (
        "default",
        "web",
        "10.244.1.5",
        "http",
    )


@pytest.mark.parametrize("ip", ["", "127.0.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.1", "x"])
def test_pod_without_a_proxyable_address(ip: str) -> None:
    with pytest.raises(ApiError) as e:
        loc.pod_target(pod(ip=ip), "", "80")
    assert (e.value.code, e.value.message) == (400, "address not allowed")


def test_named_pod_port_cannot_be_dialed() -> None:
    with pytest.raises(ApiError) as e:
        loc.pod_target(pod(), "", "http")
    assert e.value.code == 503
    assert e.value.message.startswith("error trying to reach service: ")


def service(ports: list[tuple[str, int]]) -> Any:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"name": n, "port": p} for n, p in ports]},
    }


def endpoints(addresses: list[tuple[str, str]], ports: list[tuple[str, int]]) -> Any:
    return {
        "subsets": [
            {
                "addresses": [
                    {"ip": ip, "targetRef": {"kind": "Pod", "name": name}} for name, ip in addresses
                ],
                "ports": [{"name": n, "port": p} for n, p in ports],
            }
        ]
    }


def test_service_picks_a_ready_pod_of_the_port() -> None:
    pods = {"a": pod("a", "10.244.1.5"), "b": pod("b", "10.244.2.6")}
    eps = endpoints([("a", "10.244.1.5"), ("b", "10.244.2.6")], [("http", 8080), ("m", 9090)])
    svc = service([("http", 80), ("m", 90)])
    seen = {
        (t.name, t.port)
        for t in (
            loc.service_target(svc, eps, pods, "", "http", random.Random(i)) for i in range(40)
        )
    }
    assert seen == {("a", 8080), ("b", 8080)}
    # a port number stands for the Service port of that number
    assert loc.service_target(svc, eps, pods, "", "90").port == 9090


def test_service_addresses_that_are_not_its_pods_are_skipped() -> None:
    # the pod's IP changed since: upstream validates each address against its pod
    pods = {"a": pod("a", "10.244.9.9")}
    eps = endpoints([("a", "10.244.1.5")], [("", 8080)])
    with pytest.raises(ApiError) as e:
        loc.service_target(service([("", 80)]), eps, pods, "", "")
    assert (e.value.code, e.value.message) == (503, 'no endpoints available for service "web"')


def test_service_errors() -> None:
    with pytest.raises(ApiError) as e:
        loc.service_target(service([("", 80)]), None, {}, "", "")
    assert (e.value.code, e.value.message) == (503, 'no endpoints available for service "web"')
    with pytest.raises(ApiError) as e:
        loc.service_target(service([("", 80)]), None, {}, "", "81")
    assert (e.value.code, e.value.message) == (503, 'no service port 81 found for service "web"')


def test_node_target() -> None:
    assert loc.node_target(("172.31.0.10", 10250), "", "") == loc.NodeTarget(
        "https", "172.31.0.10", 10250, True
    )
    assert loc.node_target(("172.31.0.10", 10250), "", "10250").kubelet
    assert loc.node_target(("172.31.0.10", 10250), "", "9100") == loc.NodeTarget(
        "http", "172.31.0.10", 9100, False
    )


@pytest.mark.parametrize(
    ("path", "split"),
    [
        (
            "/api/v1/namespaces/default/pods/web:8080/proxy/a/b/?x=1",
            ("/api/v1/namespaces/default/pods/web:8080/proxy", "a/b/"),
        ),
        (
            "/api/v1/namespaces/pods/pods/proxy/proxy/",
            ("/api/v1/namespaces/pods/pods/proxy/proxy", ""),
        ),
        ("/api/v1/nodes/n1/proxy", ("/api/v1/nodes/n1/proxy", "")),
        (
            "/api/v1/nodes/n1/proxy/metrics%2Fcadvisor",
            ("/api/v1/nodes/n1/proxy", "metrics%2Fcadvisor"),
        ),
        ("/api/v1/namespaces/default/pods/web/log", None),
        ("/apis/apps/v1/namespaces/d/deployments/x/proxy", None),
        ("/api", None),
    ],
)
def test_split_proxy_path(path: str, split: tuple[str, str] | None) -> None:
    assert loc.split_proxy_path(path) == split


def test_request_headers_drop_credentials_and_hop_by_hop() -> None:
    out = loc.request_headers(
        [
            ("Authorization", "Bearer secret"),
            ("Connection", "keep-alive"),
            ("Accept", "text/html"),
            ("X-Forwarded-For", "192.0.2.9"),
            ("Transfer-Encoding", "chunked"),
        ],
        forwarded_uri="/api/v1/namespaces/default/pods/web/proxy/",
        forwarded_host="127.0.0.1:6443",
        client_ip="127.0.0.1",
    )
    names = [k.lower() for k, _ in out]
    assert "authorization" not in names and "connection" not in names
    assert "transfer-encoding" not in names
    assert ("Accept", "text/html") in out
    assert ("X-Forwarded-For", "192.0.2.9, 127.0.0.1") in out
    assert ("X-Forwarded-Uri", "/api/v1/namespaces/default/pods/web/proxy/") in out


def test_redirects_point_back_through_the_proxy() -> None:
    prefix = "/api/v1/namespaces/default/pods/web:8080/proxy"
    kwargs = {"backend_host": "10.244.1.5:8080", "prefix": prefix, "host": "127.0.0.1:6443"}
    assert (
        loc.rewrite_location("/login/?next=1", **kwargs)
        == f"https://127.0.0.1:6443{prefix}/login/?next=1"
    )
    assert (
        loc.rewrite_location("http://10.244.1.5:8080/x", **kwargs)
        == f"https://127.0.0.1:6443{prefix}/x"
    )
    assert loc.rewrite_location("https://example.test/x", **kwargs) == "https://example.test/x"
    assert loc.rewrite_location("other", **kwargs) == "other"


@given(st.text(max_size=40))
def test_split_never_raises(id_: str) -> None:
    parsed = loc.split_scheme_name_port(id_)
    if parsed is not None:
        assert parsed[1] and parsed[0] in loc.SCHEMES


@given(st.text(max_size=200))
def test_path_and_location_handling_never_raise(text: str) -> None:
    loc.split_proxy_path(text)
    loc.rewrite_location(text, backend_host="10.0.0.1:80", prefix="/p", host="h")
