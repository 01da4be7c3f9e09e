"""Sending and receiving speaker heartbeats on the node network (heartbeat.py is the
format and the membership).

A thread of its own does it, not the agent's event loop: a loop busy starting pods for a
second must not make the other speakers think this node is gone. It tells the loop when the
set of live speakers changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kubesvc import netns
from kubesvc.speaker import heartbeat as hb

log = logging.getLogger("kubesvc.speaker")

OnChange = Callable[[frozenset[str]], None]


def load_key(path: Path) -> bytes:
    """The cluster's speaker key (0600), made by the first speaker that needs it: written to
    a temporary file and linked into place, so two speakers starting at once agree."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes()
        if len(key) >= 16:
            return key
        raise ValueError(f"{path}: too short for a key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(32):08x}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(hb.KEY_BYTES))
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


class Beacon:
    def __init__(
        self, netns_name: str, node: str, key: bytes, broadcast: str, on_change: OnChange
    ) -> None:
        self.netns = netns_name
        self.node = node
        self.key = key
        self.broadcast = broadcast
        self.on_change = on_change
        self.membership = hb.Membership(node)
        self.incarnation = random.getrandbits(64)
        self.seq = 0
        self.started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alive: frozenset[str] = frozenset([node])
        self.refused = 0  # packets that were not valid heartbeats

    def start(self) -> None:
        sock = netns.socket_in_netns(self.netns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind(("", hb.PORT))
        except BaseException:
            sock.close()
            raise
        self._loop = asyncio.get_running_loop()
        self.started = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="speaker-heartbeats", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def alive(self) -> frozenset[str]:
        with self._lock:
            return self._alive

    def _run(self, sock: socket.socket) -> None:
        next_send = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    self._send(sock)
                    next_send = now + hb.INTERVAL
                sock.settimeout(max(0.001, min(next_send - now, hb.INTERVAL)))
                try:
                    data = sock.recv(hb.MAX_PACKET + 1)
                except TimeoutError:
                    data = b""
                except OSError as e:
                    log.debug("heartbeat receive failed", extra={"kv": {"error": str(e)}})
                    data = b""
                now = time.monotonic()
                if data:
                    beat = hb.decode(data, self.key, int(time.time() * 1000))
                    with self._lock:
                        if beat is None:
                            self.refused += 1
                        elif beat.node != self.node:
                            self.membership.observe(beat, now)
                self._check(now)
        except Exception:
            log.exception("the heartbeat thread failed; this speaker stops announcing")
            with self._lock:
                self._alive = frozenset()
            self._notify(frozenset())
        finally:
            sock.close()

    def _send(self, sock: socket.socket) -> None:
        beat = hb.Heartbeat(self.node, self.incarnation, self.seq, int(time.time() * 1000))
        self.seq += 1
        try:
            sock.sendto(hb.encode(beat, self.key), (self.broadcast, hb.PORT))
        except OSError as e:  # cut off from the network: peers will notice
            log.debug("heartbeat not sent", extra={"kv": {"error": str(e)}})

    def _check(self, now: float) -> None:
        with self._lock:
            alive = self.membership.alive(now)
            if alive == self._alive:
                return
            self._alive = alive
        self._notify(alive)

    def _notify(self, alive: frozenset[str]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.on_change, alive)
