# ruff: noqa: E501  (zone-file text lines are long)
"""Answers on the wire: {qname, qtype -> rcode, answer, authority, additional} tables with
records as zone-file text, plus case, EDNS, truncation, malformed input and a fuzz test.

IP plan: Service IPs 10.96.0.0/16, pod IPs 10.244.0.0/16."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from kubesvc.dns.answers import FORWARD, AnswerTable
from kubesvc.dns.records import Endpoint, Port, Service, Zone, build_view, service_records

ZONE = Zone("cluster.local.", 5, 1)
SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
REV_SOA = "in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 1 7200 1800 86400 5"
HTTP, HTTP_EP = Port("http", "TCP", 80), Port("http", "TCP", 8080)
SERVICES = [
    Service("default", "my-svc", ("10.96.0.11",), ports=(HTTP,)),
    Service("default", "hl", headless=True, ports=(HTTP,)),
    Service("default", "empty", headless=True, ports=(HTTP,)),
    Service("default", "ext", external_name="my-svc.default.svc.cluster.local."),
    Service("default", "ext2", external_name="example.com."),
    Service("default", "big", headless=True),
]
ENDPOINTS = {
    "default/hl": [
        Endpoint("10.244.1.5", "web-0", (HTTP_EP,)),
        Endpoint("10.244.1.6", "", (HTTP_EP,)),
    ],
    "default/big": [Endpoint(f"10.244.3.{i}") for i in range(1, 101)],
}


def make_table(*, forward: bool = False, synced: bool = True) -> AnswerTable:
    table = AnswerTable(ZONE, forward=forward)
    table.rebuild(build_view(SERVICES, ENDPOINTS, ["default"], ZONE))
    table.synced = synced
    return table


@pytest.fixture(scope="module")
def table() -> AnswerTable:
    return make_table()


def query(name: str, qtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(name, qtype, **kw).to_wire()  # type: ignore[arg-type]


def ask(table: AnswerTable, wire: bytes, *, udp: bool = True) -> dns.message.Message:
    reply = table.answer(wire, udp=udp)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def lines(section: list[dns.rrset.RRset]) -> list[str]:
    return sorted(line for rrset in section for line in rrset.to_text().splitlines())


def zone_text(text: str) -> list[str]:
    return sorted(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())


def norm(lines_: list[str]) -> list[str]:
    return sorted(" ".join(line.split()) for line in lines_)


CASES = [
    # qname, qtype, rcode, answer, authority, additional
    ("my-svc.default.svc.cluster.local", "A", "NOERROR",
     "my-svc.default.svc.cluster.local. 5 IN A 10.96.0.11", "", ""),
    ("my-svc.default.svc.cluster.local", "AAAA", "NOERROR", "", SOA, ""),
    ("my-svc.default.svc.cluster.local", "MX", "NOERROR", "", SOA, ""),
    ("_http._tcp.my-svc.default.svc.cluster.local", "SRV", "NOERROR",
     "_http._tcp.my-svc.default.svc.cluster.local. 5 IN SRV 0 100 80 my-svc.default.svc.cluster.local.",
     "", "my-svc.default.svc.cluster.local. 5 IN A 10.96.0.11"),
    ("_http._udp.my-svc.default.svc.cluster.local", "SRV", "NXDOMAIN", "", SOA, ""),
    ("_tcp.my-svc.default.svc.cluster.local", "SRV", "NXDOMAIN", "", SOA, ""),
    ("hl.default.svc.cluster.local", "A", "NOERROR", """
     hl.default.svc.cluster.local. 5 IN A 10.244.1.5
     hl.default.svc.cluster.local. 5 IN A 10.244.1.6""", "", ""),
    ("_http._tcp.hl.default.svc.cluster.local", "SRV", "NOERROR", """
     _http._tcp.hl.default.svc.cluster.local. 5 IN SRV 0 50 8080 web-0.hl.default.svc.cluster.local.
     _http._tcp.hl.default.svc.cluster.local. 5 IN SRV 0 50 8080 10-244-1-6.hl.default.svc.cluster.local.
     """, "", """
     web-0.hl.default.svc.cluster.local. 5 IN A 10.244.1.5
     10-244-1-6.hl.default.svc.cluster.local. 5 IN A 10.244.1.6"""),
    ("web-0.hl.default.svc.cluster.local", "A", "NOERROR",
     "web-0.hl.default.svc.cluster.local. 5 IN A 10.244.1.5", "", ""),
    ("10-244-1-6.hl.default.svc.cluster.local", "A", "NOERROR",
     "10-244-1-6.hl.default.svc.cluster.local. 5 IN A 10.244.1.6", "", ""),
    ("empty.default.svc.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("ext.default.svc.cluster.local", "A", "NOERROR", """
     ext.default.svc.cluster.local. 5 IN CNAME my-svc.default.svc.cluster.local.
     my-svc.default.svc.cluster.local. 5 IN A 10.96.0.11""", "", ""),
    ("ext.default.svc.cluster.local", "CNAME", "NOERROR",
     "ext.default.svc.cluster.local. 5 IN CNAME my-svc.default.svc.cluster.local.", "", ""),
    ("ext2.default.svc.cluster.local", "A", "NOERROR",
     "ext2.default.svc.cluster.local. 5 IN CNAME example.com.", "", ""),
    ("ext2.default.svc.cluster.local", "TXT", "NOERROR",
     "ext2.default.svc.cluster.local. 5 IN CNAME example.com.", "", ""),
    ("11.0.96.10.in-addr.arpa", "PTR", "NOERROR",
     "11.0.96.10.in-addr.arpa. 5 IN PTR my-svc.default.svc.cluster.local.", "", ""),
    ("5.1.244.10.in-addr.arpa", "PTR", "NOERROR",
     "5.1.244.10.in-addr.arpa. 5 IN PTR web-0.hl.default.svc.cluster.local.", "", ""),
    ("9.9.9.10.in-addr.arpa", "PTR", "NXDOMAIN", "", REV_SOA, ""),
    ("11.0.96.10.in-addr.arpa", "A", "NOERROR", "", REV_SOA, ""),
    ("dns-version.cluster.local", "TXT", "NOERROR",
     'dns-version.cluster.local. 5 IN TXT "1.1.0"', "", ""),
    ("cluster.local", "SOA", "NOERROR", SOA, "", ""),
    ("cluster.local", "NS", "NOERROR", "cluster.local. 5 IN NS ns.dns.cluster.local.", "", ""),
    ("cluster.local", "A", "NOERROR", "", SOA, ""),
    ("svc.cluster.local", "A", "NOERROR", "", SOA, ""),
    ("default.svc.cluster.local", "A", "NOERROR", "", SOA, ""),
    ("missing.svc.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("nope.default.svc.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("nope.missing.svc.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("my-svc.default.svc.cluster.local.default.svc.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("my-svc.default.svc.cluster.local.svc.cluster.local", "AAAA", "NXDOMAIN", "", SOA, ""),
    ("my-svc.default.svc.cluster.local.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("10-244-1-9.default.pod.cluster.local", "A", "NOERROR",
     "10-244-1-9.default.pod.cluster.local. 5 IN A 10.244.1.9", "", ""),
    ("10-244-1-9.default.pod.cluster.local", "AAAA", "NOERROR", "", SOA, ""),
    ("fd00--1.default.pod.cluster.local", "AAAA", "NOERROR",
     "fd00--1.default.pod.cluster.local. 5 IN AAAA fd00::1", "", ""),
    ("10-244-1-9.missing.pod.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("not-an-ip.default.pod.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("x.10-244-1-9.default.pod.cluster.local", "A", "NXDOMAIN", "", SOA, ""),
    ("default.pod.cluster.local", "A", "NOERROR", "", SOA, ""),
    ("example.com", "A", "REFUSED", "", "", ""),
    ("xcluster.local", "A", "REFUSED", "", "", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "answer", "authority", "additional"),
    [pytest.param(*c, id=f"{c[0]}/{c[1]}") for c in CASES],
)
def test_answers(
    table: AnswerTable,
    qname: str,
    qtype: str,
    rcode: str,
    answer: str,
    authority: str,
    additional: str,
) -> None:
    for wire in (query(qname, qtype), query(qname, qtype, use_edns=0)):
        msg = ask(table, wire)
        assert dns.rcode.to_text(msg.rcode()) == rcode
        assert norm(lines(msg.answer)) == zone_text(answer)
        assert norm(lines(msg.authority)) == zone_text(authority)
        assert norm(lines(msg.additional)) == zone_text(additional)
        assert bool(msg.flags & dns.flags.AA) == (rcode != "REFUSED")


def test_answer_keeps_the_question_case_id_and_rd(table: AnswerTable) -> None:
    wire = query("My-SVC.Default.SVC.Cluster.Local", "A")
    msg = ask(table, wire)
    assert msg.id == dns.message.from_wire(wire).id
    assert msg.flags & dns.flags.RD
    assert lines(msg.answer) == ["My-SVC.Default.SVC.Cluster.Local. 5 IN A 10.96.0.11"]
    reply = table.answer(wire)
    assert isinstance(reply, bytes)
    assert reply[12 : len(wire)] == wire[12:]  # the question, byte for byte
    norec = dns.message.make_query("my-svc.default.svc.cluster.local", "A")
    norec.flags &= ~dns.flags.RD
    assert not ask(table, norec.to_wire()).flags & dns.flags.RD


def test_edns_is_echoed_with_the_do_bit(table: AnswerTable) -> None:
    plain = ask(table, query("my-svc.default.svc.cluster.local"))
    assert plain.edns == -1
    msg = ask(table, query("my-svc.default.svc.cluster.local", use_edns=0, payload=4096))
    assert msg.edns == 0 and msg.payload == 1232 and not msg.ednsflags & dns.flags.DO
    do = ask(table, query("nope.default.svc.cluster.local", want_dnssec=True))
    assert do.edns == 0 and do.ednsflags & dns.flags.DO
    assert dns.rcode.to_text(do.rcode()) == "NXDOMAIN"
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    msg = ask(table, query("my-svc.default.svc.cluster.local", use_edns=0, options=[cookie]))
    assert msg.edns == 0 and lines(msg.answer)


def test_edns_version_1_gets_badvers(table: AnswerTable) -> None:
    msg = ask(table, query("my-svc.default.svc.cluster.local", use_edns=1))
    assert msg.rcode() == dns.rcode.BADVERS and not msg.answer


def test_big_answers_truncate_over_udp_and_fit_over_tcp(table: AnswerTable) -> None:
    name = "big.default.svc.cluster.local"
    small = ask(table, query(name))
    assert small.flags & dns.flags.TC and not small.answer and small.edns == -1
    small_edns = ask(table, query(name, use_edns=0, payload=1232))
    assert small_edns.flags & dns.flags.TC and small_edns.edns == 0
    large = ask(table, query(name, use_edns=0, payload=4096))
    assert not large.flags & dns.flags.TC and len(large.answer[0]) == 100
    tcp = ask(table, query(name), udp=False)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 100


def test_not_synced_is_servfail_inside_the_zone() -> None:
    table = AnswerTable(ZONE)
    msg = ask(table, query("my-svc.default.svc.cluster.local"))
    assert msg.rcode() == dns.rcode.SERVFAIL
    assert ask(table, query("example.com")).rcode() == dns.rcode.REFUSED


def test_forwarding_only_outside_the_cluster_zone() -> None:
    table = make_table(forward=True)
    assert table.answer(query("example.com")) is FORWARD
    assert table.answer(query("9.9.9.10.in-addr.arpa", "PTR")) is FORWARD
    assert ask(table, query("nope.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN


def test_other_classes_are_refused(table: AnswerTable) -> None:
    wire = dns.message.make_query("my-svc.default.svc.cluster.local", "A", rdclass="CH")
    assert ask(table, wire.to_wire()).rcode() == dns.rcode.REFUSED


def test_any_returns_every_record(table: AnswerTable) -> None:
    msg = ask(table, query("cluster.local", "ANY"))
    assert norm(lines(msg.answer)) == zone_text(
        SOA + "\ncluster.local. 5 IN NS ns.dns.cluster.local."
    )


def test_hand_built_query_and_trailing_garbage(table: AnswerTable) -> None:
    name = b"\x06my-svc\x07default\x03svc\x07cluster\x05local\x00"
    wire = struct.pack(">HHHHHH", 0x1234, 0, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    msg = ask(table, wire)
    assert msg.id == 0x1234 and not msg.flags & dns.flags.RD
    assert lines(msg.answer) == ["my-svc.default.svc.cluster.local. 5 IN A 10.96.0.11"]
    assert ask(table, wire + b"\x00").rcode() == dns.rcode.FORMERR


def test_the_slow_path_answers_like_the_fast_path(table: AnswerTable) -> None:
    """A query carrying an answer section is declined by the fast path and parsed fully."""
    for name, qtype, rcode, *_ in CASES:
        fast = ask(table, query(name, qtype, use_edns=0))
        msg = dns.message.make_query(name, qtype, use_edns=0)
        msg.answer.append(dns.rrset.from_text(name + ".", 5, "IN", "TXT", '"known"'))
        slow = ask(table, msg.to_wire())
        assert (slow.rcode(), slow.flags, slow.answer, slow.authority, slow.additional) == (
            fast.rcode(),
            fast.flags,
            fast.answer,
            fast.authority,
            fast.additional,
        ), name
        assert dns.rcode.to_text(slow.rcode()) == rcode


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x12\x34\x01", None, id="short"),
        pytest.param(struct.pack(">HHHHHH", 1, 0x8000, 1, 0, 0, 0), None, id="a-response"),
        pytest.param(struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0), "FORMERR", id="no-question"),
        pytest.param(struct.pack(">HHHHHH", 1, 0x0100, 0, 0, 0, 0), "FORMERR", id="qdcount-0"),
        pytest.param(
            struct.pack(">HHHHHH", 1, 0x0100, 2, 0, 0, 0) + (b"\x01a\x00\x00\x01\x00\x01" * 2),
            "FORMERR",
            id="two-questions",
        ),
        pytest.param(
            struct.pack(">HHHHHH", 1, 0x2800, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01",
            "NOTIMP",
            id="update",
        ),
        pytest.param(
            struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
            "FORMERR",
            id="pointer-loop",
        ),
    ],
)
def test_malformed(table: AnswerTable, wire: bytes, expected: str | None) -> None:
    reply = table.answer(wire)
    if expected is None:
        assert reply is None
        return
    assert isinstance(reply, bytes)
    assert reply[:2] == wire[:2] and reply[2] & 0x80
    assert dns.rcode.to_text(reply[3] & 0xF) == expected


def test_truncated_queries_never_crash_and_keep_the_id(table: AnswerTable) -> None:
    wire = query("_http._tcp.hl.default.svc.cluster.local", "SRV", use_edns=0)
    for end in range(len(wire)):
        check_reply(wire[:end], table.answer(wire[:end]))
        check_reply(wire[:end], table.answer(wire[:end], udp=False))


def check_reply(wire: bytes, reply: object) -> None:
    if reply is None or reply is FORWARD:
        return
    assert isinstance(reply, bytes)
    assert len(reply) >= 12 and reply[:2] == wire[:2] and reply[2] & 0x80
    dns.message.from_wire(reply)  # what we send always parses


def test_fuzz(table: AnswerTable) -> None:
    rng = random.Random(1234)
    seeds = [
        query(name, qtype, use_edns=edns) for name, qtype, *_ in CASES[::3] for edns in (-1, 0)
    ]
    for _ in range(20000):
        wire = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.5 and wire:
                wire[rng.randrange(len(wire))] = rng.randrange(256)
            elif op < 0.7:
                del wire[rng.randrange(len(wire) + 1) :]
            elif op < 0.85:
                wire += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            else:
                wire = bytearray(rng.randbytes(rng.randint(0, 600)))
        data = bytes(wire)
        check_reply(data, table.answer(data, udp=rng.random() < 0.8))


def test_rebuild_follows_changes_including_cname_targets() -> None:
    view = build_view(SERVICES, ENDPOINTS, ["default"], ZONE)
    table = AnswerTable(ZONE)
    table.rebuild(view)
    table.synced = True
    moved = Service("default", "my-svc", ("10.96.0.99",), ports=(HTTP,))
    changed = view.set_source("svc:default/my-svc", service_records(moved, [], ZONE))
    table.rebuild(view, changed)
    assert lines(ask(table, query("ext.default.svc.cluster.local")).answer) == [
        "ext.default.svc.cluster.local. 5 IN CNAME my-svc.default.svc.cluster.local.",
        "my-svc.default.svc.cluster.local. 5 IN A 10.96.0.99",
    ]
    srv = ask(table, query("_http._tcp.my-svc.default.svc.cluster.local", "SRV"))
    assert lines(srv.additional) == ["my-svc.default.svc.cluster.local. 5 IN A 10.96.0.99"]
    old_ptr = ask(table, query("11.0.96.10.in-addr.arpa", "PTR"))
    assert old_ptr.rcode() == dns.rcode.NXDOMAIN
    table.rebuild(view, view.remove_source("svc:default/my-svc"))
    assert ask(table, query("my-svc.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    ext = ask(table, query("ext.default.svc.cluster.local"))
    assert lines(ext.answer) == [
        "ext.default.svc.cluster.local. 5 IN CNAME my-svc.default.svc.cluster.local."
    ]


def test_counters(table: AnswerTable) -> None:
    before = dict(table.stats.requests), dict(table.stats.responses)
    ask(table, query("nope.default.svc.cluster.local", "AAAA"))
    assert table.stats.requests[28] == before[0].get(28, 0) + 1
    assert table.stats.responses[3] == before[1].get(3, 0) + 1
