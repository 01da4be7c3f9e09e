"""`kubesvc trace`'s pure parts: the resolver's names, targets, the kernel's evidence, and
the explanation built from it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.trace import evidence, resolver, target
from kubesvc.trace.explain import explain
from kubesvc.trace.run import Observed, Query, Source

POD_RESOLV = """nameserver 10.96.0.10
search default.svc.cluster.local svc.cluster.local cluster.local
options ndots:5
"""


def test_resolv_conf_and_the_names_a_pod_tries() -> None:
    conf = resolver.parse(POD_RESOLV)
    assert conf == resolver.ResolvConf(
        ("10.96.0.10",), ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"), 5
    )
    # fewer dots than ndots: the search list first, then the name as it is
    assert resolver.candidates("web", conf) == [
        "web.default.svc.cluster.local.",
        "web.svc.cluster.local.",
        "web.cluster.local.",
        "web.",
    ]
    # enough dots: as it is first
    many = resolver.candidates("a.b.c.d.e.f", conf)
    assert many[0] == "a.b.c.d.e.f." and many[1] == "a.b.c.d.e.f.default.svc.cluster.local."
    # absolute: alone
    assert resolver.candidates("web.default.svc.cluster.local.", conf) == [
        "web.default.svc.cluster.local."
    ]
    assert resolver.candidates("", conf) == []


def test_resolv_conf_oddities() -> None:
    conf = resolver.parse(
        "nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\nnameserver 4.4.4.4\n"
        "search a b\nsearch c # the last search wins\noptions ndots:99 ndots:x\n; comment\n"
    )
    assert conf.nameservers == ("1.1.1.1", "2.2.2.2", "3.3.3.3")
    assert conf.search == ("c",) and conf.ndots == 15


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_resolv_conf_and_name_give_absolute_names(text: str, name: str) -> None:
    for n in resolver.candidates(name, resolver.parse(text)):
        assert n.endswith(".")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("web", target.Target("web", 80, "/")),
        ("web:8080", target.Target("web", 8080, "/")),
        ("http://web.default/hostname?x=1", target.Target("web.default", 80, "/hostname?x=1")),
        ("10.96.0.1:443", target.Target("10.96.0.1", 443, "/")),
    ],
)
def test_targets(text: str, want: target.Target) -> None:
    assert target.parse(text) == want


@pytest.mark.parametrize("text", ["https://web", "web:99999", "http://", "[::1]:80", "web:x"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(target.BadTarget):
        target.parse(text)


@given(st.text(max_size=200))
def test_any_target_text_parses_or_is_refused(text: str) -> None:
    try:
        t = target.parse(text)
    except target.BadTarget:
        return
    assert 0 < t.port < 65536 and t.host


TRACE = [
    'trace id 1a2b ip kubesvc-trace-x prerouting packet: iif "cbr0" ip saddr 10.244.0.4 '
    "ip daddr 10.96.5.5 ip protocol tcp tcp sport 40000 tcp dport 80 tcp flags == syn",
    "trace id 1a2b ip kubesvc-trace-x prerouting rule ip saddr 10.244.0.4 tcp sport 40000 "
    "meta nftrace set 1 (verdict continue)",
    'trace id 1a2b ip kubesvc-proxy nat-prerouting packet: iif "cbr0" ip saddr 10.244.0.4 '
    "ip daddr 10.96.5.5 ip protocol tcp tcp sport 40000 tcp dport 80",
    "trace id 1a2b ip kubesvc-proxy nat-prerouting rule jump services (verdict jump services)",
    "trace id 1a2b ip kubesvc-proxy services rule ip daddr . meta l4proto . th dport vmap "
    "@service-ips (verdict goto pick-ip-int-1)",
    "trace id 1a2b ip kubesvc-proxy dnat-ip rule dnat ip to ip daddr . meta l4proto . th "
    "dport . meta mark map @service-endpoints (verdict accept)",
    "trace id 1a2b ip kubesvc-proxy filter-forward policy accept",
    "some line nft prints that is not an event",
    # the next packet (the same trace id, as ids repeat) starts in the trace table again
    'trace id 1a2b ip kubesvc-trace-x prerouting packet: iif "cbr0" ip saddr 10.244.0.4',
    "trace id 1a2b ip kubesvc-proxy nat-prerouting rule jump services (verdict jump services)",
]
CONNTRACK = (
    "tcp      6 119 TIME_WAIT src=10.244.0.4 dst=10.96.5.5 sport=40000 dport=80 "
    "src=10.244.1.7 dst=10.244.0.4 sport=8080 dport=40000 [ASSURED] mark=0 use=1"
)


def test_the_first_packets_events_only() -> None:
    events = evidence.first_packet(evidence.parse_trace(TRACE), "kubesvc-trace-x")
    assert [(e.chain, e.kind) for e in events] == [
        ("nat-prerouting", "packet"),
        ("nat-prerouting", "rule"),
        ("services", "rule"),
        ("dnat-ip", "rule"),
        ("filter-forward", "policy"),
    ]
    assert events[2].verdict == "goto pick-ip-int-1"


def test_conntrack_entries() -> None:
    entry = evidence.parse_conntrack(CONNTRACK)
    assert entry is not None
    assert entry.state == "TIME_WAIT" and entry.dnat == ("10.244.1.7", 8080)
    assert entry.snat is None
    udp = evidence.parse_conntrack(
        "udp 17 29 src=10.244.0.4 dst=10.96.0.10 sport=5000 dport=53 src=10.244.1.2 "
        "dst=172.31.0.10 sport=53 dport=61000 mark=0 use=1"
    )
    assert udp is not None and udp.state == "" and udp.snat == ("172.31.0.10", 61000)
    assert evidence.parse_conntrack("conntrack v1.4.7: 1 flow entries have been shown.") is None


@given(st.text(max_size=400))
def test_any_line_parses_or_is_skipped(line: str) -> None:
    evidence.parse_conntrack(line)
    evidence.parse_trace([line])


def test_iptables_rules_whose_counters_moved() -> None:
    before = (
        "*nat\n[5:300] -A KUBE-SERVICES -d 10.96.5.5/32 -j KUBE-SVC-X\n[1:60] -A X -j Y\nCOMMIT\n"
    )
    after = "*nat\n[6:360] -A KUBE-SERVICES -d 10.96.5.5/32 -j KUBE-SVC-X\n[1:60] -A X -j Y\n"
    after += "[1:60] -A KUBE-SEP-A -j DNAT --to-destination 10.244.1.7:8080\nCOMMIT\n"
    assert evidence.moved_rules(before, after) == [
        ("nat", "-A KUBE-SERVICES -d 10.96.5.5/32 -j KUBE-SVC-X", 1),
        ("nat", "-A KUBE-SEP-A -j DNAT --to-destination 10.244.1.7:8080", 1),
    ]


def _objects(ready: bool = True) -> dict[str, list[dict[str, Any]]]:
    pods = [
        {
            "metadata": {"name": "client", "namespace": "default"},
            "spec": {"nodeName": "n1"},
            "status": {"podIP": "10.244.0.4"},
        },
        {
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n2"},
            "status": {"podIP": "10.244.1.7"},
        },
        {
            "metadata": {"name": "dns-1", "namespace": "kube-system"},
            "spec": {"nodeName": "n2"},
            "status": {"podIP": "10.244.1.2"},
        },
    ]
    svc = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.5.5", "ports": [{"port": 80, "targetPort": 8080}]},
    }
    endpoint = {
        "addresses": ["10.244.1.7"],
        "conditions": {"ready": ready},
        "targetRef": {"name": "web-1"},
        "nodeName": "n2",
    }
    sl = {
        "metadata": {
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "endpoints": [endpoint],
    }
    return {"pods": pods, "services": [svc], "endpointslices": [sl], "nodes": []}


def _observed(**kw: Any) -> Observed:
    src = Source("pod", "default/client", "ns", "10.244.0.4", "n1", resolver.parse(POD_RESOLV))
    obs = Observed(src, target.parse("web/hostname"), nodes={"n1": "172.31.0.10"}, **kw)
    return obs


def test_a_request_that_worked_names_the_pod_conntrack_chose() -> None:
    obs = _observed(
        queries=[
            Query(
                "web.default.svc.cluster.local.",
                "10.96.0.10",
                "NOERROR",
                ["web.default.svc.cluster.local. A 10.96.5.5"],
                1.0,
                "10.244.1.2",
            )
        ],
        address="10.96.5.5",
        status_line="HTTP/1.1 200 OK",
        body=b"web-1",
        total_ms=2.0,
        connect_ms=1.0,
    )
    obs.conntrack["n1"] = evidence.parse_conntrack(CONNTRACK)
    obs.rules["n1"] = evidence.first_packet(evidence.parse_trace(TRACE), "kubesvc-trace-x")
    obs.routes["n1"] = {"dst": "10.244.1.7", "gateway": "172.31.0.11", "dev": "eth0"}
    obs.nodes["n2"] = "172.31.0.11"
    report = explain(obs, _objects())
    assert report.ok and report.answered_by == "default/web-1"
    text = report.text()
    assert "answered by kube-system/dns-1" in text
    assert "[element 10.96.5.5 . tcp . 80]" in text
    assert "DNAT to 10.244.1.7:8080: default/web-1 on n2" in text
    assert "via 172.31.0.11 (n2)" in text
    doc = report.as_dict()
    assert doc["answeredBy"] == "default/web-1" and doc["ok"] is True
    assert [s["title"] for s in doc["steps"]][-1] == "Answer"


def test_failures_say_why() -> None:
    nx = _observed(
        queries=[Query("web.default.svc.cluster.local.", "10.96.0.10", "NXDOMAIN", [], 1.0)]
    )
    report = explain(nx, _objects())
    assert not report.ok and "does not resolve (NXDOMAIN" in report.why[0]
    rejected = _observed(address="10.96.5.5", connect_error="connection refused")
    rejected.moved["n1"] = [
        ("filter", '-A KUBE-SERVICES -m comment --comment "default/web:80 has no endpoints" '
         "-j REJECT", 1),
    ]  # fmt: skip
    rejected.proxy_mode = "iptables"
    why = explain(rejected, _objects(ready=False)).why
    assert why == [
        "default/web has no ready endpoints (its endpoints are not ready: web-1): "
        "the proxy rejected"
    ]
    no_port = _observed(address="10.96.5.5", connect_error="no answer in 3 s")
    no_port.target = target.parse("web:81")
    assert explain(no_port, _objects()).why == [
        "no rule of the proxy took it: default/web has no port 81"
    ]


@given(
    st.dictionaries(
        st.sampled_from(["pods", "services", "endpointslices", "nodes"]),
        st.lists(
            st.recursive(
                st.none() | st.integers() | st.text(max_size=5),
                lambda c: (
                    st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3)
                ),
                max_leaves=20,
            ),
            max_size=3,
        ),
    )
)
def test_any_stored_objects_are_explained(objects: dict[str, Any]) -> None:
    obs = _observed(address="10.96.5.5", connect_error="connection refused")
    explain(obs, objects).text()


def test_a_services_problems_are_flagged() -> None:
    from kubesvc.trace.service import service_report

    pod = {
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.5",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "c", "ready": False, "state": {"running": {}}}],
        },
    }
    svc = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"app": "web"},
            "clusterIP": "10.96.5.5",
            "ports": [
                {"name": "a", "port": 80, "targetPort": "http"},
                {"name": "b", "port": 81, "targetPort": "metrics"},
                {"name": "c", "port": 82, "targetPort": 9999},
            ],
        },
    }
    report = service_report(svc, [pod], [], {}, {"n1": "rules\n"}, {"default/web-1": {8080}})
    assert report.problems == [
        "targetPort 'metrics': pod web-1 defines no port of that name",
        "port 9999: no process in pod web-1 listens on it",
    ]
    text = report.text()
    assert "web-1 10.244.0.5 on n1: NOT ready: c: running, not ready (readiness probe)" in text
    nobody = service_report(
        {**svc, "spec": {**svc["spec"], "selector": {"app": "x"}}}, [pod], [], {}, {}, {}
    )
    assert nobody.problems == ["the selector app=x matches no pod in default"]


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
        max_leaves=25,
    ),
    st.lists(
        st.dictionaries(
            st.sampled_from(["metadata", "spec", "status"]),
            st.none()
            | st.integers()
            | st.dictionaries(st.text(max_size=8), st.text(max_size=4), max_size=3),
        ),
        max_size=3,
    ),
)
def test_any_stored_service_is_explained(svc: Any, pods: Any) -> None:
    from kubesvc.trace.service import service_report

    if isinstance(svc, dict):
        service_report(svc, pods, pods, {}, {}, {}).text()


def test_listening_ports() -> None:
    from kubesvc.trace.run import listening_ports

    out = "LISTEN 0 4096 *:8080 *:*\nLISTEN 0 128 127.0.0.1:53 0.0.0.0:*\n"
    out += "LISTEN 0 5 [::]:80 [::]:*\njunk\n"
    assert listening_ports(out) == {8080, 53, 80}


def test_ingress_access_log_lines() -> None:
    line = (
        '10.244.1.1 - - [07/Dec/2026:00:12:03 +0000] "GET /hostname HTTP/1.1" 200 172 "-" '
        '"kubesvc-trace/ab12" 84 3 [default/web:80] [] 10.244.2.5:8080 172 2 200 5f0c-1 foo.test'
    )
    assert evidence.parse_access_log(line) == {
        "request": "GET /hostname HTTP/1.1",
        "status": "200",
        "agent": "kubesvc-trace/ab12",
        "service": "default/web:80",
        "endpoint": "10.244.2.5:8080",
        "id": "5f0c-1",
        "host": "foo.test",
    }
    assert evidence.parse_access_log("[notice] HAProxy started") is None


def test_ingress_routes_match_as_the_data_plane_does() -> None:
    from kubesvc.ingress.model import BackendRef, Route, RoutingTable, match_route

    def route(host: str, path: str, exact: bool = False) -> Route:
        return Route(
            host, path, exact, BackendRef("default", f"{host or 'any'}{path}", "80"), "default/i"
        )

    table = RoutingTable(
        routes=(
            route("a.example.com", "/api", exact=True),
            route("a.example.com", "/api"),
            route("a.example.com", "/"),
            route("*.example.com", "/"),
            route("", "/"),
        )
    )
    assert match_route(table, "a.example.com", "/api").backend.service == "a.example.com/api"
    assert match_route(table, "A.example.com.", "/api/x").backend.service == "a.example.com/api"
    assert match_route(table, "a.example.com", "/apix").backend.service == "a.example.com/"
    assert match_route(table, "b.example.com", "/x").backend.service == "*.example.com/"
    # a wildcard stands for one label only
    assert match_route(table, "c.b.example.com", "/").backend.service == "any/"
    assert match_route(RoutingTable(), "a", "/") is None


def test_resolve_overrides() -> None:
    t = target.parse("http://echo.example.com/hostname")
    assert target.resolve_override("echo.example.com:80:172.31.0.240", t) == "172.31.0.240"
    for bad in ("echo.example.com:81:1.2.3.4", "echo.example.com:80:name", "x", "a:b:c:d"):
        with pytest.raises(target.BadTarget):
            target.resolve_override(bad, t)
