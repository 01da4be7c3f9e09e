"""ARP frames, as MetalLB's layer-2 responder reads and writes them (pure, no sockets).

Only Ethernet/IPv4 ARP is understood; anything else (short, long, other hardware or
protocol types, odd lengths) reads as None.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST = b"\xff" * 6
OP_REQUEST = 1
OP_REPLY = 2
MAX_FRAME = 1518

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen op sha spa tha tpa
FRAME_LEN = _ETH.size + _ARP.size  # 42; padded to 60 on the wire


@dataclass(frozen=True)
class Arp:
    dst_mac: bytes  # Ethernet destination
    op: int
    sender_mac: bytes
    sender_ip: str
    target_mac: bytes
    target_ip: str


def parse(frame: bytes) -> Arp | None:
    if not FRAME_LEN <= len(frame) <= MAX_FRAME:
        return None
    dst, _src, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETH.size)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4 or op not in (1, 2):
        return None
    return Arp(
        dst,
        op,
        sha,
        str(ipaddress.IPv4Address(spa)),
        tha,
        str(ipaddress.IPv4Address(tpa)),
    )


def frame(dst: bytes, src: bytes, op: int, sha: bytes, spa: str, tha: bytes, tpa: str) -> bytes:
    return _ETH.pack(dst, src, ETH_P_ARP) + _ARP.pack(
        1,
        ETH_P_IP,
        6,
        4,
        op,
        sha,
        ipaddress.IPv4Address(spa).packed,
        tha,
        ipaddress.IPv4Address(tpa).packed,
    )


def reply_to(request: Arp, mac: bytes) -> bytes:
    """The answer `mac` gives to `request` (for its target IP), sent to the asker."""
    return frame(
        request.sender_mac,
        mac,
        OP_REPLY,
        mac,
        request.target_ip,
        request.sender_mac,
        request.sender_ip,
    )


def gratuitous(mac: bytes, ip: str) -> list[bytes]:
    """A gratuitous request and reply for `ip` at `mac`, broadcast (as MetalLB sends both:
    some hosts only take one or the other)."""
    return [frame(BROADCAST, mac, op, mac, ip, BROADCAST, ip) for op in (OP_REQUEST, OP_REPLY)]


def wants_answer(pkt: Arp, mac: bytes) -> bool:
    """A request we may answer: sent to everyone or to us (MetalLB drops the rest), and
    not one of our own."""
    return pkt.op == OP_REQUEST and pkt.dst_mac in (BROADCAST, mac) and pkt.sender_mac != mac
