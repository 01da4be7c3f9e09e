"""The ARP side of layer-2 mode: answer who-has for the IPs this node announces, and tell
the network when it takes one over.

As MetalLB's internal/layer2 does, from a raw AF_PACKET socket on the node's eth0 (in the
node's network namespace), not through the kernel: a proxy-ARP neighbour entry (`ip neigh
add proxy IP dev eth0`) is never answered while the route to the IP leaves through that
same eth0 (the node network is connected there), and once a /32 route elsewhere makes it
answer, every reply is delayed by a random part of `proxy_delay` (0.8 s by default) and the
route catches the IP's packets that no Service rule rewrote. docs/speaker.md has the
measurements.

What a frame can make the responder do is bounded: at most READ_BATCH frames are read per
wake-up, and at most REPLY_RATE replies are sent per second whatever arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from kubesvc import netns
from kubesvc.speaker import arp

log = logging.getLogger("kubesvc.speaker")

PACKET_OUTGOING = 4
READ_BATCH = 64
REPLY_RATE = 1000.0  # replies per second, burst as much
# MetalLB repeats its gratuitous ARP every 1.1 s for 5 s: a receiver ignores a second
# update of a neighbour entry within `locktime` (1 s), and a lost frame is made good
GARP_TIMES = (0.0, 1.1, 2.2, 3.3, 4.4)


class Announcer:
    def __init__(self, netns_name: str, ifname: str = "eth0") -> None:
        self.netns = netns_name
        self.ifname = ifname
        self.ips: set[str] = set()
        self.mac = b""
        self.sock: socket.socket | None = None
        self._tokens = REPLY_RATE
        self._refilled = time.monotonic()
        self._bursts: dict[str, asyncio.Task[None]] = {}
        self.replies = 0  # sent, for tests and logs
        self.dropped = 0  # requests for our IPs left unanswered by the rate bound

    def open(self) -> None:
        sock = netns.socket_in_netns(
            self.netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP)
        )
        try:
            sock.bind((self.ifname, arp.ETH_P_ARP))
            self.mac = sock.getsockname()[4]
            sock.setblocking(False)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        for task in self._bursts.values():
            task.cancel()
        self._bursts.clear()
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def set_ips(self, ips: set[str]) -> set[str]:
        """Answer for `ips` from now on; returns the ones that are new (to announce)."""
        added = ips - self.ips
        self.ips = set(ips)
        for ip in [ip for ip in self._bursts if ip not in ips]:
            self._bursts.pop(ip).cancel()
        return added

    def announce(self, ips: set[str]) -> None:
        """Send gratuitous ARP for `ips` (now and a few times more), as on a takeover."""
        for ip in ips:
            old = self._bursts.pop(ip, None)
            if old is not None:
                old.cancel()
            self._bursts[ip] = asyncio.get_running_loop().create_task(self._burst(ip))

    async def _burst(self, ip: str) -> None:
        start = time.monotonic()
        try:
            for at in GARP_TIMES:
                await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                if ip not in self.ips:
                    return
                for frame in arp.gratuitous(self.mac, ip):
                    self._send(frame)
        finally:
            if self._bursts.get(ip) is asyncio.current_task():
                del self._bursts[ip]

    def _send(self, frame: bytes) -> None:
        if self.sock is None:
            return
        try:
            self.sock.send(frame.ljust(60, b"\0"))  # Ethernet's minimum frame
        except OSError as e:  # the link is down, the buffer is full: the next one will do
            log.debug("ARP frame not sent", extra={"kv": {"error": str(e)}})

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(arp.MAX_FRAME + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("reading ARP failed", extra={"kv": {"error": str(e)}})
                return
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            self.handle(data)

    def handle(self, data: bytes) -> None:
        pkt = arp.parse(data)
        if pkt is None or pkt.target_ip not in self.ips or not arp.wants_answer(pkt, self.mac):
            return
        now = time.monotonic()
        self._tokens = min(REPLY_RATE, self._tokens + (now - self._refilled) * REPLY_RATE)
        self._refilled = now
        if self._tokens < 1:
            self.dropped += 1
            return
        self._tokens -= 1
        self.replies += 1
        self._send(arp.reply_to(pkt, self.mac))
