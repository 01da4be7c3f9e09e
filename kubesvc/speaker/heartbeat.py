"""Speaker heartbeats: the wire format and the membership they feed (pure, no sockets).

Every speaker broadcasts a heartbeat on the node network every INTERVAL seconds; a peer not
heard from for DEAD_AFTER seconds is dead. The node Lease (40 s) is far too slow to move an
IP; this is what MetalLB's memberlist does, reduced to what the election needs.

A heartbeat is 62 + len(name) bytes:

    magic "KSHB" | version 1 | name length (1 byte) | node name (ASCII)
    | incarnation (8 bytes) | sequence (8) | sent at, ms since the epoch (8)
    | HMAC-SHA256 of everything before it, with the cluster's speaker key (32)

The incarnation is random per speaker start and the sequence counts up from 0, so a copy of
an old heartbeat replayed on the network is refused: within an incarnation the sequence must
grow, and a new incarnation must be newer than the last one accepted. Heartbeats more than
MAX_SKEW from the receiver's clock are refused too (every node runs on this one machine).
Anything else (short, long, wrong magic, bad name, bad HMAC) is dropped without reply.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

MAGIC = b"KSHB"
VERSION = 1
PORT = 7946  # memberlist's port, which MetalLB's speakers use for the same purpose
INTERVAL = 0.15
DEAD_AFTER = 0.8  # five heartbeats missed
MAX_SKEW_MS = 5000
MAX_NAME = 253
MAX_PACKET = 4 + 1 + 1 + MAX_NAME + 24 + 32
MAX_PEERS = 256  # the node network is a /24
FORGET_AFTER = 60.0  # a peer silent this long is dropped from the table
KEY_BYTES = 32

_TAIL = struct.Struct("!QQQ")
_NAME = re.compile(rb"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


@dataclass(frozen=True)
class Heartbeat:
    node: str
    incarnation: int
    seq: int
    sent_ms: int


def encode(hb: Heartbeat, key: bytes) -> bytes:
    name = hb.node.encode("ascii")
    if not 0 < len(name) <= MAX_NAME:
        raise ValueError("node name too long")
    body = (
        MAGIC + bytes([VERSION, len(name)]) + name + _TAIL.pack(hb.incarnation, hb.seq, hb.sent_ms)
    )
    return body + hmac.new(key, body, hashlib.sha256).digest()


def decode(data: bytes, key: bytes, now_ms: int) -> Heartbeat | None:
    """The heartbeat in `data`, or None when it is not one of ours, is forged or is stale."""
    if not 4 + 2 + 1 + 24 + 32 <= len(data) <= MAX_PACKET or data[:4] != MAGIC:
        return None
    if data[4] != VERSION:
        return None
    n = data[5]
    if len(data) != 6 + n + 24 + 32:
        return None
    body, mac = data[:-32], data[-32:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        return None
    name = data[6 : 6 + n]
    if not _NAME.fullmatch(name):
        return None
    incarnation, seq, sent_ms = _TAIL.unpack_from(data, 6 + n)
    if abs(sent_ms - now_ms) > MAX_SKEW_MS:
        return None
    return Heartbeat(name.decode("ascii"), incarnation, seq, sent_ms)


@dataclass
class _Peer:
    incarnation: int
    seq: int
    sent_ms: int
    seen: float  # receiver's monotonic clock


class Membership:
    """Which speakers are alive, from the heartbeats accepted so far. Times are the
    receiver's monotonic clock, passed in (so tests drive it)."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.peers: dict[str, _Peer] = {}

    def observe(self, hb: Heartbeat, now: float) -> bool:
        """Record `hb`; False when it is refused (a replay, ourselves, a full table)."""
        if hb.node == self.me:
            return False
        peer = self.peers.get(hb.node)
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self.forget(now)
                if len(self.peers) >= MAX_PEERS:
                    return False
        elif hb.incarnation == peer.incarnation:
            if hb.seq <= peer.seq:
                return False
        elif hb.sent_ms <= peer.sent_ms:
            return False  # an older incarnation's heartbeat, replayed
        self.peers[hb.node] = _Peer(hb.incarnation, hb.seq, hb.sent_ms, now)
        return True

    def alive(self, now: float) -> frozenset[str]:
        """This speaker and every peer heard from within DEAD_AFTER."""
        return frozenset(
            [self.me, *(n for n, p in self.peers.items() if now - p.seen < DEAD_AFTER)]
        )

    def forget(self, now: float) -> None:
        for name in [n for n, p in self.peers.items() if now - p.seen > FORGET_AFTER]:
            del self.peers[name]
