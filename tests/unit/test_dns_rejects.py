"""What the zone refuses to hold: objects whose fields have other types than the API's, or
values that have no DNS form. Each is reported with the field it failed on.

IP plan: Service IPs 10.96.0.0/16, pod IPs 10.244.0.0/16."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kubesvc.client.shape import Invalid
from kubesvc.dns import server
from kubesvc.dns.records import Endpoint, Port, Service, parse_service, parse_slice


def svc(spec: Any, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", **meta}, "spec": spec}


def slc(**fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "default"}, "addressType": "IPv4", **fields}


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        pytest.param(
            svc({"type": "ExternalName", "externalName": 5}),
            "spec.externalName: expected str",
            id="extname-number",
        ),
        pytest.param(
            svc({"type": "ExternalName", "externalName": "a..b"}),
            "spec.externalName: not a DNS name",
            id="extname-empty-label",
        ),
        pytest.param(
            svc({"type": "ExternalName", "externalName": "x" * 64 + ".com"}),
            "not a DNS name",
            id="extname-long-label",
        ),
        pytest.param(svc({"ports": "80"}), "spec.ports: expected list", id="ports-string"),
        pytest.param(
            svc({"ports": [{"port": "80"}]}),
            "spec.ports[0].port: expected a port",
            id="port-string",
        ),
        pytest.param(svc({"ports": [{"port": 80.0}]}), "spec.ports[0].port", id="port-float"),
        pytest.param(svc({"ports": [{"port": math.nan}]}), "spec.ports[0].port", id="port-nan"),
        pytest.param(svc({"ports": [{"port": 70000}]}), "spec.ports[0].port", id="port-range"),
        pytest.param(
            svc({"ports": [{"port": 80, "name": "a.b"}]}),
            "spec.ports[0].name: not a DNS label",
            id="port-name-dot",
        ),
        pytest.param(
            svc({"ports": [{"port": 80, "protocol": "ICMP"}]}),
            "spec.ports[0].protocol",
            id="protocol",
        ),
        pytest.param(
            svc({"clusterIP": "banana"}), "spec.clusterIPs[0]: not an IP address", id="cluster-ip"
        ),
        pytest.param(
            svc({"clusterIP": "10.96.0.1\x00"}),
            "spec.clusterIPs[0]: not an IP address",
            id="cluster-ip-nul",
        ),
        pytest.param(
            svc({"clusterIPs": "10.96.0.1"}),
            "spec.clusterIPs: expected list",
            id="cluster-ips-string",
        ),
        pytest.param(svc(["clusterIP"]), "spec: expected dict", id="spec-list"),
        pytest.param(svc({}, name="we b"), "metadata.name: not a DNS label", id="name-space"),
        pytest.param(
            svc({}, namespace=5), "metadata.namespace: expected str", id="namespace-number"
        ),
        pytest.param("x", "expected object", id="not-an-object"),
    ],
)
def test_services_refused(obj: Any, error: str) -> None:
    with pytest.raises(Invalid) as e:
        parse_service(obj)
    assert error in str(e.value)
    if isinstance(obj, dict):
        with pytest.raises(Invalid):
            server.slim_service(obj)


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        pytest.param(slc(endpoints="x"), "endpoints: expected list", id="endpoints-string"),
        pytest.param(slc(endpoints=[5]), "endpoints[0]: expected object", id="endpoint-number"),
        pytest.param(
            slc(endpoints=[{"addresses": "10.244.0.1"}]),
            "endpoints[0].addresses",
            id="addresses-string",
        ),
        pytest.param(
            slc(endpoints=[{"addresses": ["banana"]}]), "not an IP address", id="not-an-ip"
        ),
        pytest.param(slc(endpoints=[{"addresses": ["\x00"]}]), "not an IP address", id="nul-ip"),
        pytest.param(
            slc(endpoints=[{"addresses": ["fd00::1"]}]), "not an IPv4 address", id="wrong-family"
        ),
        pytest.param(
            slc(endpoints=[{"addresses": ["10.244.0.1"], "conditions": "yes"}]),
            "endpoints[0].conditions",
            id="conditions",
        ),
        pytest.param(
            slc(endpoints=[{"addresses": ["10.244.0.1"], "conditions": {"ready": "true"}}]),
            "conditions.ready",
            id="ready-string",
        ),
        pytest.param(
            slc(endpoints=[{"addresses": ["10.244.0.1"], "hostname": "a_b c"}]),
            "hostname: not a DNS label",
            id="hostname",
        ),
        pytest.param(slc(ports=[{"port": math.inf}]), "ports[0].port", id="port-inf"),
        pytest.param(slc(addressType=4), "addressType: expected str", id="address-type"),
    ],
)
def test_slices_refused(obj: Any, error: str) -> None:
    with pytest.raises(Invalid) as e:
        parse_slice(obj)
    assert error in str(e.value)


def test_what_is_accepted() -> None:
    obj = svc({"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}], "selector": 5})
    assert parse_service(obj) == Service(
        "default", "web", ("10.96.0.5",), ports=(Port("http", "TCP", 80),)
    )
    assert server.slim_service({**obj, "metadata": {**obj["metadata"], "labels": "x"}})["dns"]
    eps = slc(
        ports=[{"name": "http", "port": 8080}, {"name": "all"}],
        endpoints=[{"addresses": ["10.244.0.1"], "hostname": "Web-0"}, {"addresses": []}],
    )
    assert parse_slice(eps) == [Endpoint("10.244.0.1", "web-0", (Port("http", "TCP", 8080),))]
    with pytest.raises(Invalid, match=r"metadata\.name"):
        server.slim_namespace({"metadata": {"name": "a.b"}})
