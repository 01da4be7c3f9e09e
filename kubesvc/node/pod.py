"""One pod on this node: its sandbox, its containers' runs, restarts, probes and status.

The worker never talks to the API server itself: the agent gives it the pod object and the
inputs it needs (service env, ConfigMaps/Secrets), and reads `status()` to publish.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubesvc.node import hooks, images, podenv, podfiles, probes, security
from kubesvc.node.runtime import (
    DEFAULT_PATH,
    ContainerRuntime,
    Proc,
    load_procs,
    now_rfc3339,
    save_procs,
)
from kubesvc.node.view import Sandbox

log = logging.getLogger("kubesvc.node")

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long restarts without delay
POST_START_TIMEOUT = 300.0  # upstream waits for ever; a hung hook should not hold a pod
MIN_GRACE_AFTER_HOOK = 2.0  # kuberuntime minimumGracePeriodInSeconds


@dataclass
class ContainerState:
    spec: dict[str, Any]
    init: bool = False
    current: Proc | None = None
    previous: Proc | None = None  # the last instance that ended
    before: Proc | None = None  # the one that ended before it
    restart_count: int = 0  # the number the next (or current) instance runs as
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    next_start: float = 0.0  # monotonic time the next start may happen
    backoff: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    started: bool = False  # startup probe passed (or none)
    readiness: Any = None  # probes.ProbeTracker
    liveness: Any = None
    startup: Any = None
    probing: bool = False
    post_start_pending: bool = False  # the postStart hook runs: not ready until it is done

    def ended(self, proc: Proc) -> None:
        self.before, self.previous, self.current = self.previous, proc, None

    def shows_terminated(self) -> bool:
        """The status shows the last instance's end as the container's state: it is not
        running, not waiting for anything, and will not start again (or is about to)."""
        return (
            self.current is None
            and self.previous is not None
            and not self.waiting_reason
            and self.next_start <= time.monotonic()
        )

    def last_terminated(self) -> Proc | None:
        """The instance the status reports as lastState, which `logs --previous` reads (the
        kubelet's rule): the last one that ended, unless that one is the state itself."""
        return self.before if self.shows_terminated() else self.previous

    def shown_restart_count(self) -> int:
        """restartCount as upstream reports it: the number of the newest instance, so a
        container that ended counts its restart only once the next instance exists."""
        newest = self.current or self.previous
        return newest.restart_count if newest is not None else self.restart_count

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))


def _containers(pod: dict[str, Any]) -> list[ContainerState]:
    spec = pod.get("spec") or {}
    out = [ContainerState(c, init=True) for c in spec.get("initContainers") or []]
    out += [ContainerState(c) for c in spec.get("containers") or []]
    return out


class PodWorker:
    def __init__(
        self,
        pod: dict[str, Any],
        sandbox: Sandbox,
        runtime: ContainerRuntime,
        state_dir: Path,
        node_ip: str,
        record: Callable[[dict[str, Any], str, str, str], None],
        changed: Callable[[str], None],
    ) -> None:
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.sandbox = sandbox
        self.runtime = runtime
        self.state_dir = state_dir
        self.node_ip = node_ip
        self.record = record  # (pod, type, reason, message) -> event
        self.changed = changed  # (uid) -> the agent publishes status soon
        self.containers = _containers(pod)
        self.started_at = now_rfc3339()
        self.terminating = False
        self._task: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self.teardown: asyncio.Task[None] | None = None  # the agent's stop of this pod
        self._kill_at: float | None = None  # monotonic deadline of the grace period
        self._kill_timer: asyncio.TimerHandle | None = None
        self._killed = asyncio.Event()  # the grace period is over: no more waiting
        # volumes: mounted once (before the first container starts); content kept current
        self.volumes_ready = False
        # the pod's pause (pid, start ticks) once its root is built: its death ends the
        # PID namespace, and with it every container of the pod
        self.pause: tuple[int, int | None] | None = None
        self.volumes_dirty = False  # a source (ConfigMap, Secret, the pod itself) changed
        # held while the pod's volumes are set up and due containers started: the agent's
        # tick and the pod's first start must not both mount (a second mount script would
        # write through the first one's bind mounts)
        self.start_lock = asyncio.Lock()
        self.next_volume_try = 0.0
        self.volume_backoff = 0.0

    # -- bookkeeping -------------------------------------------------------------------
    def by_name(self, name: str) -> ContainerState | None:
        return next((c for c in self.containers if c.name == name), None)

    def procs_file(self) -> Path:
        return self.state_dir / "procs.json"

    def save(self) -> None:
        procs = [
            p for c in self.containers for p in (c.before, c.previous, c.current) if p is not None
        ]
        save_procs(self.procs_file(), procs)
        meta = {
            "restart_counts": {c.name: c.restart_count for c in self.containers},
            "env": {c.name: c.env for c in self.containers},
            "started_at": self.started_at,
            "volumes_ready": self.volumes_ready,
        }
        (self.state_dir / "worker.json").write_text(json.dumps(meta))

    def adopt(self) -> None:
        """After an agent restart: pick the running processes back up."""
        try:
            meta = json.loads((self.state_dir / "worker.json").read_text())
        except (OSError, ValueError):
            meta = {}
        self.started_at = meta.get("started_at", self.started_at)
        self.volumes_ready = meta.get("volumes_ready") is True
        for c in self.containers:
            c.restart_count = int(meta.get("restart_counts", {}).get(c.name, 0))
            c.env = meta.get("env", {}).get(c.name, {})
        for proc in sorted(load_procs(self.procs_file()), key=lambda p: p.restart_count):
            c = self.by_name(proc.container)
            if c is None:
                continue
            if proc.restart_count == c.restart_count:
                c.current = proc
                c.started = True
                c.waiting_reason = ""
            else:
                c.before, c.previous = c.previous, proc
        for c in self.containers:
            self._make_trackers(c)
            if c.current is not None:
                self.runtime.watch(self.uid, c.current)

    def carry_over(self, restart_counts: dict[str, int], procs: list[Proc]) -> None:
        """This worker gives a new sandbox to a pod whose previous one is gone (the node
        was stopped or rebooted). Each app container's last run ended with it: its exit
        status is what its shim recorded, else 255 (as upstream reports after a reboot), and
        starting it again counts as a restart. Init containers run again."""
        last: dict[str, Proc] = {}
        earlier: dict[str, Proc] = {}
        for proc in sorted(procs, key=lambda p: p.restart_count):
            if proc.container in last:
                earlier[proc.container] = last[proc.container]
            last[proc.container] = proc
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        for c in self.containers:
            c.restart_count = int(restart_counts.get(c.name, 0))
            prev = last.get(c.name)
            if c.init or prev is None:
                continue
            if prev.exit_code is None:
                try:
                    prev.exit_code = int(Path(prev.exit_file).read_text().strip())
                except (OSError, ValueError):
                    prev.exit_code = 255
                prev.finished_at = now_rfc3339()
            c.before, c.previous = earlier.get(c.name), prev
            if policy == "Always" or (policy == "OnFailure" and prev.exit_code != 0):
                c.restart_count += 1

    # -- volumes -------------------------------------------------------------------------
    def volume_root(self) -> Path:
        return self.state_dir / "volumes"

    def volumes_failed(self) -> None:
        """Retry the volumes later: 1 s, doubling to 32 s (upstream backs off to ~2 min)."""
        self.volume_backoff = min(32.0, self.volume_backoff * 2) if self.volume_backoff else 1.0
        self.next_volume_try = time.monotonic() + self.volume_backoff

    def volumes_mounted(self) -> None:
        self.volumes_ready = True
        self.volume_backoff = 0.0
        self.save()

    # -- starting ------------------------------------------------------------------------
    def _make_trackers(self, c: ContainerState) -> None:
        spec = c.spec
        now = time.monotonic()
        c.readiness = _tracker(spec.get("readinessProbe"), "readiness", now)
        c.liveness = _tracker(spec.get("livenessProbe"), "liveness", now)
        c.startup = _tracker(spec.get("startupProbe"), "startup", now)
        c.started = c.startup is None or c.started
        c.ready = False

    def start_container(self, c: ContainerState, env: dict[str, str]) -> None:
        spec = c.spec
        image = str(spec.get("image", ""))
        command = [podenv.expand(x, env) for x in spec.get("command") or []] or None
        args = [podenv.expand(x, env) for x in spec.get("args") or []] or None
        resolved = images.resolve(image, command, args)
        if resolved.argv is None:
            first = c.waiting_reason != resolved.reason
            c.waiting_reason, c.waiting_message = resolved.reason, resolved.message
            c.next_start = time.monotonic() + 30
            if first:
                self.record(
                    self.pod,
                    "Warning",
                    "Failed",
                    f'Failed to pull image "{image}": {resolved.message}',
                )
            self.changed(self.uid)
            return
        if c.restart_count == 0 and c.current is None and c.previous is None:
            self.record(
                self.pod,
                "Normal",
                "Pulled",
                f'Container image "{image}" already present on machine',
            )
        try:
            sec = security.container_security(self.pod.get("spec") or {}, spec)
            refused = security.non_root_error(sec, self._pod_ref(), c.name)
        except security.ConfigError as e:
            refused = str(e)
        if refused is not None:
            first = c.waiting_message != refused
            c.waiting_reason, c.waiting_message = "CreateContainerConfigError", refused
            c.next_start = time.monotonic() + BACKOFF_INITIAL
            if first:
                self.record(self.pod, "Warning", "Failed", f"Error: {refused}")
            self.changed(self.uid)
            return
        c.env = env
        proc = self.runtime.start(
            self.uid,
            self.sandbox,
            c.name,
            c.restart_count,
            resolved.argv,
            env,
            wd if isinstance(wd := spec.get("workingDir"), str) and wd else None,
            self.state_dir / "logs" / c.name,
            stdin=bool(c.spec.get("stdin")),
            privileges=security.privileges_argv(sec),
        )
        c.current = proc
        c.waiting_reason = c.waiting_message = ""
        self._make_trackers(c)
        self.save()
        self.record(self.pod, "Normal", "Created", f"Created container {c.name}")
        self.record(self.pod, "Normal", "Started", f"Started container {c.name}")
        post_start = _hook(c.spec, "postStart")
        if post_start is not None:
            c.post_start_pending = True
            task = asyncio.get_running_loop().create_task(self._post_start(c, proc, post_start))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)
        self.changed(self.uid)

    # -- lifecycle hooks -----------------------------------------------------------------
    def _pod_ref(self) -> str:
        m = self.pod["metadata"]
        return f"{m.get('name')}_{m.get('namespace')}({self.uid})"

    def privileges(self, c: ContainerState) -> list[str]:
        """What runs in the container runs as the container does (a container that could
        not start for its securityContext has nothing running to exec into)."""
        try:
            sec = security.container_security(self.pod.get("spec") or {}, c.spec)
        except security.ConfigError:
            sec = security.Security(caps=frozenset())
        return security.privileges_argv(sec)

    def exec_prefix(self, c: ContainerState) -> list[str]:
        """The argv prefix for a command run in container `c` (exec probes, hooks)."""
        return [*self.sandbox.nsenter(), *self.privileges(c)]

    async def _run_hook(
        self, c: ContainerState, handler: dict[str, Any], timeout: float
    ) -> str | None:
        return await hooks.run_hook(
            handler,
            container=c.name,
            pod=self._pod_ref(),
            pod_ip=self.sandbox.ip,
            exec_prefix=self.exec_prefix(c),
            env={"PATH": DEFAULT_PATH, **c.env},
            container_ports=c.spec.get("ports") or [],
            netns=self.sandbox.netns,
            timeout=timeout,
        )

    async def _post_start(self, c: ContainerState, proc: Proc, handler: dict[str, Any]) -> None:
        """postStart runs beside the container; if it fails the container is killed and
        restarted by its restartPolicy (kuberuntime startContainer)."""
        try:
            error = await self._run_hook(c, handler, POST_START_TIMEOUT)
        finally:
            c.post_start_pending = False
        if c.current is not proc:
            return
        if error is not None:
            self.record(self.pod, "Warning", "FailedPostStartHook", error)
            await self.stop_container(c, self.grace(), "FailedPostStartHook")
        self.changed(self.uid)

    def grace(self) -> float:
        value = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return float(value) if isinstance(value, int) and value >= 0 else 30.0

    async def stop_container(self, c: ContainerState, grace: float, message: str) -> None:
        """Upstream's killContainer: the preStop hook (while grace > 0) counts against the
        grace period, then SIGTERM with what is left (at least 2 s after a hook), then
        SIGKILL."""
        proc = c.current
        if proc is None:
            return
        self.record(self.pod, "Normal", "Killing", message)
        pre_stop = _hook(c.spec, "preStop")
        if pre_stop is not None and grace > 0 and not self._killed.is_set():
            started = time.monotonic()
            hook = asyncio.ensure_future(self._run_hook(c, pre_stop, grace))
            killed = asyncio.ensure_future(self._killed.wait())
            await asyncio.wait({hook, killed}, timeout=grace, return_when="FIRST_COMPLETED")
            killed.cancel()
            if hook.done():
                error = hook.result()
                if error is not None:
                    self.record(self.pod, "Warning", "FailedPreStopHook", error)
            else:
                hook.cancel()  # out of time: upstream logs it and goes on to SIGTERM
                await asyncio.gather(hook, return_exceptions=True)
            grace = max(grace - int(time.monotonic() - started), MIN_GRACE_AFTER_HOOK)
        if self._killed.is_set():
            grace = 0.0
        await self.runtime.stop([proc], grace)

    def shorten_grace(self, grace: float) -> None:
        """A later deletion with a shorter grace period (or a forced one): whatever still
        runs when it ends is killed then, hooks or not."""
        deadline = time.monotonic() + max(0.0, grace)
        if self._kill_at is not None and deadline >= self._kill_at:
            return
        self._kill_at = deadline
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self._kill_timer = asyncio.get_running_loop().call_later(max(0.0, grace), self._kill_all)

    def _kill_all(self) -> None:
        self._killed.set()
        for c in self.containers:
            if c.current is not None:
                self.runtime.signal(c.current, signal.SIGKILL)

    def on_exit(self, proc: Proc) -> None:
        c = self.by_name(proc.container)
        if c is None or c.current is not proc:
            return
        c.ended(proc)
        c.ready = False
        ran = time.time() - _parse_time(proc.started_at)
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        if self.terminating or (c.init and proc.exit_code == 0):
            pass
        elif (
            policy == "Always"
            or (policy == "OnFailure" and proc.exit_code != 0)
            or (c.init and policy != "Never" and proc.exit_code != 0)
        ):
            c.restart_count += 1
            if ran >= BACKOFF_RESET_AFTER:
                c.backoff = 0.0
            delay = c.backoff
            c.backoff = BACKOFF_INITIAL if c.backoff == 0 else min(BACKOFF_MAX, c.backoff * 2)
            c.next_start = time.monotonic() + delay
            if delay > 0:
                c.waiting_reason = "CrashLoopBackOff"
                c.waiting_message = (
                    f"back-off {int(delay)}s restarting failed container="
                    f"{c.name} pod={self.pod['metadata']['name']}_"
                    f"{self.pod['metadata'].get('namespace')}({self.uid})"
                )
                self.record(
                    self.pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {c.name} in pod "
                    f"{self.pod['metadata']['name']}_{self.pod['metadata'].get('namespace')}"
                    f"({self.uid})",
                )
        self.save()
        self.changed(self.uid)

    def due(self, env_for: Callable[[ContainerState], dict[str, str] | None]) -> None:
        """Start whatever may start now: init containers in order, then the app containers."""
        if self.terminating:
            return
        now = time.monotonic()
        for c in self.containers:
            if c.init:
                done = c.previous is not None and c.previous.exit_code == 0 and c.current is None
                if done:
                    continue
                if c.current is None and now >= c.next_start and not self._terminal_init(c):
                    env = env_for(c)
                    if env is not None:
                        self.start_container(c, env)
                return  # later containers wait for this init container
            if c.current is None and now >= c.next_start and self._should_run(c):
                env = env_for(c)
                if env is not None:
                    self.start_container(c, env)

    def _terminal_init(self, c: ContainerState) -> bool:
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        return c.previous is not None and c.previous.exit_code != 0 and policy == "Never"

    def _should_run(self, c: ContainerState) -> bool:
        if c.previous is None:
            return True
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        if policy == "Always":
            return True
        return policy == "OnFailure" and c.previous.exit_code != 0

    # -- probes --------------------------------------------------------------------------
    async def probe(self) -> None:
        for c in self.containers:
            if c.init or c.current is None or c.probing:
                continue
            for kind, tracker in (
                ("startup", c.startup),
                ("liveness", c.liveness),
                ("readiness", c.readiness),
            ):
                if self.terminating and kind != "readiness":
                    continue  # upstream stops liveness and startup probes of a deleted pod
                if c.post_start_pending:
                    continue
                if tracker is None or not tracker.should_probe(container_started=c.started):
                    continue
                c.probing = True
                try:
                    await self._run_probe(c, kind, tracker)
                finally:
                    c.probing = False
        for c in self.containers:
            ready_now = (
                c.current is not None
                and c.readiness is None
                and c.started
                and not c.post_start_pending
                and not self.terminating
            )
            if ready_now and not c.init and not c.ready:
                c.ready = True
                self.changed(self.uid)

    async def _run_probe(self, c: ContainerState, kind: str, tracker: Any) -> None:
        probe = c.spec.get(f"{kind}Probe") or {}
        result, output = await probes.run_probe(
            probe,
            pod_ip=self.sandbox.ip,
            exec_prefix=self.exec_prefix(c),
            env=c.env,
            container_ports=c.spec.get("ports") or [],
            netns=self.sandbox.netns,
        )
        after = tracker.record(result)
        if result == "Failure":
            label = kind.capitalize()
            self.record(self.pod, "Warning", "Unhealthy", f"{label} probe failed: {output}".strip())
        if kind == "readiness" and c.ready != (after == "Success"):
            c.ready = after == "Success"
            self.changed(self.uid)
        if kind == "startup" and after == "Success" and not c.started:
            c.started = True
            self.changed(self.uid)
        if kind in ("liveness", "startup") and tracker.needs_restart and c.current is not None:
            what = "liveness probe" if kind == "liveness" else "startup probe"
            await self.stop_container(
                c, self.grace(), f"Container {c.name} failed {what}, will be restarted"
            )

    # -- stopping ------------------------------------------------------------------------
    async def stop(self, grace: float) -> None:
        """Stop every container at once, each with its own preStop hook. Readiness probes
        and status go on meanwhile (the agent keeps publishing a terminating pod)."""
        self.terminating = True
        self._kill_at = time.monotonic() + max(0.0, grace) + MIN_GRACE_AFTER_HOOK
        running = [c for c in self.containers if c.current is not None]
        await asyncio.gather(
            *(self.stop_container(c, grace, f"Stopping container {c.name}") for c in running)
        )

    # -- status --------------------------------------------------------------------------
    def status(self, old: dict[str, Any]) -> dict[str, Any]:
        init_states = [c for c in self.containers if c.init]
        app = [c for c in self.containers if not c.init]
        init_done = all(
            c.previous is not None and c.previous.exit_code == 0 and c.current is None
            for c in init_states
        )
        statuses = [self._container_status(c) for c in app]
        init_statuses = [self._container_status(c) for c in init_states]
        phase = self._phase(init_done)
        all_ready = bool(app) and all(c.ready for c in app) and phase == "Running"
        now = now_rfc3339()
        conditions = _conditions(
            old,
            {
                "PodReadyToStartContainers": True,
                "Initialized": init_done,
                "Ready": all_ready,
                "ContainersReady": all_ready,
            },
            now,
        )
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.node_ip,
            "hostIPs": [{"ip": self.node_ip}],
            "podIP": self.sandbox.ip,
            "podIPs": [{"ip": self.sandbox.ip}],
            "startTime": old.get("startTime") or self.started_at,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass", "BestEffort"),
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if not all_ready and phase == "Running":
            not_ready = [c.name for c in app if not c.ready]
            for cond in conditions:
                if cond["type"] in ("Ready", "ContainersReady") and cond["status"] == "False":
                    cond["reason"] = "ContainersNotReady"
                    cond["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        return status

    def _phase(self, init_done: bool) -> str:
        app = [c for c in self.containers if not c.init]
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        if any(self._terminal_init(c) for c in self.containers if c.init):
            return "Failed"
        if not init_done:
            return "Pending"
        if any(c.current is not None for c in app):
            return "Running"
        if not all(c.previous is not None for c in app):
            return "Running" if any(c.previous is not None for c in app) else "Pending"
        # every app container has exited and none runs now
        if policy == "Always":
            return "Running"
        if all(c.previous is not None and c.previous.exit_code == 0 for c in app):
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"

    def _container_status(self, c: ContainerState) -> dict[str, Any]:
        spec = c.spec
        st: dict[str, Any] = {
            "name": c.name,
            "image": spec.get("image", ""),
            "imageID": "",
            "ready": c.ready,
            "restartCount": c.shown_restart_count(),
            "started": c.current is not None and c.started,
        }
        if c.current is not None:
            st["state"] = {"running": {"startedAt": c.current.started_at}}
            known = c.current.container_pid
            pid = ContainerRuntime.container_pid(c.current)
            if not pid:  # the shim has not started it yet: publish again shortly
                asyncio.get_running_loop().call_later(0.05, self.changed, self.uid)
            elif not known:
                self.save()  # an adopting agent must report the same containerID
            st["containerID"] = f"kubesvc://{pid or c.current.pid}"
        elif not c.shows_terminated() or c.previous is None:
            waiting: dict[str, Any] = {"reason": c.waiting_reason or "ContainerCreating"}
            if c.waiting_message:
                waiting["message"] = c.waiting_message
            st["state"] = {"waiting": waiting}
        else:
            st["state"] = {"terminated": _terminated(c.previous)}
            st["containerID"] = f"kubesvc://{c.previous.container_pid or c.previous.pid}"
        last = c.last_terminated()
        st["lastState"] = {"terminated": _terminated(last)} if last is not None else {}
        return st


def _terminated(p: Proc) -> dict[str, Any]:
    code = p.exit_code if p.exit_code is not None else 0
    return {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": p.started_at,
        "finishedAt": p.finished_at or p.started_at,
        "containerID": f"kubesvc://{p.container_pid or p.pid}",
    }


def _conditions(old: dict[str, Any], wanted: dict[str, bool], now: str) -> list[dict[str, Any]]:
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    out = []
    for ctype in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
        status = "True" if wanted[ctype] else "False"
        prev = previous.get(ctype)
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
        out.append(
            {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
        )
    if "PodScheduled" in previous:
        out.append(previous["PodScheduled"])
    return out


def _hook(spec: dict[str, Any], which: str) -> dict[str, Any] | None:
    lifecycle = spec.get("lifecycle")
    handler = lifecycle.get(which) if isinstance(lifecycle, dict) else None
    return handler if isinstance(handler, dict) else None


def _tracker(probe: dict[str, Any] | None, kind: str, now: float) -> Any:
    if not probe:
        return None
    return probes.ProbeTracker(kind, probe, now)  # type: ignore[arg-type]


def _parse_time(ts: str) -> float:
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return time.time()


def write_pod_files(
    files_dir: Path,
    pod: dict[str, Any],
    ip: str,
    dns_ip: str,
    cluster_domain: str,
) -> None:
    files_dir.mkdir(parents=True, exist_ok=True)
    try:
        host_resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        host_resolv = ""
    try:
        node_hosts = Path("/etc/hosts").read_text()
    except OSError:
        node_hosts = ""
    (files_dir / "hosts").write_text(
        podfiles.hosts_file(pod, ip, cluster_domain, node_hosts=node_hosts)
    )
    (files_dir / "resolv.conf").write_text(
        podfiles.resolv_conf(pod, dns_ip, cluster_domain, host_resolv)
    )
    (files_dir / "hostname").write_text(podfiles.hostname_file(pod))
    # what the sandbox binds at the service-account path: empty, so a pod without the token
    # volume (automountServiceAccountToken: false) has no credentials there; the ServiceAccount
    # admission's projected volume is mounted over it with the pod's own token
    sa = files_dir / "serviceaccount"
    sa.mkdir(mode=0o700, exist_ok=True)
    sa.chmod(0o700)
    for stale in ("token", "ca.crt", "namespace"):  # what earlier versions wrote there
        (sa / stale).unlink(missing_ok=True)
