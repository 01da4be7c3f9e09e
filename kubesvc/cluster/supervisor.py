"""Keeps a set of processes running: the engine behind `kubesvc supervise`.

Each component is started in a session of its own, with its output appended to its log.
A component that depends on others (`after`) is first started once those are ready. When a
component exits it is started again after a back-off: 0.2 s, doubling up to 10 s, and back
to 0.2 s once a run has lasted 30 s. Pids, states, restart counts and the last exit of every
component are written to a JSON state file (atomically) at each change, and each pid to the
component's pid file.

Exits are noticed through pidfds, which work for processes that are not the supervisor's
children: a supervisor that finds a live component from a previous supervisor (same pid and
start time in the state file) adopts it instead of starting a second copy. `stop()` sends
SIGTERM to every component's process group, SIGKILL after the grace period, and returns
once they are gone.

A component can be held (`kubesvc node stop`): it is stopped the same way and not started
again until it is released; its exit then counts as no restart. `set_held()` changes which
components are held while the supervisor runs (on SIGHUP, from cluster.json).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("kubesvc.supervisor")

BACKOFF_INITIAL = 0.2
BACKOFF_MAX = 10.0
BACKOFF_RESET_AFTER = 30.0  # a run this long counts as healthy: the next delay is the first
STOP_GRACE = 5.0
READY_POLL = 0.05


class Backoff:
    """The delay before the next start of one component."""

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL,
        cap: float = BACKOFF_MAX,
        reset_after: float = BACKOFF_RESET_AFTER,
    ) -> None:
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self.delay = 0.0

    def after_exit(self, ran: float) -> float:
        """The delay after a run that lasted `ran` seconds."""
        if ran >= self.reset_after:
            self.delay = 0.0
        self.delay = self.initial if self.delay == 0 else min(self.cap, self.delay * 2)
        return self.delay


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    pid_file: Path
    after: tuple[str, ...] = ()  # first started once these components are ready
    ready: Callable[[], Awaitable[bool]] | None = None  # None: ready as soon as it runs
    env: dict[str, str] | None = None
    held: bool = False  # not run until released (a node stopped on purpose)


@dataclass
class ComponentStatus:
    pid: int = 0
    start_ticks: int | None = None  # tells this process from a later one with the same pid
    state: str = "waiting"  # waiting, running, restarting, held, stopped
    restarts: int = 0
    started_at: float = 0.0  # wall clock
    last_exit: str = ""
    last_exit_at: float = 0.0


# -- processes -----------------------------------------------------------------------------
def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if there is no such
    process (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def is_process(pid: int, ticks: int | None) -> bool:
    """True when `pid` is still the process that started at `ticks`."""
    return pid > 0 and ticks is not None and start_ticks(pid) == ticks


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"  # adopted: its parent (init) collected the status
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# -- the one-per-cluster lock --------------------------------------------------------------
def hold_pid_lock(path: Path) -> int | None:
    """Lock `path` for as long as this process lives and write its pid there. Returns the
    descriptor to keep open, or None when another live process holds the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def locked_pid(path: Path) -> int | None:
    """The pid written in `path` while the process that wrote it still holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            for _ in range(50):  # the holder writes its pid right after taking the lock
                with contextlib.suppress(ValueError):
                    pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
                    if pid:
                        return pid
                time.sleep(0.002)
            return None
        return None
    finally:
        os.close(fd)


# -- the supervisor ------------------------------------------------------------------------
@dataclass
class _Run:
    """One run of one component."""

    pid: int
    ticks: int | None
    child: subprocess.Popen[bytes] | None  # None: adopted from a previous supervisor
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(
        self,
        components: list[Component],
        state_file: Path,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self.components = components
        self.state_file = state_file
        self.stop_grace = stop_grace
        self.status = {c.name: ComponentStatus() for c in components}
        self._backoff = {c.name: backoff() for c in components}
        self._ready = {c.name: asyncio.Event() for c in components}
        self._released = {c.name: asyncio.Event() for c in components}
        self._held: set[str] = set()
        self._stopping_held: set[asyncio.Task[None]] = set()
        self._runs: dict[str, _Run] = {}
        self.set_held({c.name for c in components if c.held})
        self._stopping = asyncio.Event()
        self._load()

    def _load(self) -> None:
        """What a previous supervisor left: processes to adopt and, if it did not stop on
        purpose, the restart counts so far."""
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        for name, old in (data.get("components") or {}).items():
            st = self.status.get(name)
            if st is None or not isinstance(old, dict):
                continue
            alive = is_process(int(old.get("pid") or 0), old.get("start_ticks"))
            if alive:
                st.pid, st.start_ticks = int(old["pid"]), old["start_ticks"]
                st.started_at = float(old.get("started_at") or 0.0)
            if not data.get("stopped"):
                st.restarts = int(old.get("restarts") or 0)
                st.last_exit = str(old.get("last_exit") or "")
                st.last_exit_at = float(old.get("last_exit_at") or 0.0)
                if not alive and old.get("pid"):
                    # it ended while no supervisor watched: starting it now is a restart
                    st.restarts += 1
                    st.last_exit = "exited while no supervisor ran"

    def save(self, stopped: bool = False) -> None:
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "stopped": stopped,
            "components": {name: asdict(st) for name, st in self.status.items()},
        }
        write_atomic(self.state_file, json.dumps(data, indent=1) + "\n")

    def stop(self) -> None:
        self._stopping.set()

    def set_held(self, names: set[str]) -> None:
        """Hold exactly these components: stop the ones newly held, start the released."""
        for name, released in self._released.items():
            if name in names and name not in self._held:
                self._held.add(name)
                released.clear()
                run = self._runs.get(name)
                if run is not None:
                    log.info("holding", extra={"kv": {"component": name, "pid": run.pid}})
                    self._stop_in_background(name, run)
            elif name not in names:
                self._held.discard(name)
                released.set()

    async def run(self) -> None:
        """Keep every component running until stop(); then stop them all."""
        keepers = [
            asyncio.create_task(self._keep(c), name=f"keep-{c.name}") for c in self.components
        ]
        self.save()
        try:
            await self._stopping.wait()
        finally:
            for t in keepers:
                t.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            await self._stop_all()
            self.save(stopped=True)

    def _stop_in_background(self, name: str, run: _Run) -> None:
        task = asyncio.get_running_loop().create_task(self._stop_runs({name: run}))
        self._stopping_held.add(task)
        task.add_done_callback(self._stopping_held.discard)

    async def _keep(self, c: Component) -> None:
        st = self.status[c.name]
        run: _Run | None = None
        if is_process(st.pid, st.start_ticks):
            run = _Run(st.pid, st.start_ticks, None)
            st.state = "running"
            log.info("adopted", extra={"kv": {"component": c.name, "pid": st.pid}})
        else:
            for dep in c.after:
                await self._ready[dep].wait()
        while True:
            if run is None:
                if c.name in self._held:
                    st.state = "held"
                    self.save()
                    await self._released[c.name].wait()
                run = self._spawn(c)
            elif c.name in self._held:  # adopted, but held since
                self._stop_in_background(c.name, run)
            self._runs[c.name] = run
            self.save()
            readiness = asyncio.create_task(self._watch_ready(c))
            try:
                code = await _wait_exit(run)
            finally:
                readiness.cancel()
            self._runs.pop(c.name, None)
            if c.name in self._held:
                st.state, st.last_exit, st.last_exit_at = "held", describe_exit(code), time.time()
                log.info("held", extra={"kv": {"component": c.name, "pid": run.pid}})
                run = None
                continue
            ran = time.monotonic() - run.started
            delay = self._backoff[c.name].after_exit(ran)
            st.state, st.last_exit, st.last_exit_at = "restarting", describe_exit(code), time.time()
            self._runs.pop(c.name, None)
            self.save()
            log.warning(
                "process exited; starting it again",
                extra={
                    "kv": {
                        "component": c.name,
                        "pid": run.pid,
                        "exit": st.last_exit,
                        "ran": f"{ran:.1f}s",
                        "in": f"{delay:.1f}s",
                    }
                },
            )
            run = None
            await asyncio.sleep(delay)
            st.restarts += 1

    def _spawn(self, c: Component) -> _Run:
        st = self.status[c.name]
        with open(c.log, "ab") as out:
            child = subprocess.Popen(
                c.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=c.env,
            )
        st.pid, st.start_ticks = child.pid, start_ticks(child.pid)
        st.state, st.started_at = "running", time.time()
        write_atomic(c.pid_file, str(child.pid))
        log.info("started", extra={"kv": {"component": c.name, "pid": child.pid}})
        return _Run(child.pid, st.start_ticks, child)

    async def _watch_ready(self, c: Component) -> None:
        if c.ready is None:
            self._ready[c.name].set()
            return
        while not await c.ready():
            await asyncio.sleep(READY_POLL)
        self._ready[c.name].set()

    async def _stop_all(self) -> None:
        runs = dict(self._runs)
        await self._stop_runs(runs)
        for name in runs:
            self.status[name].state = "stopped"
        for name, st in self.status.items():
            if name not in runs:
                st.state = "stopped"
        self._runs.clear()

    async def _stop_runs(self, runs: dict[str, _Run]) -> None:
        """SIGTERM to each run's process group, SIGKILL after the grace period."""
        for run in runs.values():
            _kill_group(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while any(_running(r) for r in runs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for run in runs.values():
            if _running(run):
                _kill_group(run.pid, signal.SIGKILL)
        for run in runs.values():
            if run.child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.child.wait(timeout=5)


def _running(run: _Run) -> bool:
    if run.child is not None:
        return run.child.poll() is None
    return is_process(run.pid, run.ticks)


async def _wait_exit(run: _Run) -> int | None:
    """Wait until the run's process exits; its exit status if it is our child."""
    try:
        fd = os.pidfd_open(run.pid)
    except ProcessLookupError:
        fd = -1
    # a pidfd opened after the process was replaced by another with the same pid would watch
    # the wrong one: the start time must still match once the pidfd is held
    if fd >= 0 and (run.child is not None or is_process(run.pid, run.ticks)):
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    elif fd >= 0:
        os.close(fd)
    if run.child is None:
        return None
    # the exited child is a zombie until it is collected, so its process group id cannot be
    # taken by anyone else yet: anything it left in its group goes with it
    _kill_group(run.pid, signal.SIGKILL)
    return run.child.wait()
