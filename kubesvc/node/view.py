"""What the node agent exposes about the pods it runs, for its HTTP server (logs, exec,
port-forward) to use. The agent implements `PodRuntimeView`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ContainerStdin:
    """A running container's stdin (`stdin: true`): a FIFO that attach writes to."""

    fifo: Path
    once: bool  # stdinOnce: the container's stdin ends when the first attach does
    close: Callable[[], None]  # end the container's stdin (once every writer is gone)


@dataclass(frozen=True)
class Sandbox:
    """A pod's namespaces on this node. Container processes run under `nsenter()`."""

    namespace: str
    name: str
    uid: str
    netns: Path  # network namespace file (/run/netns/...)
    uts: Path  # UTS namespace file (hostname = pod name)
    mnt: Path  # mount namespace file: the pod's own root (kubesvc/node/podroot.py)
    ip: str
    hostname: str
    host_network: bool = False  # netns is the node's own: the pod has no namespace of its own
    ipc: Path | None = None  # IPC namespace file (None: the host's, `hostIPC`)
    pid: Path | None = None  # PID namespace file, held by the pod's pause (None: `hostPID`)
    user: Path | None = None  # user namespace file (`hostUsers: false`), ids from id_base on
    id_base: int = 0  # the host uid and gid of the pod's root

    def nsenter(self, pid: bool = True, user: bool = True) -> list[str]:
        """argv prefix that runs a command inside the pod's namespaces. Entering the PID
        namespace makes nsenter fork (its child runs the command): a container's shim
        enters that one itself (`pid=False`), so the container is its own child. The pod's
        root is built outside its user namespace (`user=False`)."""
        argv = ["nsenter", f"--net={self.netns}", f"--uts={self.uts}"]
        if user and self.user is not None:
            # nsenter enters the user namespace last, once it has entered the others
            argv.append(f"--user={self.user}")
        if self.ipc is not None:
            argv.append(f"--ipc={self.ipc}")
        if pid and self.pid is not None:
            argv.append(f"--pid={self.pid}")
        argv += [f"--mount={self.mnt}", "--"]
        return argv


class PodRuntimeView(Protocol):
    def sandbox(self, namespace: str, name: str) -> Sandbox | None:
        """The running pod's sandbox, or None if this node does not run it."""
        ...

    def containers(self, namespace: str, name: str) -> list[str]:
        """Container names of the pod, in spec order."""
        ...

    def log_path(self, namespace: str, name: str, container: str, previous: bool) -> Path | None:
        """The container's current (or previous instance's) log file, if any."""
        ...

    def container_env(self, namespace: str, name: str, container: str) -> dict[str, str]:
        """The environment the container was started with (exec uses it too)."""
        ...

    def working_dir(self, namespace: str, name: str, container: str) -> str | None: ...

    def stdin(self, namespace: str, name: str, container: str) -> ContainerStdin | None:
        """The running container's stdin, if it has one (`stdin: true`)."""
        ...

    def privileges(self, namespace: str, name: str, container: str) -> list[str]:
        """The argv prefix (after `nsenter()`) that runs a command as the container runs:
        its user, capabilities, no_new_privs (kubesvc/node/security.py)."""
        ...

    def running(self, namespace: str, name: str, container: str) -> bool:
        """Whether the container's current instance is running (attach ends with it)."""
        ...
