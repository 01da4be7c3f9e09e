"""Pod-managed files: /etc/hosts, /etc/resolv.conf, /etc/hostname."""

from __future__ import annotations

from typing import Any

import pytest

from kubesvc.node.podfiles import (
    hostname_file,
    hosts_file,
    parse_resolv_conf,
    pod_dns,
    pod_hostname,
    resolv_conf,
)

Obj = dict[str, Any]

LOCALHOST = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def pod(name: str = "web-0", ns: str = "ns1", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


@pytest.mark.parametrize(
    ("p", "ip", "want_tail"),
    [
        pytest.param(pod(), "10.244.0.5", "10.244.0.5\tweb-0\n", id="plain"),
        pytest.param(pod(hostname="h1"), "10.244.0.5", "10.244.0.5\th1\n", id="hostname"),
        pytest.param(
            pod(hostname="h1", subdomain="sub"),
            "10.244.0.5",
            "10.244.0.5\th1.sub.ns1.svc.cluster.local\th1\n",
            id="subdomain",
        ),
        pytest.param(
            pod(subdomain="sub"),
            ["10.244.0.5", "fd00::5"],
            "10.244.0.5\tweb-0.sub.ns1.svc.cluster.local\tweb-0\nfd00::5\tweb-0.sub.ns1.svc.cluster.local\tweb-0\n",
            id="dual-stack-fqdn",
        ),
        pytest.param(
            pod(
                hostAliases=[
                    {"ip": "1.2.3.4", "hostnames": ["foo", "bar"]},
                    {"ip": "5.6.7.8", "hostnames": ["baz"]},
                ]
            ),
            "10.244.0.5",
            "10.244.0.5\tweb-0\n\n# Entries added by HostAliases.\n"
            "1.2.3.4\tfoo\tbar\n5.6.7.8\tbaz\n",
            id="host-aliases",
        ),
        pytest.param(pod(), "", "", id="no-ip"),
    ],
)
def test_hosts_file(p: Obj, ip: str | list[str], want_tail: str) -> None:
    assert hosts_file(p, ip) == LOCALHOST + want_tail


def test_hosts_file_custom_domain() -> None:
    got = hosts_file(pod(subdomain="s"), "10.0.0.1", cluster_domain="example.org")
    assert got.endswith("10.0.0.1\tweb-0.s.ns1.svc.example.org\tweb-0\n")


def test_hosts_file_host_network() -> None:
    node = "127.0.0.1 localhost\n10.0.0.1 node1\n"
    p = pod(hostNetwork=True, hostAliases=[{"ip": "1.2.3.4", "hostnames": ["foo"]}])
    assert hosts_file(p, "10.0.0.1", node_hosts=node) == (
        "# Kubernetes-managed hosts file (host network).\n"
        + node
        + "\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n"
    )


LONG = "a" * 62 + "-bcdef"


@pytest.mark.parametrize(
    ("p", "want"),
    [
        pytest.param(pod(), "web-0", id="name"),
        pytest.param(pod(hostname="h"), "h", id="hostname"),
        pytest.param(pod(name=LONG), "a" * 62, id="truncated-trailing-dash"),
        pytest.param(pod(name="b" * 70), "b" * 63, id="truncated"),
        pytest.param(pod(hostname="h", subdomain="s"), "h", id="subdomain-short"),
        pytest.param(
            pod(hostname="h", subdomain="s", setHostnameAsFQDN=True),
            "h.s.ns1.svc.cluster.local",
            id="fqdn",
        ),
        pytest.param(pod(setHostnameAsFQDN=True), "web-0", id="fqdn-no-subdomain"),
    ],
)
def test_pod_hostname(p: Obj, want: str) -> None:
    assert pod_hostname(p) == want
    assert hostname_file(p) == want + "\n"


def test_fqdn_too_long() -> None:
    p = pod(hostname="h" * 40, subdomain="s" * 20, setHostnameAsFQDN=True)
    with pytest.raises(ValueError, match="is too long"):
        pod_hostname(p)


HOST = (
    "# host\nnameserver 192.168.1.1\nnameserver 192.168.1.2\n"
    "search lan. corp\noptions edns0 timeout:2\n"
)


def test_resolv_conf_cluster_first_default() -> None:
    assert resolv_conf(pod()) == (
        "search ns1.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


@pytest.mark.parametrize(
    ("p", "want"),
    [
        pytest.param(
            pod(dnsPolicy="ClusterFirst"),
            (
                ["10.96.0.10"],
                ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan", "corp"],
                ["ndots:5"],
            ),
            id="cluster-first-appends-host-search",
        ),
        pytest.param(
            pod(dnsPolicy="Default"),
            (["192.168.1.1", "192.168.1.2"], ["lan", "corp"], ["edns0", "timeout:2"]),
            id="default",
        ),
        pytest.param(
            pod(dnsPolicy="ClusterFirst", hostNetwork=True),
            (["192.168.1.1", "192.168.1.2"], ["lan", "corp"], ["edns0", "timeout:2"]),
            id="host-network-falls-back",
        ),
        pytest.param(
            pod(dnsPolicy="ClusterFirstWithHostNet", hostNetwork=True),
            (
                ["10.96.0.10"],
                ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan", "corp"],
                ["ndots:5"],
            ),
            id="cluster-first-with-host-net",
        ),
        pytest.param(pod(dnsPolicy="None"), ([], [], []), id="none-empty"),
        pytest.param(
            pod(
                dnsPolicy="None",
                dnsConfig={
                    "nameservers": ["1.1.1.1"],
                    "searches": ["a.example", "a.example", "b.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                },
            ),
            (["1.1.1.1"], ["a.example", "b.example"], ["ndots:2", "edns0"]),
            id="none-with-config",
        ),
        pytest.param(
            pod(
                dnsConfig={
                    "nameservers": ["10.96.0.10", "8.8.8.8"],
                    "searches": ["svc.cluster.local", "extra.example"],
                    "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}],
                }
            ),
            (
                ["10.96.0.10", "8.8.8.8"],
                [
                    "ns1.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "lan",
                    "corp",
                    "extra.example",
                ],
                ["ndots:1", "single-request"],
            ),
            id="cluster-first-merge",
        ),
        pytest.param(
            pod(dnsPolicy="Default", dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2"]}),
            (["192.168.1.1", "192.168.1.2", "1.1.1.1"], ["lan", "corp"], ["edns0", "timeout:2"]),
            id="max-three-nameservers",
        ),
    ],
)
def test_pod_dns(p: Obj, want: tuple[list[str], list[str], list[str]]) -> None:
    assert pod_dns(p, host_resolv=HOST) == want


def test_search_limits() -> None:
    many = [f"d{i}.example" for i in range(40)]
    _, searches, _ = pod_dns(pod(dnsPolicy="None", dnsConfig={"searches": many}))
    assert searches == many[:32]
    too_long = "x" * 254
    _, searches, _ = pod_dns(
        pod(dnsPolicy="None", dnsConfig={"searches": ["ok.example", too_long]})
    )
    assert searches == ["ok.example"]
    wide = [f"{i:02d}" + "y" * 98 for i in range(25)]  # 100 chars each
    _, searches, _ = pod_dns(pod(dnsPolicy="None", dnsConfig={"searches": wide}))
    assert searches == wide[:20]
    assert len(" ".join(searches)) <= 2048


def test_resolv_conf_none_with_config_text() -> None:
    p = pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["x.example"]})
    assert resolv_conf(p) == "search x.example\nnameserver 1.1.1.1\n"


def test_resolv_conf_custom_cluster() -> None:
    got = resolv_conf(pod(ns="prod"), dns_ip="10.0.0.10", cluster_domain="k8s.test")
    assert (
        got
        == "search prod.svc.k8s.test svc.k8s.test k8s.test\nnameserver 10.0.0.10\noptions ndots:5\n"
    )


def test_parse_resolv_conf() -> None:
    text = "nameserver 1.1.1.1\nsearch a b\n  # c\nsearch c.\nnameserver\noptions x\noptions y z\n"
    assert parse_resolv_conf(text) == (["1.1.1.1"], ["c"], ["y", "z"])
