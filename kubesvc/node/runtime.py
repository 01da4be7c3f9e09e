"""Container processes: start them in a pod's namespaces, notice when they exit, stop them.

Each container runs under a shim (`containershim.py`, conmon's role): the shim starts the
container command, writes its stdout and stderr to the log file as CRI records, forwards
SIGTERM/SIGINT to it, and writes its exit status to a file. Shims are forked by one shim
server per agent (no interpreter start per container). A shim runs in its own session, so
containers outlive a restart of the node agent; the agent then adopts them from
their state files and still learns their exit codes. Exits are noticed through pidfds,
which work for processes that are not the agent's children.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubesvc.node import containershim
from kubesvc.node.view import Sandbox

# isolated and without site: the container's PYTHON* variables do not reach the shim
SHIM = [sys.executable, "-I", "-S", containershim.__file__]
SHIM_SERVER_TIMEOUT = 5.0  # seconds to wait for the shim server's answer

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_environment(hostname: str, env: dict[str, str]) -> dict[str, str]:
    """What a container's processes (and what is exec'd in it) see: the image's defaults,
    the pod's hostname, then the container's own env."""
    return {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root", **env}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def boot_time_ticks(pid: int) -> int | None:
    """Process start time (clock ticks since boot): tells a live process from a reused pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Proc:
    """One run of one container."""

    container: str
    restart_count: int
    pid: int
    start_ticks: int | None
    started_at: str
    log: str
    exit_file: str
    exit_code: int | None = None
    finished_at: str | None = None
    killed: bool = False  # we sent SIGKILL: no exit file is expected
    container_pid: int = 0  # the container's own process (the shim's child), once seen
    stdin: str = ""  # the FIFO that is its stdin (a container with `stdin: true`)

    @property
    def running(self) -> bool:
        return self.exit_code is None


class ShimServer:
    """The shim server (`containershim.py --serve`): forks a shim per request. Started on
    first use, again if it has gone; None from `spawn` means it cannot help."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(
        self,
        command: list[str],
        env: dict[str, str],
        exit_file: Path,
        log_file: Path,
        stdin: Path | None = None,
        pid_ns: str | None = None,
    ) -> int | None:
        request = json.dumps(
            {
                "command": command,
                "env": env,
                "cwd": None,
                "exit_file": str(exit_file),
                "log_file": str(log_file),
                "stdin": str(stdin) if stdin else None,
                "pid_ns": pid_ns,
            }
        ).encode()
        for _ in range(2):  # once more with a new server if this one has gone
            proc = self._server()
            if proc is None:
                return None
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request + b"\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], SHIM_SERVER_TIMEOUT)
                reply = json.loads(proc.stdout.readline()) if ready else {}
                return int(reply["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                self.close()
        return None

    def _server(self) -> subprocess.Popen[bytes] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        try:
            self._proc = subprocess.Popen(
                [*SHIM, "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            return None
        return self._proc

    def close(self) -> None:
        """Stop the server (its shims, and their containers, go on)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class ContainerRuntime:
    def __init__(self, on_exit: Callable[[str, Proc], None]) -> None:
        self.on_exit = on_exit  # (pod uid, proc)
        self._watchers: dict[int, tuple[str, Proc, int]] = {}  # pid -> (uid, proc, pidfd)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self.shims = ShimServer()

    def start(
        self,
        uid: str,
        sandbox: Sandbox,
        container: str,
        restart_count: int,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        log_dir: Path,
        stdin: bool = False,
        privileges: list[str] | None = None,
    ) -> Proc:
        """Start a container instance; with `stdin`, its stdin is a FIFO kept open for
        attach (Proc.stdin) instead of /dev/null. It runs in the pod's namespaces as
        `privileges` (kubesvc/node/security.py) make it, in `cwd` inside the pod's root."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{restart_count}.log"
        exit_file = log_dir / f"{restart_count}.exit"
        exit_file.unlink(missing_ok=True)
        fifo: Path | None = None
        if stdin:
            fifo = log_dir / f"{restart_count}.stdin"
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo, 0o600)
        full_env = container_environment(sandbox.hostname, env)
        chdir = ["env", "-C", cwd] if cwd else []
        command = [*sandbox.nsenter(pid=False), *(privileges or []), *chdir, *argv]
        pid_ns = str(sandbox.pid) if sandbox.pid is not None else None
        pid = self.shims.spawn(command, full_env, exit_file, log, fifo, pid_ns)
        if pid is None:  # no shim server: a shim of its own
            lc_ctype = full_env.get("LC_CTYPE", "-")
            first = [f"--pid-ns={pid_ns}"] if pid_ns else []
            args = [str(exit_file), str(log), lc_ctype, str(fifo or "-"), *command]
            with open(log, "ab") as out:  # the shim's own complaints, if it has any
                child = subprocess.Popen(
                    [*SHIM, *first, *args],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    start_new_session=True,
                )
            pid = child.pid
            self._children[pid] = child
        proc = Proc(
            container,
            restart_count,
            pid,
            boot_time_ticks(pid),
            now_rfc3339(),
            str(log),
            str(exit_file),
            stdin=str(fifo or ""),
        )
        self.watch(uid, proc)
        return proc

    def watch(self, uid: str, proc: Proc) -> None:
        """Be told when `proc` exits (works for adopted, non-child processes too)."""
        if proc.exit_code is not None:
            return
        loop = asyncio.get_running_loop()
        # a process that is already gone (a container that exits at once, its shim reaped
        # by the shim server at once) is reported on the next turn of the loop, never from
        # inside this call: the caller has not recorded `proc` as its current one yet
        if not self.alive(proc):
            loop.call_soon(self._finish, uid, proc)
            return
        try:
            pidfd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            loop.call_soon(self._finish, uid, proc)
            return
        self._watchers[proc.pid] = (uid, proc, pidfd)
        loop.add_reader(pidfd, self._exited, proc.pid)

    @staticmethod
    def alive(proc: Proc) -> bool:
        ticks = boot_time_ticks(proc.pid)
        return ticks is not None and (proc.start_ticks is None or ticks == proc.start_ticks)

    def _exited(self, pid: int) -> None:
        uid, proc, pidfd = self._watchers.pop(pid)
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        child = self._children.pop(pid, None)
        code = child.wait() if child is not None else None
        self._finish(uid, proc, code)

    def _finish(self, uid: str, proc: Proc, shim_code: int | None = None) -> None:
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):
            code = int(Path(proc.exit_file).read_text().strip())
        if code is None:
            # the shim itself died (killed with the container, or on its own): make sure no
            # orphaned container process keeps running, then report it killed
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            code = 137 if proc.killed else (shim_code if shim_code and shim_code > 0 else 137)
        proc.exit_code = code
        proc.finished_at = now_rfc3339()
        self.on_exit(uid, proc)

    def signal(self, proc: Proc, sig: int) -> None:
        if not proc.running or not self.alive(proc):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:
                proc.killed = True
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)  # the shim forwards it to the container

    async def stop(self, procs: list[Proc], grace: float) -> None:
        """SIGTERM, then SIGKILL for whatever still runs after `grace` seconds."""
        live = [p for p in procs if p.running]
        for p in live:
            self.signal(p, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace)
        while any(p.running for p in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for p in live:
            if p.running:
                self.signal(p, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(p.running for p in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    @staticmethod
    def container_pid(proc: Proc) -> int:
        """The container's own process (the shim's child); 0 until the shim has started it."""
        if not proc.container_pid:
            try:
                path = f"/proc/{proc.pid}/task/{proc.pid}/children"
                children = Path(path).read_text().split()
            except OSError:
                children = []
            proc.container_pid = int(children[0]) if children else 0
        return proc.container_pid

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for _uid, _proc, pidfd in self._watchers.values():
            loop.remove_reader(pidfd)
            os.close(pidfd)
        self._watchers.clear()
        self.shims.close()


def save_procs(path: Path, procs: list[Proc]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(p) for p in procs]))
    tmp.replace(path)


def load_procs(path: Path) -> list[Proc]:
    try:
        return [Proc(**p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []
