"""exec (`/exec`) and attach (`/attach`): a command run in a pod's container, or the
container's own output, as pkg/kubelet/cri/streaming/remotecommand does.

The streams travel as channels (`channels.py`: WebSocket channels or SPDY streams): 0
stdin, 1 stdout, 2 stderr, 3 error and 4 resize; from v4 on the error channel carries a
metav1.Status when the command ends, before that only a failure's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import termios
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kubesvc.kubelet.channels import ERROR, RESIZE, STDERR, STDIN, STDOUT, Channels
from kubesvc.kubelet.errors import NodeError, flag
from kubesvc.kubelet.logs import FOLLOW_POLL, parse_log_line, record_stream
from kubesvc.node.view import ContainerStdin, Sandbox

STREAM_CHUNK = 32 * 1024


@dataclass(frozen=True)
class ExecOptions:
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def parse_exec_options(query: Any) -> ExecOptions:
    command = tuple(query.getall("command", []))
    opts = ExecOptions(
        command,
        flag(query.get("stdin")),
        flag(query.get("stdout")),
        flag(query.get("stderr")),
        flag(query.get("tty")),
    )
    if not command:
        raise NodeError(400, "you must specify at least 1 command")
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise NodeError(400, "you must specify at least 1 of stdin, stdout, stderr")
    if opts.tty and opts.stderr:
        # a terminal merges stderr into stdout (upstream: "stdout and stderr" on one stream)
        opts = ExecOptions(command, opts.stdin, opts.stdout, False, True)
    return opts


def exec_argv(
    sandbox: Sandbox,
    env: dict[str, str],
    workdir: str | None,
    opts: ExecOptions,
    privileges: Sequence[str] = (),
) -> list[str]:
    """The command line that runs `opts.command` in the pod like its container runs: in
    the pod's namespaces, as the container's user with its capabilities (`privileges`)."""
    environ = dict(env)
    if opts.tty:
        environ.setdefault("TERM", "xterm")  # as containerd does for a terminal exec
    assignments = [f"{k}={v}" for k, v in environ.items() if k and "=" not in k]
    # with a terminal, a new session whose controlling terminal is the pty on stdin, made
    # inside the pod's PID namespace, where the shell's job control looks for its groups
    session = ["setsid", "-w", "-c"] if opts.tty else []
    argv = [*sandbox.nsenter(), *session, *privileges, "env", "-i", "-C", workdir or "/"]
    return [*argv, *assignments, *opts.command]


def exit_status(command: Iterable[str], returncode: int) -> dict[str, Any]:
    """The metav1.Status the error channel carries when the command ends."""
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = returncode if returncode > 0 else 128 - returncode  # killed by a signal
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message}


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(columns, rows) of a resize message, or None if it is not one."""
    try:
        size = json.loads(payload)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None
    if not (0 <= width < 65536 and 0 <= height < 65536):
        return None
    return width, height


class ExecSession:
    """One exec: a process and the channels that carry its streams."""

    def __init__(self, channels: Channels, argv: list[str], opts: ExecOptions) -> None:
        self.channels, self.argv, self.opts = channels, argv, opts
        self.proc: asyncio.subprocess.Process | None = None
        self.master: int | None = None  # pty master when tty
        self.stdin_open = opts.stdin

    async def send(self, channel: int, data: bytes) -> None:
        await self.channels.send(channel, data)

    async def _send_status(self, status: dict[str, Any]) -> None:
        await self.channels.send_status(status)

    async def run(self) -> None:
        try:
            await self._start()
        except OSError as e:
            await self._send_status(failure_status(str(e)))
            return
        assert self.proc is not None
        await self.channels.ready(first_channel(self.opts))
        reader = asyncio.create_task(self._read_client())
        try:
            outputs = [asyncio.create_task(p) for p in self._pumps()]
            await asyncio.gather(*outputs)
            code = await self.proc.wait()
            await self._send_status(exit_status(self.opts.command, code))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self._cleanup()

    async def _start(self) -> None:
        pipe = asyncio.subprocess.PIPE
        devnull = asyncio.subprocess.DEVNULL
        if self.opts.tty:
            master, slave = pty.openpty()
            self.master = master
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=slave, stdout=slave, stderr=slave
                )
            finally:
                os.close(slave)
            return
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=pipe if self.opts.stdin else devnull,
            stdout=pipe if self.opts.stdout else devnull,
            stderr=pipe if self.opts.stderr else devnull,
            start_new_session=True,
        )

    def _pumps(self) -> list[Awaitable[None]]:
        assert self.proc is not None
        if self.master is not None:
            return [self._pump_pty(self.master)] if self.opts.stdout else []
        pumps = []
        if self.proc.stdout is not None:
            pumps.append(self._pump(self.proc.stdout, STDOUT))
        if self.proc.stderr is not None:
            pumps.append(self._pump(self.proc.stderr, STDERR))
        return pumps

    async def _pump(self, stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(STREAM_CHUNK):
            await self.send(channel, chunk)

    async def _pump_pty(self, master: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(master), "rb", 0)
        )
        try:
            while True:
                try:
                    chunk = await reader.read(STREAM_CHUNK)
                except OSError:  # EIO once the terminal's last user is gone
                    return
                if not chunk:
                    return
                await self.send(STDOUT, chunk)
        finally:
            transport.close()

    async def _read_client(self) -> None:
        async for channel, payload in self.channels.receive():
            if channel == STDIN:
                if payload is None:
                    await self._close_stdin()
                else:
                    await self._write_stdin(payload)
            elif channel == RESIZE and payload is not None:
                self._resize(payload)
        # the client is gone: nobody reads the output any more
        await self._close_stdin()
        self._kill()

    async def _write_stdin(self, data: bytes) -> None:
        if not self.stdin_open or not data:
            return
        if self.master is not None:
            await asyncio.to_thread(_write_all, self.master, data)
            return
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.stdin_open = False

    async def _close_stdin(self) -> None:
        if not self.stdin_open:
            return
        self.stdin_open = False
        if self.master is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_write_all, self.master, b"\x04")  # EOF at a terminal
            return
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.proc.stdin.wait_closed()

    def _resize(self, payload: bytes) -> None:
        size = parse_resize(payload)
        if size is None or self.master is None:
            return
        cols, rows = size
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def _cleanup(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._kill()
            with contextlib.suppress(ProcessLookupError):
                await self.proc.wait()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


def open_fifo_writer(fifo: Path) -> int:
    """A non-blocking writer of a container's stdin FIFO; -1 if nothing reads it any more."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return -1


async def write_nonblocking(fd: int, data: bytes) -> None:
    """Write all of `data` to a non-blocking fd, waiting while it is full (the reader is
    slow: the client is held back, not buffered for)."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
            continue
        except BlockingIOError:
            pass
        writable = loop.create_future()
        loop.add_writer(fd, _resolve, writable)
        try:
            await writable
        finally:
            loop.remove_writer(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- attach ---------------------------------------------------------------------------------


def parse_attach_options(query: Any) -> ExecOptions:
    """stdin/stdout/stderr/tty of an attach (no command)."""
    opts = ExecOptions(
        (),
        flag(query.get("stdin")),
        flag(query.get("stdout")),
        flag(query.get("stderr")),
        flag(query.get("tty")),
    )
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise NodeError(400, "you must specify at least 1 of stdin, stdout, stderr")
    if opts.tty and opts.stderr:
        opts = ExecOptions((), opts.stdin, opts.stdout, False, True)
    return opts


def first_channel(opts: ExecOptions) -> int:
    """The first output channel: an empty message on it tells a WebSocket client that the
    streams are up."""
    return STDOUT if opts.stdout else STDERR if opts.stderr else ERROR


def output_channel(stream: bytes, opts: ExecOptions) -> int | None:
    """Where a line the container wrote on `stream` goes: with a terminal everything is
    stdout; otherwise stdout and stderr keep apart; None if the client did not ask for it."""
    if opts.tty or stream != b"stderr":
        return STDOUT if opts.stdout else None
    return STDERR if opts.stderr else None


MAX_PENDING = 64 * 1024  # bytes of an unfinished line held before it is sent as it is


class AttachSession:
    """An attach to a running container: what the container writes from now on, as its
    log file records it (CRI records say stdout or stderr), until the container instance
    ends or the client leaves. A container with `stdin: true` reads a FIFO: the client's
    stdin is written to it, and with `stdinOnce` the container's stdin ends when this
    attach does (or the client closes its stdin). Input for a container without stdin is
    read and dropped, as containerd drops it."""

    def __init__(
        self,
        channels: Channels,
        log_file: Path,
        opts: ExecOptions,
        still_current: Callable[[], bool],
        stdin: ContainerStdin | None = None,
    ) -> None:
        self.channels, self.log_file, self.opts = channels, log_file, opts
        self.still_current = still_current
        self.stdin = stdin if opts.stdin else None
        self._writer = -1  # our end of the container's stdin FIFO

    async def send(self, channel: int, data: bytes) -> None:
        await self.channels.send(channel, data)

    async def run(self) -> None:
        await self.channels.ready(first_channel(self.opts))
        # where the output starts is fixed before any input can reach the container, so
        # nothing it answers to this attach's input is missed
        log = open(self.log_file, "rb")  # noqa: SIM115 (closed when the session ends)
        log.seek(0, os.SEEK_END)  # attach shows what comes next, not the past
        reader = asyncio.create_task(self._read_client())
        follower = asyncio.create_task(self._follow(log))
        try:
            done, _ = await asyncio.wait({reader, follower}, return_when=asyncio.FIRST_COMPLETED)
            if follower in done and follower.exception() is None:
                await self.channels.send_status({"metadata": {}, "status": "Success"})
        finally:
            for task in (reader, follower):
                task.cancel()
            await asyncio.gather(reader, follower, return_exceptions=True)
            log.close()  # (a follower cancelled before it ran never had it)
            self._end_stdin()

    async def _read_client(self) -> None:
        if self.stdin is not None:
            self._writer = open_fifo_writer(self.stdin.fifo)
        async for channel, payload in self.channels.receive():
            if channel != STDIN or self._writer < 0:
                continue  # nowhere to go: dropped
            if payload is None:
                self._end_stdin()
                continue
            try:
                await write_nonblocking(self._writer, payload)
            except OSError:  # the container is gone
                self._end_stdin()

    def _end_stdin(self) -> None:
        """Our writer goes; with stdinOnce the container's stdin ends with it."""
        if self._writer >= 0:
            os.close(self._writer)
            self._writer = -1
            if self.stdin is not None and self.stdin.once:
                self.stdin.close()

    async def _emit(self, raw: bytes) -> None:
        stream, line = record_stream(raw), parse_log_line(raw)
        channel = output_channel(stream, self.opts)
        if channel is not None and line.content:
            await self.send(channel, line.content)

    async def _follow(self, log: BinaryIO) -> None:
        with log as f:
            pending = b""
            while True:
                chunk = f.read(STREAM_CHUNK)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        await self._emit(raw + b"\n")
                    if len(pending) > MAX_PENDING:
                        await self._emit(pending)
                        pending = b""
                    continue
                if not self.still_current():
                    if pending:
                        await self._emit(pending)
                    return
                if os.fstat(f.fileno()).st_size < f.tell():  # truncated: start over
                    f.seek(0)
                    pending = b""
                await asyncio.sleep(FOLLOW_POLL)
