# ruff: noqa: E501  (zone-file text lines are long)
"""The zone view: API objects -> records, written as zone-file text.

IP plan: Service IPs 10.96.0.0/16, pod IPs 10.244.0.0/16, IPv6 pods fd00::/64."""

from __future__ import annotations

from typing import Any

import pytest

from kubesvc.api.kinds import slice_service_key
from kubesvc.dns.records import (
    Endpoint,
    Port,
    Service,
    Zone,
    ZoneView,
    build_view,
    parse_service,
    parse_slice,
    service_records,
)

ZONE = Zone("cluster.local.", 5, 1)
HTTP = Port("http", "TCP", 80)
HTTP_EP = Port("http", "TCP", 8080)


def zone_text(text: str) -> list[str]:
    return sorted(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())


def texts(records: Any) -> list[str]:
    return sorted(r.text() for r in records)


@pytest.mark.parametrize(
    ("svc", "eps", "expected"),
    [
        pytest.param(
            Service("default", "my-svc", ("10.96.0.11",), ports=(HTTP, Port("", "UDP", 53))),
            [Endpoint("10.244.1.5", "", (HTTP_EP,))],
            """
            my-svc.default.svc.cluster.local. 5 IN A 10.96.0.11
            11.0.96.10.in-addr.arpa. 5 IN PTR my-svc.default.svc.cluster.local.
            _http._tcp.my-svc.default.svc.cluster.local. 5 IN SRV 0 100 80 my-svc.default.svc.cluster.local.
            10-244-1-5.my-svc.default.svc.cluster.local. 5 IN A 10.244.1.5
            5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.my-svc.default.svc.cluster.local.
            """,
            id="cluster-ip",
        ),
        pytest.param(
            Service("ns1", "hl", headless=True, ports=(HTTP,)),
            [
                Endpoint("10.244.1.5", "web-0", (HTTP_EP,)),
                Endpoint("10.244.2.7", "", (HTTP_EP,)),
                Endpoint("10.244.2.7", "", (HTTP_EP,)),
            ],
            """
            hl.ns1.svc.cluster.local. 5 IN A 10.244.1.5
            hl.ns1.svc.cluster.local. 5 IN A 10.244.2.7
            web-0.hl.ns1.svc.cluster.local. 5 IN A 10.244.1.5
            10-244-2-7.hl.ns1.svc.cluster.local. 5 IN A 10.244.2.7
            5.1.244.10.in-addr.arpa. 5 IN PTR web-0.hl.ns1.svc.cluster.local.
            7.2.244.10.in-addr.arpa. 5 IN PTR 10-244-2-7.hl.ns1.svc.cluster.local.
            _http._tcp.hl.ns1.svc.cluster.local. 5 IN SRV 0 50 8080 web-0.hl.ns1.svc.cluster.local.
            _http._tcp.hl.ns1.svc.cluster.local. 5 IN SRV 0 50 8080 10-244-2-7.hl.ns1.svc.cluster.local.
            """,
            id="headless",
        ),
        pytest.param(
            Service("ns1", "hl", headless=True, ports=(HTTP,)), [], "", id="headless-empty"
        ),
        pytest.param(
            Service("ns1", "ext", external_name="example.com.", ports=(HTTP,)),
            [],
            "ext.ns1.svc.cluster.local. 5 IN CNAME example.com.",
            id="external-name",
        ),
        pytest.param(
            Service("ns1", "v6", ("fd00:96::1",)),
            [],
            """
            v6.ns1.svc.cluster.local. 5 IN AAAA fd00:96::1
            1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa. 5 IN PTR v6.ns1.svc.cluster.local.
            """,
            id="ipv6",
        ),
    ],
)
def test_service_records(svc: Service, eps: list[Endpoint], expected: str) -> None:
    assert texts(service_records(svc, eps, ZONE)) == zone_text(expected)


SERVICE = {
    "metadata": {"name": "My-Svc", "namespace": "default"},
    "spec": {
        "clusterIP": "10.96.0.11",
        "clusterIPs": ["10.96.0.11"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    },
}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            SERVICE,
            Service("default", "My-Svc", ("10.96.0.11",), ports=(Port("http", "TCP", 80),)),
            id="cluster-ip",
        ),
        pytest.param(
            {"metadata": {"name": "h", "namespace": "n"}, "spec": {"clusterIP": "None"}},
            Service("n", "h", headless=True),
            id="headless",
        ),
        pytest.param(
            {
                "metadata": {"name": "e", "namespace": "n"},
                "spec": {"type": "ExternalName", "externalName": "Foo.Example.com"},
            },
            Service("n", "e", external_name="foo.example.com."),
            id="external-name",
        ),
        pytest.param({"metadata": {"name": "x"}, "spec": {}}, None, id="no-namespace"),
    ],
)
def test_parse_service(obj: dict[str, Any], expected: Service | None) -> None:
    assert parse_service(obj) == expected


def test_parse_slice_keeps_ready_endpoints_only() -> None:
    slc = {
        "metadata": {"namespace": "n", "labels": {"kubernetes.io/service-name": "s"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "x"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "Web-0", "conditions": {"ready": True}},
            {"addresses": ["10.244.1.6"], "conditions": {"ready": False}},
            {"addresses": ["10.244.1.7"]},  # no conditions: ready
        ],
    }
    assert slice_service_key(slc) == "n/s"
    assert parse_slice(slc) == [
        Endpoint("10.244.1.5", "web-0", (HTTP_EP,)),
        Endpoint("10.244.1.7", "", (HTTP_EP,)),
    ]
    assert parse_slice({**slc, "addressType": "FQDN"}) == []


def test_view_names_and_incremental_changes() -> None:
    svc = Service("default", "my-svc", ("10.96.0.11",))
    view = build_view([svc], {}, ["default"], ZONE)
    assert view.exists("default.svc.cluster.local.")
    assert view.exists("default.pod.cluster.local.")
    assert view.records("default.svc.cluster.local.") == []
    assert texts(view.records("dns-version.cluster.local.")) == zone_text(
        'dns-version.cluster.local. 5 IN TXT "1.1.0"'
    )
    moved = Service("default", "my-svc", ("10.96.0.12",))
    changed = view.set_source("svc:default/my-svc", service_records(moved, [], ZONE))
    assert changed == {
        "my-svc.default.svc.cluster.local.",
        "11.0.96.10.in-addr.arpa.",
        "12.0.96.10.in-addr.arpa.",
    }
    assert not view.exists("11.0.96.10.in-addr.arpa.")
    assert view.set_source("svc:default/my-svc", service_records(moved, [], ZONE)) == set()
    view.remove_source("svc:default/my-svc")
    assert not view.exists("my-svc.default.svc.cluster.local.")


def test_view_shared_reverse_name_keeps_both_sources() -> None:
    ep = Endpoint("10.244.1.5")
    a, b = Service("n", "a", ("10.96.0.1",)), Service("n", "b", ("10.96.0.2",))
    view = ZoneView(ZONE)
    view.set_source("svc:n/a", service_records(a, [ep], ZONE))
    view.set_source("svc:n/b", service_records(b, [ep], ZONE))
    assert texts(view.records("5.1.244.10.in-addr.arpa.")) == zone_text(
        """
        5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.a.n.svc.cluster.local.
        5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.b.n.svc.cluster.local.
        """
    )
    view.remove_source("svc:n/a")
    assert texts(view.records("5.1.244.10.in-addr.arpa.")) == zone_text(
        "5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.b.n.svc.cluster.local."
    )
