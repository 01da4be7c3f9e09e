"""What the speaker reads off the node network: heartbeats (kubesvc/speaker/heartbeat.py)
and ARP frames (arp.py), well-formed and hostile, and the membership heartbeats feed."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.speaker import arp
from kubesvc.speaker import heartbeat as hb
from kubesvc.speaker.announcer import REPLY_RATE, Announcer
from kubesvc.speaker.heartbeat import Heartbeat, Membership

KEY = b"k" * 32
NOW = 1_800_000_000_000


def beat(node: str = "n2", inc: int = 7, seq: int = 1, at: int = NOW) -> Heartbeat:
    return Heartbeat(node, inc, seq, at)


def test_heartbeat_round_trip() -> None:
    b = beat("kubesvc-node-1.example", 2**64 - 1, 2**63, NOW)
    data = hb.encode(b, KEY)
    assert len(data) == 62 + len(b.node)
    assert hb.decode(data, KEY, NOW + 100) == b


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d[:-1], id="short"),
        pytest.param(lambda d: d + b"x", id="long"),
        pytest.param(lambda d: b"XXXX" + d[4:], id="magic"),
        pytest.param(lambda d: d[:4] + b"\x02" + d[5:], id="version"),
        pytest.param(lambda d: d[:5] + bytes([d[5] + 1]) + d[6:], id="name-length"),
        pytest.param(lambda d: d[:-1] + bytes([d[-1] ^ 1]), id="hmac"),
        pytest.param(lambda d: d[:7] + bytes([d[7] ^ 1]) + d[8:], id="name-tampered"),
        pytest.param(lambda d: b"", id="empty"),
    ],
)
def test_heartbeat_refused(mutate: object) -> None:
    data = hb.encode(beat(), KEY)
    assert hb.decode(mutate(data), KEY, NOW) is None  # type: ignore[operator]


def test_heartbeat_other_key_and_stale() -> None:
    data = hb.encode(beat(), KEY)
    assert hb.decode(data, b"o" * 32, NOW) is None
    assert hb.decode(data, KEY, NOW + hb.MAX_SKEW_MS + 1) is None
    assert hb.decode(data, KEY, NOW - hb.MAX_SKEW_MS - 1) is None


def test_heartbeat_with_a_name_that_is_not_a_node_name() -> None:
    for name in ("UPPER", "-x", "a b", "a\x00"):
        body = hb.MAGIC + bytes([1, len(name)]) + name.encode() + struct.pack("!QQQ", 1, 1, NOW)
        data = body + hmac.new(KEY, body, hashlib.sha256).digest()
        assert hb.decode(data, KEY, NOW) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_refused_without_error(data: bytes) -> None:
    assert hb.decode(data, KEY, NOW) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=hb.MAX_PACKET), st.integers(0, 400))
def test_a_corrupted_heartbeat_is_refused(noise: bytes, at: int) -> None:
    data = bytearray(hb.encode(beat(), KEY))
    at %= len(data)
    patched = bytes(data[:at]) + noise + bytes(data[at + len(noise) :])
    if patched != bytes(data):
        assert hb.decode(patched, KEY, NOW) is None


def test_membership_alive_and_dead() -> None:
    m = Membership("n1")
    assert m.alive(0.0) == {"n1"}
    assert m.observe(beat("n2", seq=1), 10.0)
    assert m.alive(10.0 + hb.DEAD_AFTER - 0.01) == {"n1", "n2"}
    assert m.alive(10.0 + hb.DEAD_AFTER) == {"n1"}
    assert m.observe(beat("n2", seq=2), 11.0)
    assert m.alive(11.0) == {"n1", "n2"}


def test_membership_refuses_replays_and_itself() -> None:
    m = Membership("n1")
    assert not m.observe(beat("n1"), 1.0)
    assert m.observe(beat("n2", inc=5, seq=10, at=NOW), 1.0)
    assert not m.observe(beat("n2", inc=5, seq=10, at=NOW), 1.1)  # the same one again
    assert not m.observe(beat("n2", inc=5, seq=3, at=NOW), 1.1)  # an older one
    # a restarted speaker (new incarnation) is newer; the old incarnation's are not
    assert m.observe(beat("n2", inc=6, seq=0, at=NOW + 50), 2.0)
    assert not m.observe(beat("n2", inc=5, seq=11, at=NOW + 10), 2.1)
    assert m.observe(beat("n2", inc=6, seq=1, at=NOW + 60), 2.2)


def test_membership_table_is_bounded() -> None:
    m = Membership("n1")
    for i in range(hb.MAX_PEERS + 50):
        m.observe(beat(f"p{i}"), 1.0)
    assert len(m.peers) == hb.MAX_PEERS
    # silent peers are forgotten to make room
    assert m.observe(beat("late"), 1.0 + hb.FORGET_AFTER + 1)
    assert len(m.peers) == 1


# -- ARP ----------------------------------------------------------------------------------------
MAC = bytes.fromhex("020000000001")
ASKER = bytes.fromhex("020000000002")


def request(target: str = "172.31.7.240", dst: bytes = arp.BROADCAST) -> bytes:
    return arp.frame(dst, ASKER, arp.OP_REQUEST, ASKER, "172.31.7.150", b"\0" * 6, target)


def test_reply_to_a_request() -> None:
    pkt = arp.parse(request())
    assert pkt is not None and arp.wants_answer(pkt, MAC)
    reply = arp.parse(arp.reply_to(pkt, MAC))
    assert reply == arp.Arp(ASKER, arp.OP_REPLY, MAC, "172.31.7.240", ASKER, "172.31.7.150")


def test_requests_we_do_not_answer() -> None:
    to_other = arp.parse(request(dst=bytes.fromhex("020000000009")))
    assert to_other is not None and not arp.wants_answer(to_other, MAC)
    ours = arp.parse(arp.frame(arp.BROADCAST, MAC, 1, MAC, "172.31.7.10", b"\0" * 6, "1.2.3.4"))
    assert ours is not None and not arp.wants_answer(ours, MAC)
    reply = arp.parse(arp.reply_to(arp.parse(request()), ASKER))  # type: ignore[arg-type]
    assert reply is not None and not arp.wants_answer(reply, MAC)


def test_gratuitous() -> None:
    frames = [arp.parse(f) for f in arp.gratuitous(MAC, "172.31.7.241")]
    assert [f.op for f in frames if f] == [arp.OP_REQUEST, arp.OP_REPLY]
    for f in frames:
        assert f is not None
        assert f.dst_mac == arp.BROADCAST and f.sender_mac == MAC
        assert f.sender_ip == f.target_ip == "172.31.7.241"


def test_padded_frames_parse() -> None:
    assert arp.parse(request().ljust(60, b"\0")) is not None


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(request()[:41], id="short"),
        pytest.param(request()[:12] + b"\x08\x00" + request()[14:], id="ipv4-ethertype"),
        pytest.param(request()[:14] + b"\x00\x06" + request()[16:], id="ieee802-htype"),
        pytest.param(request()[:20] + b"\x00\x03" + request()[22:], id="rarp-op"),
        pytest.param(request()[:18] + b"\x10\x04" + request()[20:], id="hlen"),
        pytest.param(request() + b"\0" * 2000, id="oversized"),
    ],
)
def test_frames_that_are_not_ethernet_ipv4_arp(frame: bytes) -> None:
    assert arp.parse(frame) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_any_frame_parses_or_is_refused(data: bytes) -> None:
    pkt = arp.parse(data)
    if pkt is not None:
        assert pkt.op in (1, 2) and len(pkt.sender_mac) == 6
        arp.reply_to(pkt, MAC)  # whatever was read, a reply can be built from it


def test_the_responder_answers_only_for_its_ips_and_at_a_bounded_rate() -> None:
    a = Announcer("unused")  # no socket: what it would send is counted, not sent
    a.mac = MAC
    assert a.set_ips({"172.31.7.240"}) == {"172.31.7.240"}
    a.handle(request("172.31.7.241"))
    a.handle(request(dst=bytes.fromhex("020000000009")))
    a.handle(b"\xff" * 10)
    assert a.replies == 0
    for _ in range(int(REPLY_RATE) * 3):
        a.handle(request())
    assert REPLY_RATE <= a.replies < REPLY_RATE * 1.5
    assert a.dropped > 0
    assert a.set_ips(set()) == set()
    before = a.replies
    a.handle(request())
    assert a.replies == before
