"""Running iproute2, nft and friends, inside or outside network namespaces.

Everything goes through `ip -b` batches (one process for many changes) and `nsenter`; the
agent's own process never changes namespace, so nothing here can leak a namespace switch
into other tasks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kubesvc import spawn

T = TypeVar("T")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


class CommandError(RuntimeError):
    pass


async def run(*argv: str, input: str | None = None, check: bool = True) -> str:
    done = await spawn.run(
        argv,
        input=input.encode() if input is not None else None,
        stdout=spawn.PIPE,
        stderr=spawn.PIPE,
    )
    if check and done.returncode != 0:
        cmd = " ".join(argv)
        out, err = done.stdout, done.stderr
        detail = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise CommandError(f"{cmd}: exit {done.returncode}: {detail}")
    return done.stdout.decode(errors="replace")


async def ip_batch(commands: list[str], netns: str | None = None, check: bool = True) -> None:
    """Run many `ip` commands in one process (`ip -b -`), optionally inside a namespace."""
    if not commands:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-b", "-"]
    if not check:
        argv.insert(1, "-force")
    await run(*argv, input="\n".join(commands) + "\n", check=check)


def nsenter(netns: str) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--"]


async def in_netns(netns: str, *argv: str, input: str | None = None, check: bool = True) -> str:
    return await run(*nsenter(netns), *argv, input=input, check=check)


async def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Write /proc/sys values as seen from inside `netns` (per-namespace net.* keys)."""
    script = "; ".join(
        f"echo {value} > /proc/sys/{key.replace('.', '/')}" for key, value in settings.items()
    )
    await in_netns(netns, "sh", "-c", script)


def exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def names(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


async def add(netns: str) -> None:
    if not exists(netns):
        await run("ip", "netns", "add", netns)


async def delete(netns: str) -> None:
    if exists(netns):
        await run("ip", "netns", "delete", netns, check=False)


@dataclass(frozen=True)
class NsProcess:
    pid: int
    session: int
    netns: int  # inode of its network namespace


def processes_in(netns_files: Iterable[Path]) -> list[NsProcess]:
    """The processes whose network namespace is one of `netns_files` (/run/netns/...)."""
    inodes = set()
    for f in netns_files:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f).st_ino)
    if not inodes:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            inode = os.stat(f"/proc/{entry}/ns/net").st_ino
            if inode not in inodes:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            out.append(NsProcess(int(entry), int(fields[3]), inode))
        except (OSError, IndexError, ValueError):
            continue
    return out


def mount_points() -> set[str]:
    """Every mount point of this mount namespace (one read of mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    return {f[4].replace("\\040", " ") for f in (line.split() for line in lines) if len(f) > 4}


async def host_routes() -> list[str]:
    out = await run("ip", "-4", "route", "show")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


async def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return (await spawn.run(argv)).returncode == 0


def is_mountpoint(path: Path) -> bool:
    """True when something is mounted at `path`. (os.path.ismount misses a directory
    bind-mounted onto itself, which is exactly how namespace directories are made.)"""
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        # the mount point is the fifth field; spaces in it are written as \040
        if len(fields) > 4 and fields[4].replace("\\040", " ") == target:
            return True
    return False


_libc = ctypes.CDLL(None, use_errno=True)


def call_in_netns(netns: str | Path, fn: Callable[[], T]) -> T:
    """fn() run in a short-lived thread that has joined a network namespace (a name under
    /run/netns, or a path). setns() changes only the calling thread, so nothing else in the
    process moves; what fn creates there (sockets, netlink handles) stays in that namespace."""
    path = netns if isinstance(netns, Path) else NETNS_DIR / netns
    result: list[T] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as e:
            error.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def socket_in_netns(
    netns: str | Path,
    family: int = socket.AF_INET,
    kind: int = socket.SOCK_STREAM,
    proto: int = 0,
) -> socket.socket:
    """A socket that lives in a network namespace."""
    return call_in_netns(netns, lambda: socket.socket(family, kind, proto))


def listen_in_netns(netns: str, host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket that lives in `netns`."""
    sock = socket_in_netns(netns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
