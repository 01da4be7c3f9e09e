"""The batched UDP loop on loopback (no root needed): answers go back to each sender,
queries the answer function hands on arrive with their sender's address, oversized
queries are dropped, answers larger than a slot still go out."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from kubesvc.dns.udp import SLOT, BatchUdp, sockaddr


def answer(query: bytes) -> Any:
    if query == b"forward":
        return object()  # anything but bytes/None: handed to `other`
    if query == b"drop":
        return None
    if query == b"big":
        return b"B" * (SLOT + 100)
    return b"re:" + query


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_batch_answers_forwards_and_drops(family: socket.AddressFamily, host: str) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = socket.socket(family, socket.SOCK_DGRAM)
        server.bind((host, 0))
        server.setblocking(False)
        handed: list[tuple[bytes, tuple[str, int]]] = []
        observed: list[int] = []
        udp = BatchUdp(
            server,
            answer,
            lambda q, peer: handed.append((q, peer)),
            lambda _seconds, n: observed.append(n),
        )
        udp.start(loop)
        clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
        try:
            port = server.getsockname()[1]
            for c in clients:
                c.settimeout(2)
                c.bind((host, 0))
            # unanswered ones first, so the answers after them move to earlier send slots
            clients[2].sendto(b"drop", (host, port))
            clients[0].sendto(b"forward", (host, port))
            clients[0].sendto(b"x" * (SLOT + 1), (host, port))
            clients[1].sendto(b"big", (host, port))
            for j in range(30):  # 90 in all: more than one batch
                for i, c in enumerate(clients):
                    c.sendto(b"q%d-%d" % (i, j), (host, port))
            await asyncio.sleep(0.2)
            for i, c in enumerate(clients):
                c.settimeout(0.2)
                got = []
                with pytest.raises(TimeoutError):  # until nothing more comes
                    while True:
                        got.append(c.recvfrom(SLOT * 2)[0])
                want = [b"re:q%d-%d" % (i, j) for j in range(30)]
                if i == 1:
                    want.append(b"B" * (SLOT + 100))  # larger than a slot: sent alone
                # nothing for "drop", "forward" or the oversized query
                assert sorted(got) == sorted(want)
            assert handed == [(b"forward", clients[0].getsockname()[:2])]
            assert udp.dropped == 1  # the oversized query
            assert sum(observed) == 90 + 4  # every datagram read is timed with its batch
        finally:
            udp.stop(loop)
            server.close()
            for c in clients:
                c.close()

    asyncio.run(run())


def test_sockaddr_parses_both_families() -> None:
    v4 = bytes([2, 0, 0x1F, 0x90, 10, 96, 0, 10]) + bytes(20)
    assert sockaddr(v4) == ("10.96.0.10", 8080)
    v6 = bytes([10, 0, 0, 53, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "fd00::1") + bytes(4)
    assert sockaddr(v6) == ("fd00::1", 53)
    assert sockaddr(bytes(28)) is None
