"""Rendering of upstream kube-proxy's iptables layout: golden text, chain names against
upstream's test vectors, probabilities, partial syncs, and a packet tracer.

IP plan (as upstream's proxier_test.go):
  pod network (cluster CIDR) 10.0.0.0/8, endpoints 10.180.0.0/16
  cluster IPs                172.30.0.0/16
  this node                  node-a, 192.168.0.2 (the only LOCAL address)
  external IPs               192.168.99.0/24
  load balancer IPs          1.2.3.4, 5.6.7.8
  outside the cluster        203.0.113.0/24 (load balancer source range 203.0.113.0/25)
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import shlex
import textwrap
from dataclasses import dataclass, field

import pytest

from kubesvc.netns import CommandError
from kubesvc.proxy.iptables import backend as b
from kubesvc.proxy.iptables import render as r
from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort

NODE = "node-a"
NODE_IP = "192.168.0.2"
CLUSTER_CIDR = "10.0.0.0/8"


def make_state(ports: list[ServicePort], eps: dict[str, tuple[Endpoint, ...]]) -> ProxyState:
    return ProxyState(NODE, (NODE_IP,), CLUSTER_CIDR, {p.key: p for p in ports}, eps)


def svc(ns: str, name: str, port_name: str = "p80", **changes: object) -> ServicePort:
    base = ServicePort(ns, name, port_name, "TCP", "172.30.0.41", 80)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def ep(ip: str, port: int = 80, node: str = "node-b", **changes: object) -> Endpoint:
    return dataclasses.replace(Endpoint(ip, port, node=node), **changes)  # type: ignore[arg-type]


def golden(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# -- chain names -------------------------------------------------------------------------
# Inputs and names taken from upstream's proxier_test.go expectations.
@pytest.mark.parametrize(
    ("ns", "name", "port_name", "proto", "chain"),
    [
        pytest.param("ns1", "svc1", "p80", "TCP", "XPGD46QRK7WJZT7O", id="ns1/svc1"),
        pytest.param("ns2", "svc2", "p80", "TCP", "GNZBNJ2PO5MGZ6GT", id="ns2/svc2"),
        pytest.param("ns3", "svc3", "p80", "TCP", "X27LE4BHSL4DOUIK", id="ns3/svc3"),
        pytest.param("ns4", "svc4", "p80", "TCP", "4SW47YFZTEDKD3PK", id="ns4/svc4"),
        pytest.param("ns5", "svc5", "p80", "TCP", "NUKIZ6OKUXPJNT4C", id="ns5/svc5"),
        pytest.param("default", "kubernetes", "https", "TCP", "NPX46M4PTMTKRN6Y", id="kubernetes"),
        pytest.param("kube-system", "kube-dns", "dns", "UDP", "TCOU7JCQXEZGVUNU", id="dns-udp"),
        pytest.param("kube-system", "kube-dns", "dns-tcp", "TCP", "ERIFXISQEP7F7OF4", id="dns-tcp"),
    ],
)
def test_service_chain_names_match_upstream(
    ns: str, name: str, port_name: str, proto: str, chain: str
) -> None:
    names = r.chain_names(svc(ns, name, port_name, protocol=proto))
    assert names.svc == "KUBE-SVC-" + chain
    assert names.svl == "KUBE-SVL-" + chain
    assert names.ext == "KUBE-EXT-" + chain
    assert names.fw == "KUBE-FW-" + chain


@pytest.mark.parametrize(
    ("ns", "name", "ip", "chain"),
    [
        pytest.param("ns1", "svc1", "10.180.0.1", "SXIVWICOYRO3J4NJ", id="ns1"),
        pytest.param("ns2", "svc2", "10.180.0.2", "RS4RBKLTHTF2IUXJ", id="ns2"),
        pytest.param("ns3", "svc3", "10.180.0.3", "OYPFS5VJICHGATKP", id="ns3"),
        pytest.param("ns4", "svc4", "10.180.0.4", "UKSFD7AGPMPPLUHC", id="ns4-a"),
        pytest.param("ns4", "svc4", "10.180.0.5", "C6EBXVWJJZMIWKLZ", id="ns4-b"),
        pytest.param("ns5", "svc5", "10.180.0.3", "I77PXRDZVX7PMWMN", id="ns5"),
    ],
)
def test_endpoint_chain_names_match_upstream(ns: str, name: str, ip: str, chain: str) -> None:
    assert r.endpoint_chain_name(svc(ns, name), ep(ip)) == "KUBE-SEP-" + chain


def test_unnamed_port_has_no_colon_in_name_and_comment() -> None:
    sp = svc("ns1", "svc1", "")
    assert r.port_name_string(sp) == "ns1/svc1"
    assert r.chain_names(sp) != r.chain_names(svc("ns1", "svc1", "p80"))
    text = r.render(make_state([sp], {sp.key: (ep("10.180.0.1"),)}))
    assert '--comment "ns1/svc1 cluster IP"' in text


def test_protocol_is_part_of_the_hash() -> None:
    tcp, udp = svc("ns", "dns", "dns"), svc("ns", "dns", "dns", protocol="UDP")
    assert r.chain_names(tcp).svc != r.chain_names(udp).svc


# -- probabilities -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1.0000000000"),
        (2, "0.5000000000"),
        (3, "0.3333333333"),
        (6, "0.1666666667"),
        (7, "0.1428571429"),
        (1000, "0.0010000000"),
    ],
)
def test_probability_formatting(n: int, text: str) -> None:
    assert r.probability(n) == text


def test_probabilities_are_one_over_remaining_endpoints() -> None:
    sp = svc("ns1", "svc1")
    eps = tuple(ep(f"10.180.0.{i}") for i in range(1, 6))
    text = r.render(make_state([sp], {sp.key: eps}))
    svc_chain = r.chain_names(sp).svc
    jumps = [line for line in text.splitlines() if line.startswith(f"-A {svc_chain} ")][1:]
    probs = [
        line.split("--probability ")[1].split()[0] for line in jumps if "--probability" in line
    ]
    assert probs == ["0.2000000000", "0.2500000000", "0.3333333333", "0.5000000000"]
    assert jumps[-1].endswith("-j " + r.endpoint_chain_name(sp, eps[-1]))
    assert "statistic" not in jumps[-1]


# -- golden text -------------------------------------------------------------------------
FILTER_HEAD = """\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
"""
FORWARD = """\
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
"""  # noqa: E501
NAT_HEAD = """\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
"""
POSTROUTING = """\
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
"""  # noqa: E501
NODEPORTS_LAST = """\
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
COMMIT
"""  # noqa: E501


def test_golden_empty_state() -> None:
    text = r.render(make_state([], {}))
    assert text == FILTER_HEAD + FORWARD + NAT_HEAD + POSTROUTING + NODEPORTS_LAST


# ns1/svc1:p80 with three endpoints (one on this node); ns2/svc2 an unnamed UDP port with
# ClientIP affinity (60 s); ns3/svc3 internalTrafficPolicy Local without a local endpoint.
S1 = svc("ns1", "svc1")
S2 = svc("ns2", "svc2", "", protocol="UDP", cluster_ip="172.30.0.42", port=53, affinity_timeout=60)
S3 = svc("ns3", "svc3", cluster_ip="172.30.0.43", internal_local=True)
E1 = (ep("10.180.0.1", node=NODE), ep("10.180.0.2"), ep("10.180.0.3"))
E2 = (ep("10.180.0.1", 5353, node=NODE), ep("10.180.0.2", 5353))
E3 = (ep("10.180.0.2"),)
SMALL = make_state([S1, S2, S3], {S1.key: E1, S2.key: E2, S3.key: E3})

SMALL_GOLDEN = (
    FILTER_HEAD
    + golden("""
    -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j DROP
    """)  # noqa: E501
    + FORWARD
    + NAT_HEAD
    + golden("""
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
    :KUBE-SEP-LXVODXWDISEETFEF - [0:0]
    :KUBE-SEP-ICDUIKC33SFI6ZPR - [0:0]
    :KUBE-SVC-GUEUWVKGZ4WHNBUY - [0:0]
    :KUBE-SEP-7AHAJIPELAZFW6IW - [0:0]
    :KUBE-SEP-5NH4FVRI7SNX22RY - [0:0]
    """)
    + POSTROUTING
    + golden("""
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LXVODXWDISEETFEF
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j KUBE-SEP-ICDUIKC33SFI6ZPR
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
    -A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
    -A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
    -A KUBE-SEP-ICDUIKC33SFI6ZPR -m comment --comment ns1/svc1:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-ICDUIKC33SFI6ZPR -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    -A KUBE-SERVICES -m comment --comment "ns2/svc2 cluster IP" -m udp -p udp -d 172.30.0.42 --dport 53 -j KUBE-SVC-GUEUWVKGZ4WHNBUY
    -A KUBE-SVC-GUEUWVKGZ4WHNBUY -m comment --comment "ns2/svc2 cluster IP" -m udp -p udp -d 172.30.0.42 --dport 53 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-GUEUWVKGZ4WHNBUY -m comment --comment "ns2/svc2 -> 10.180.0.1:5353" -m recent --name KUBE-SEP-7AHAJIPELAZFW6IW --rcheck --seconds 60 --reap -j KUBE-SEP-7AHAJIPELAZFW6IW
    -A KUBE-SVC-GUEUWVKGZ4WHNBUY -m comment --comment "ns2/svc2 -> 10.180.0.2:5353" -m recent --name KUBE-SEP-5NH4FVRI7SNX22RY --rcheck --seconds 60 --reap -j KUBE-SEP-5NH4FVRI7SNX22RY
    -A KUBE-SVC-GUEUWVKGZ4WHNBUY -m comment --comment "ns2/svc2 -> 10.180.0.1:5353" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-7AHAJIPELAZFW6IW
    -A KUBE-SVC-GUEUWVKGZ4WHNBUY -m comment --comment "ns2/svc2 -> 10.180.0.2:5353" -j KUBE-SEP-5NH4FVRI7SNX22RY
    -A KUBE-SEP-7AHAJIPELAZFW6IW -m comment --comment ns2/svc2 -s 10.180.0.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-7AHAJIPELAZFW6IW -m comment --comment ns2/svc2 -m recent --name KUBE-SEP-7AHAJIPELAZFW6IW --set -m udp -p udp -j DNAT --to-destination 10.180.0.1:5353
    -A KUBE-SEP-5NH4FVRI7SNX22RY -m comment --comment ns2/svc2 -s 10.180.0.2 -j KUBE-MARK-MASQ
    -A KUBE-SEP-5NH4FVRI7SNX22RY -m comment --comment ns2/svc2 -m recent --name KUBE-SEP-5NH4FVRI7SNX22RY --set -m udp -p udp -j DNAT --to-destination 10.180.0.2:5353
    """)  # noqa: E501
    + NODEPORTS_LAST
)


def test_golden_cluster_ip_affinity_and_internal_local() -> None:
    assert r.render(SMALL) == SMALL_GOLDEN


def test_no_endpoints_rejects_in_filter_and_writes_no_nat_chain() -> None:
    sp = svc(
        "ns6", "svc6", cluster_ip="172.30.0.46", node_port=30080, external_ips=("192.168.99.11",)
    )
    text = r.render(make_state([sp], {}))
    assert text == (
        FILTER_HEAD
        + golden("""
        -A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
        -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j REJECT
        -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT
        """)  # noqa: E501
        + FORWARD
        + NAT_HEAD
        + POSTROUTING
        + NODEPORTS_LAST
    )


def test_unready_endpoints_fall_back_to_serving_terminating() -> None:
    sp = svc("ns1", "svc1")
    eps = (
        ep("10.180.0.1", ready=False, serving=True, terminating=True),
        ep("10.180.0.2", ready=False, serving=False),
    )
    text = r.render(make_state([sp], {sp.key: eps}))
    assert "--to-destination 10.180.0.1:80" in text
    assert "10.180.0.2" not in text
    none_serving = r.render(make_state([sp], {sp.key: eps[1:]}))
    assert "has no endpoints" in none_serving


# The scenario of upstream's TestOverallIPTablesRules. Its expected ruleset (sorted) equals
# this one apart from three documented differences: MASQUERADE --random-fully (what
# upstream adds when iptables supports it), `! -d 127.0.0.0/8` (localhost NodePorts off)
# and no nfacct / KUBE-FIREWALL / localhost NodePort rules.
def upstream_overall_state() -> ProxyState:
    ports = [
        svc("ns1", "svc1"),
        svc(
            "ns2", "svc2", cluster_ip="172.30.0.42", node_port=3001,
            external_ips=("192.168.99.22",), load_balancer_ips=("1.2.3.4",),
            external_local=True, health_check_node_port=30000,
        ),
        svc("ns3", "svc3", cluster_ip="172.30.0.43", node_port=3003),
        svc("ns4", "svc4", cluster_ip="172.30.0.44", external_ips=("192.168.99.33",)),
        svc(
            "ns5", "svc5", cluster_ip="172.30.0.45", node_port=3002,
            load_balancer_ips=("5.6.7.8",), load_balancer_source_ranges=(" 203.0.113.0/25",),
            affinity_timeout=10800, health_check_node_port=30000,
        ),
        svc("ns6", "svc6", cluster_ip="172.30.0.46"),
    ]  # fmt: skip
    eps = {
        "ns1/svc1:p80": (ep("10.180.0.1"),),
        "ns2/svc2:p80": (ep("10.180.0.2"),),
        "ns3/svc3:p80": (ep("10.180.0.3"),),
        "ns4/svc4:p80": (ep("10.180.0.4"), ep("10.180.0.5", node=NODE)),
        "ns5/svc5:p80": (ep("10.180.0.3"),),
    }
    return make_state(ports, eps)


UPSTREAM_OVERALL_NAT = golden("""
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
    :KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
    :KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
    :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
    :KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
    :KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
    :KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
    :KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
    :KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
    :KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
    :KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
    :KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
    -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
    -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
    -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
    -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
    -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
    -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
    -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
    -A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
    -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
    -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
    -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
    -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
    -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
    -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
    -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
    -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
    -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
    -A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
    -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
    -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    """)  # noqa: E501

UPSTREAM_OVERALL_FILTER = golden("""
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
    -A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
    -A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
    -A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
    """)  # noqa: E501


def test_golden_upstream_overall_scenario() -> None:
    expected = (
        FILTER_HEAD
        + UPSTREAM_OVERALL_FILTER
        + FORWARD
        + NAT_HEAD
        + UPSTREAM_OVERALL_NAT
        + NODEPORTS_LAST
    )
    assert r.render(upstream_overall_state()) == expected


def test_large_cluster_drops_per_endpoint_comments() -> None:
    ports = [svc("ns", f"s{i}", cluster_ip=f"172.30.{i // 250}.{i % 250 + 1}") for i in range(201)]
    eps = {p.key: tuple(ep(f"10.180.{i // 250}.{i % 250 + 1}") for i in range(5)) for p in ports}
    text = r.render(make_state(ports, eps))  # 1005 endpoints > 1000
    sep_lines = [line for line in text.splitlines() if line.startswith("-A KUBE-SEP-")]
    assert sep_lines and not any("--comment" in line for line in sep_lines)
    assert '--comment "ns/s0:p80 cluster IP"' in text  # top-level comments stay


# -- partial sync ------------------------------------------------------------------------
def declared(text: str) -> set[str]:
    return {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}


def test_partial_sync_writes_only_changed_services_chains() -> None:
    text = r.render(SMALL, {"ns2/svc2"})
    s1, s2 = r.chain_names(S1), r.chain_names(S2)
    assert s2.svc in declared(text)
    assert s1.svc not in declared(text)
    assert not any(line.startswith(f"-A {s1.svc} ") for line in text.splitlines())
    # KUBE-SERVICES (and the filter table) are always rewritten whole
    assert '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP"' in text
    assert "ns3/svc3:p80 has no local endpoints" in text
    assert {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"} <= declared(
        text
    )


def test_partial_sync_with_nothing_changed_writes_only_top_level_chains() -> None:
    text = r.render(SMALL, set())
    nat = text.split("*nat\n", 1)[1]
    assert declared(nat) == {
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    }


def test_partial_sync_deletes_chains_of_removed_services_and_endpoints() -> None:
    new = make_state([S1, S2], {S1.key: E1[:2], S2.key: E2})
    changed = r.changed_services(SMALL, new)
    assert changed == {"ns1/svc1", "ns3/svc3"}
    rs = r.build(new, changed, existing_chains=r.build(SMALL).active_chains)
    gone = r.endpoint_chain_name(S1, E1[2])
    assert rs.deleted_chains == {gone}
    assert rs.text == (
        FILTER_HEAD
        + FORWARD
        + NAT_HEAD
        + golden("""
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SEP-LXVODXWDISEETFEF - [0:0]
        :KUBE-SEP-ICDUIKC33SFI6ZPR - [0:0]
        """)
        + POSTROUTING
        + golden("""
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j KUBE-SEP-LXVODXWDISEETFEF
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
        -A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 cluster IP" -m udp -p udp -d 172.30.0.42 --dport 53 -j KUBE-SVC-GUEUWVKGZ4WHNBUY
        -X KUBE-SEP-ICDUIKC33SFI6ZPR
        """)  # noqa: E501
        + NODEPORTS_LAST
    )


def test_deleting_a_service_removes_all_its_chains() -> None:
    new = make_state([S2], {S2.key: E2})
    changed = r.changed_services(SMALL, new)
    assert changed == {"ns1/svc1", "ns3/svc3"}
    rs = r.build(new, changed, existing_chains=r.build(SMALL).active_chains)
    s1_chains = {r.chain_names(S1).svc} | {r.endpoint_chain_name(S1, e) for e in E1}
    assert rs.deleted_chains == s1_chains
    for chain in s1_chains:
        assert f":{chain} - [0:0]" in rs.text and f"-X {chain}" in rs.text
    assert "ns1/svc1" not in rs.text.replace("-X ", "")
    # our own chains only: a stranger's chain in the nat table is left alone
    rs = r.build(new, changed, existing_chains={"CNI-FOO", "KUBE-SERVICES"})
    assert rs.deleted_chains == frozenset()


def test_changed_services_none_when_node_inputs_change() -> None:
    assert r.changed_services(SMALL, dataclasses.replace(SMALL, node_ips=("192.168.0.3",))) is None
    assert r.changed_services(SMALL, dataclasses.replace(SMALL, cluster_cidr="10.1.0.0/16")) is None
    assert r.changed_services(SMALL, SMALL) == set()


def test_missing_jump_rules_are_inserted_in_their_tables() -> None:
    text = r.build(make_state([], {}), None, missing_jumps=r.JUMP_RULES).text
    filt, nat = text.split("*nat\n")
    assert '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in nat
    assert (
        '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
        in nat
    )
    assert (
        "-I FORWARD -m conntrack --ctstate NEW -m comment --comment"
        ' "kubernetes service portals" -j KUBE-SERVICES' in filt
    )
    assert "-I PREROUTING" not in filt


# -- reading iptables-save back ----------------------------------------------------------
SAVE = golden("""
    # Generated by iptables-save v1.8.9
    *filter
    :INPUT ACCEPT [0:0]
    :FORWARD ACCEPT [0:0]
    :OUTPUT ACCEPT [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-FORWARD - [0:0]
    -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
    -A FORWARD -j ACCEPT
    -A KUBE-SERVICES -d 172.30.0.46/32 -p tcp -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
    COMMIT
    *nat
    :PREROUTING ACCEPT [0:0]
    :POSTROUTING ACCEPT [0:0]
    :CNI-HOSTPORT - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
    -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
    -A PREROUTING -j CNI-HOSTPORT
    -A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -d 172.30.0.47/32 -p tcp -m comment --comment "ns1/svc10:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -p tcp -m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination 10.180.0.1:80
    COMMIT
    """)  # noqa: E501


def test_present_jumps_and_chains() -> None:
    save = r.parse_save(SAVE)
    assert r.present_jumps(save) == {
        ("filter", "FORWARD", "KUBE-FORWARD"),
        ("nat", "PREROUTING", "KUBE-SERVICES"),
    }
    assert "KUBE-SEP-SXIVWICOYRO3J4NJ" in r.chains_in(save["nat"])


def test_render_cleanup_unlinks_then_deletes_only_our_chains() -> None:
    assert r.render_cleanup(SAVE) == golden("""
        *filter
        :KUBE-FORWARD - [0:0]
        :KUBE-SERVICES - [0:0]
        -D FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
        -X KUBE-FORWARD
        -X KUBE-SERVICES
        COMMIT
        *nat
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
        -X KUBE-SEP-SXIVWICOYRO3J4NJ
        -X KUBE-SERVICES
        -X KUBE-SVC-XPGD46QRK7WJZT7O
        COMMIT
        """)
    assert r.render_cleanup("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") == ""


def test_filter_service_follows_jumps_and_skips_lookalike_names() -> None:
    out = r.filter_service(SAVE, "ns1/svc1")
    assert "KUBE-SEP-SXIVWICOYRO3J4NJ -p tcp" in out
    assert "ns1/svc10" not in out
    assert "ns6/svc6" not in out
    assert out.startswith("*nat\n:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n")
    assert r.filter_service(SAVE, "ns6/svc6").startswith("*filter\n")
    assert r.filter_service(SAVE, "nope/none") == ""


# -- packet tracer -----------------------------------------------------------------------
@dataclass
class Rule:
    chain: str
    target: str = ""
    src: tuple[bool, str] | None = None  # (negated, cidr)
    dst: tuple[bool, str] | None = None
    proto: str = ""
    dport: str = ""
    src_type: str = ""
    dst_type: str = ""
    probabilistic: bool = False
    history: bool = False  # affinity/mark/conntrack checks: never match in a trace
    to: str = ""


@dataclass
class Ruleset:
    tables: dict[str, dict[str, list[Rule]]] = field(default_factory=dict)


def parse_restore(text: str) -> Ruleset:
    rs = Ruleset()
    table: dict[str, list[Rule]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = rs.tables.setdefault(line[1:], {})
        elif line.startswith(":"):
            table[line[1:].split()[0]] = []
        elif line.startswith(("-A ", "-I ")):
            rule = parse_rule(shlex.split(line))
            chain = table.setdefault(rule.chain, [])
            chain.insert(0, rule) if line.startswith("-I ") else chain.append(rule)
    return rs


def parse_rule(argv: list[str]) -> Rule:
    rule = Rule(argv[1])
    i, neg = 2, False
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if a == "!":
            neg = True
            i += 1
            continue
        if a == "-s":
            rule.src = (neg, nxt)
        elif a == "-d":
            rule.dst = (neg, nxt)
        elif a == "-p":
            rule.proto = nxt
        elif a == "--dport":
            rule.dport = nxt
        elif a == "--src-type":
            rule.src_type = nxt
        elif a == "--dst-type":
            rule.dst_type = nxt
        elif a == "--probability":
            rule.probabilistic = True
        elif a in ("--rcheck", "--mark", "--ctstate"):
            rule.history = True
        elif a == "-j":
            rule.target = nxt
        elif a == "--to-destination":
            rule.to = nxt
        neg = False
        i += 1 if a in ("--rcheck", "--reap", "--set", "--random-fully") else 2
    return rule


def _in(addr: str, cidr: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr, strict=False)


@dataclass
class Tracer:
    rs: Ruleset
    local: set[str]
    src: str
    proto: str
    dst: str
    dport: str
    outputs: list[str] = field(default_factory=list)
    masq: bool = False

    def matches(self, rule: Rule) -> bool:
        if rule.history:
            return False
        for spec, addr in ((rule.src, self.src), (rule.dst, self.dst)):
            if spec and _in(addr, spec[1]) == spec[0]:
                return False
        if rule.proto and rule.proto != self.proto:
            return False
        if rule.dport and rule.dport != self.dport:
            return False
        if rule.src_type and (self.src in self.local) != (rule.src_type == "LOCAL"):
            return False
        return not rule.dst_type or (self.dst in self.local) == (rule.dst_type == "LOCAL")

    def run(self, table: str, chain: str) -> bool:
        for rule in self.rs.tables.get(table, {}).get(chain, []):
            if not rule.target or not self.matches(rule):
                continue
            if rule.target == "KUBE-MARK-MASQ":
                self.masq = True
            elif rule.target in ("ACCEPT", "REJECT", "DROP"):
                self.outputs.append(rule.target)
                return True
            elif rule.target == "DNAT":
                self.outputs.append(rule.to)
                return True
            elif rule.target == "RETURN":
                return False
            elif self.run(table, rule.target) and not rule.probabilistic:
                # a --probability jump may not be taken: keep collecting alternatives
                return True
        return False


def trace(text: str, src: str, dst: str, dport: int, proto: str = "tcp") -> tuple[str, bool]:
    """What happens to a new connection: DNAT targets (all the random choices, joined),
    ACCEPT/REJECT/DROP, or "" (untouched), and whether it is masqueraded."""
    t = Tracer(parse_restore(text), {NODE_IP}, src, proto, dst, str(dport))
    t.run("nat", "KUBE-SERVICES")  # = PREROUTING / OUTPUT -> KUBE-SERVICES
    if t.outputs:
        t.dst = t.outputs[0].split(":")[0]
    for chain in (
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ):
        t.run("filter", chain)
    return ", ".join(t.outputs), t.masq


POD = "10.0.0.2"
OUTSIDE = "203.0.113.2"
OUTSIDE_BLOCKED = "203.0.113.130"
SVC4_BOTH = "10.180.0.4:80, 10.180.0.5:80"
EXT_IP = "192.168.99.22"  # ns2/svc2 (externalTrafficPolicy Local, no local endpoint)


@pytest.mark.parametrize(
    ("src", "dst", "dport", "proto", "output", "masq"),
    [
        pytest.param(POD, "172.30.0.41", 80, "tcp", "10.180.0.1:80", False, id="cluster-ip"),
        pytest.param(POD, "172.30.0.41", 81, "tcp", "", False, id="other-port-untouched"),
        pytest.param(POD, "172.30.0.41", 80, "udp", "", False, id="other-proto-untouched"),
        pytest.param(POD, "10.0.0.3", 80, "tcp", "", False, id="pod-ip-untouched"),
        pytest.param(POD, "172.30.0.44", 80, "tcp", SVC4_BOTH, False, id="spread"),
        pytest.param("10.180.0.1", "172.30.0.41", 80, "tcp", "10.180.0.1:80", True, id="hairpin"),
        pytest.param(NODE_IP, "172.30.0.41", 80, "tcp", "10.180.0.1:80", True, id="from-node"),
        pytest.param(OUTSIDE, "172.30.0.41", 80, "tcp", "10.180.0.1:80", True, id="off-cluster"),
        pytest.param(POD, "172.30.0.46", 80, "tcp", "REJECT", False, id="no-endpoints"),
        pytest.param(OUTSIDE, NODE_IP, 3003, "tcp", "10.180.0.3:80", True, id="nodeport-cluster"),
        pytest.param(OUTSIDE, NODE_IP, 3001, "tcp", "DROP", False, id="nodeport-local-none"),
        pytest.param(OUTSIDE, EXT_IP, 80, "tcp", "DROP", False, id="extip-local-none"),
        pytest.param(POD, EXT_IP, 80, "tcp", "10.180.0.2:80", False, id="extip-from-pod"),
        pytest.param(NODE_IP, EXT_IP, 80, "tcp", "10.180.0.2:80", True, id="extip-from-node"),
        pytest.param(OUTSIDE, "192.168.99.33", 80, "tcp", SVC4_BOTH, True, id="extip"),
        pytest.param(OUTSIDE, "5.6.7.8", 80, "tcp", "10.180.0.3:80", True, id="lb-allowed-range"),
        pytest.param(OUTSIDE_BLOCKED, "5.6.7.8", 80, "tcp", "DROP", False, id="lb-outside-range"),
        pytest.param(NODE_IP, NODE_IP, 30000, "tcp", "ACCEPT", False, id="health-check-port"),
    ],
)  # fmt: skip
def test_packet_flows_upstream_scenario(
    src: str, dst: str, dport: int, proto: str, output: str, masq: bool
) -> None:
    assert trace(r.render(upstream_overall_state()), src, dst, dport, proto) == (output, masq)


def test_packet_flows_internal_traffic_policy_local() -> None:
    local = svc("ns", "itp", cluster_ip="172.30.0.50", internal_local=True)
    eps = (ep("10.180.0.1", node=NODE), ep("10.180.0.2"))
    text = r.render(make_state([local], {local.key: eps}))
    assert trace(text, POD, "172.30.0.50", 80) == ("10.180.0.1:80", False)
    assert r.chain_names(local).svl in text and r.chain_names(local).svc not in text
    no_local = r.render(make_state([local], {local.key: eps[1:]}))
    assert trace(no_local, POD, "172.30.0.50", 80) == ("DROP", False)


def test_packet_flows_external_traffic_policy_local_keeps_source() -> None:
    sp = svc("ns", "etp", cluster_ip="172.30.0.51", node_port=30051, external_local=True)
    eps = (ep("10.180.0.1", node=NODE), ep("10.180.0.2"))
    text = r.render(make_state([sp], {sp.key: eps}))
    assert trace(text, OUTSIDE, NODE_IP, 30051) == ("10.180.0.1:80", False)
    # pods and the node itself are short-circuited to the cluster-wide chain
    assert trace(text, POD, NODE_IP, 30051) == ("10.180.0.1:80, 10.180.0.2:80", False)
    assert trace(text, NODE_IP, NODE_IP, 30051) == ("10.180.0.1:80, 10.180.0.2:80", True)
    # ClusterIP traffic still uses every endpoint
    assert trace(text, POD, "172.30.0.51", 80) == ("10.180.0.1:80, 10.180.0.2:80", False)


def test_packet_flows_affinity_picks_remembered_endpoint_first() -> None:
    # the tracer treats `--rcheck` as a miss (fresh client): both endpoints reachable
    assert trace(r.render(SMALL), POD, "172.30.0.42", 53, "udp") == (
        "10.180.0.1:5353, 10.180.0.2:5353",
        False,
    )


def test_sctp_uses_its_match_module() -> None:
    sp = svc("ns", "sctp", protocol="SCTP")
    text = r.render(make_state([sp], {sp.key: (ep("10.180.0.1"),)}))
    assert "-m sctp -p sctp -d 172.30.0.41 --dport 80" in text


# -- backend: full vs partial decisions, with a fake command runner -----------------------
class FakeIptables:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.inputs: list[str] = []
        self.fail_restore = False
        self.check_ok = True

    async def run(self, *argv: str, input: str | None = None, check: bool = True) -> str:
        self.calls.append(list(argv))
        binary = next(a for a in argv if a.startswith("iptables"))
        if binary.endswith("-save"):
            return "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
        if binary.endswith("-restore"):
            self.inputs.append(input or "")
            if self.fail_restore:
                raise CommandError("iptables-restore: line 3 failed")
        if "-C" in argv and not self.check_ok:
            raise CommandError("iptables: Bad rule")
        return ""


def test_backend_full_then_partial_then_full_after_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeIptables()
    monkeypatch.setattr(b.nsutil, "run", fake.run)
    ipt = b.IptablesBackend("node-a")

    asyncio.run(ipt.sync(SMALL))
    assert ipt.last_sync_full
    assert fake.calls[-1][:4] == [
        "nsenter",
        "--net=/run/netns/node-a",
        "--",
        "iptables-legacy-restore",
    ]
    assert "-I PREROUTING" in fake.inputs[-1]  # jump rules were missing in the fake kernel

    new = make_state([S1, S2], {S1.key: E1[:2], S2.key: E2})
    asyncio.run(ipt.sync(new))
    assert not ipt.last_sync_full and ipt.last_changed == {"ns1/svc1", "ns3/svc3"}
    assert "-I PREROUTING" not in fake.inputs[-1]

    fake.fail_restore = True
    with pytest.raises(Exception, match="line 3"):
        asyncio.run(ipt.sync(SMALL))
    fake.fail_restore = False
    asyncio.run(ipt.sync(SMALL))
    assert ipt.last_sync_full

    asyncio.run(ipt.sync(SMALL))
    assert not ipt.last_sync_full and ipt.last_changed == frozenset()
    fake.check_ok = False
    assert not asyncio.run(ipt.check())
    asyncio.run(ipt.sync(SMALL))
    assert ipt.last_sync_full


def test_backend_variant_picks_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeIptables()
    monkeypatch.setattr(b.nsutil, "run", fake.run)
    asyncio.run(b.IptablesBackend(None, "nft").sync(SMALL))
    assert {c[0] for c in fake.calls} == {"iptables-nft-save", "iptables-nft-restore"}
    assert asyncio.run(b.IptablesBackend(None).check())
    assert fake.calls[-1][:2] == ["iptables-legacy", "-w"]
    with pytest.raises(ValueError):
        b.IptablesBackend(None, "ipvs")
