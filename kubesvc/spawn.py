"""Short-lived child processes for asyncio code, started with vfork.

uvloop starts a child with fork(): the parent's address space is copied (page tables,
copy-on-write) and torn down again at exec. For a node agent of 60-80 MB that costs the
agent 3-4 ms of CPU and the child 5 ms per command, and about 50 ms of wall time on a busy
machine. subprocess.Popen uses vfork (CPython 3.10+ on Linux): 0.3 + 0.9 ms. A pod start
runs a dozen commands (`ip`, `unshare`, `mount`, `nsenter`), and exec probes one per period,
so this is much of what they cost.

`run` starts the process with Popen, feeds its stdin and collects its output through
non-blocking pipes on the event loop, and notices its exit through a pidfd, so nothing
blocks the loop and no thread is needed.

`die_with_parent` is for the other kind, a long-lived child (HAProxy under the ingress
controller) that must not outlive its parent, even one killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
CHUNK = 65536
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Completed:
    returncode: int | None  # None: it ran out of time and was killed
    stdout: bytes
    stderr: bytes


class _Reader:
    """Everything a pipe delivers until EOF; at most `limit` bytes of it are kept (the rest
    is read and dropped, so a chatty child never blocks on a full pipe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, limit: int | None) -> None:
        self.loop, self.fd, self.limit = loop, fd, limit
        self.data = bytearray()
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            room = len(chunk) if self.limit is None else max(0, self.limit - len(self.data))
            self.data += chunk[:room]

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.done.done():
            self.done.set_result(None)


class _Writer:
    """Writes `data` to a pipe as the child reads it, then closes the pipe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
        self.loop, self.fd, self.data = loop, fd, memoryview(data)
        os.set_blocking(fd, False)
        loop.add_writer(fd, self._writable)

    def _writable(self) -> None:
        while self.data:
            try:
                n = os.write(self.fd, self.data[:CHUNK])
            except BlockingIOError:
                return
            except OSError:  # the child closed its end (or exited) without reading it all
                break
            self.data = self.data[n:]
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_writer(self.fd)
            os.close(self.fd)
            self.fd = -1


def _pipe() -> tuple[int, int]:
    return os.pipe2(os.O_CLOEXEC)


async def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    stdout: int = DEVNULL,
    stderr: int = DEVNULL,
    env: Mapping[str, str] | None = None,
    start_new_session: bool = False,
    limit: int | None = None,
    timeout: float | None = None,
) -> Completed:
    """Run `argv` to its end. `stdout`/`stderr`: PIPE (collected, at most `limit` bytes
    each), DEVNULL, or STDOUT for stderr (merged into stdout). When `timeout` passes, the
    process (its whole group with `start_new_session`) is killed and `returncode` is None.
    Cancelled, the process is killed too. OSError when it cannot be started."""
    loop = asyncio.get_running_loop()
    parent: list[int] = []  # the pipe ends this process keeps
    child: list[int] = []  # the ends the child gets, closed here once it has them
    try:
        stdin_fd: int = DEVNULL
        if input is not None:
            stdin_fd, w = _pipe()
            child.append(stdin_fd)
            parent.append(w)
        out_fd: int = stdout
        if stdout == PIPE:
            r, out_fd = _pipe()
            parent.append(r)
            child.append(out_fd)
        err_fd: int = stderr
        if stderr == PIPE:
            r, err_fd = _pipe()
            parent.append(r)
            child.append(err_fd)
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin_fd,
            stdout=out_fd,
            stderr=err_fd,
            env=dict(env) if env is not None else None,
            start_new_session=start_new_session,
        )
    except BaseException:
        for fd in parent:
            os.close(fd)
        raise
    finally:
        for fd in child:
            os.close(fd)
    pending = list(parent)
    writer: _Writer | None = None
    out = err = None
    try:
        if input is not None:
            writer = _Writer(loop, pending.pop(0), input)
        if stdout == PIPE:
            out = _Reader(loop, pending.pop(0), limit)
        if stderr == PIPE:
            err = _Reader(loop, pending.pop(0), limit)
        exited = _exit_future(loop, proc)
    except BaseException:  # out of descriptors for the pidfd, say: nothing may be left behind
        for io in (writer, out, err):
            if io is not None:
                io.close()
        for fd in pending:
            os.close(fd)
        _kill(proc, start_new_session)
        proc.wait()
        raise
    returncode: int | None = None
    try:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(
                    *(asyncio.shield(r.done) for r in (out, err) if r is not None),
                    asyncio.shield(exited),
                )
            returncode = proc.wait()
        except TimeoutError:
            _kill(proc, start_new_session)
            await asyncio.shield(exited)
            proc.wait()
    except BaseException:
        _kill(proc, start_new_session)
        _reap_later(loop, proc, exited)
        raise
    finally:
        for io in (writer, out, err):
            if io is not None:
                io.close()
    return Completed(
        returncode,
        bytes(out.data) if out is not None else b"",
        bytes(err.data) if err is not None else b"",
    )


def _exit_future(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]
) -> asyncio.Future[None]:
    """Done when the child has exited (it stays a zombie until proc.wait() collects it)."""
    exited: asyncio.Future[None] = loop.create_future()
    fd = os.pidfd_open(proc.pid)

    def ready() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, ready)
    return exited


def _reap_later(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes], exited: asyncio.Future[None]
) -> None:
    """Collect the child once it has exited, so no zombie is left behind."""

    def reap(_done: asyncio.Future[None]) -> None:
        proc.wait()

    if exited.done():
        proc.wait()
    else:
        exited.add_done_callback(reap)


def die_with_parent(signum: int) -> Callable[[], None]:
    """A preexec_fn for a long-lived child that must not outlive this process: the kernel
    sends it `signum` when this process dies (PR_SET_PDEATHSIG, kept across exec), and it
    exits at once if this process died before it was set. Runs between fork and exec, so
    it only makes system calls."""
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:
            os._exit(1)

    return child


def _kill(proc: subprocess.Popen[bytes], group: bool) -> None:
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
