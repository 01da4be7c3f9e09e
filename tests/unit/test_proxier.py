"""Pure parts of the proxy loop: which UDP conntrack entries go stale."""

from __future__ import annotations

from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort
from kubesvc.proxy.proxier import conntrack_deletions

DNS = ServicePort("kube-system", "kube-dns", "dns", "UDP", "10.96.0.10", 53)
WEB = ServicePort("default", "web", "", "TCP", "10.96.0.20", 80)


def state(dns_eps: list[str], web_eps: list[str], with_dns: bool = True) -> ProxyState:
    services = {WEB.key: WEB, **({DNS.key: DNS} if with_dns else {})}
    return ProxyState(
        "n1",
        ("172.31.0.10",),
        "10.244.0.0/16",
        services,
        {
            DNS.key: tuple(Endpoint(ip, 53) for ip in dns_eps),
            WEB.key: tuple(Endpoint(ip, 8080) for ip in web_eps),
        },
    )


def test_removed_udp_endpoint_is_flushed_tcp_is_not() -> None:
    old = state(["10.244.0.5", "10.244.1.5"], ["10.244.0.9"])
    new = state(["10.244.1.5"], [])
    assert conntrack_deletions(old, new) == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--reply-src", "10.244.0.5"]
    ]


def test_nothing_when_endpoints_stay_and_everything_when_service_goes() -> None:
    old = state(["10.244.0.5"], [])
    assert conntrack_deletions(old, old) == []
    gone = conntrack_deletions(old, state([], [], with_dns=False))
    assert [c[-1] for c in gone] == ["10.244.0.5"]
