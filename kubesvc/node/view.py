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
    mnt: Path  # mount namespace file (/etc/hosts, /etc/resolv.conf, /etc/hostname)
    ip: str
    hostname: str
    host_network: bool = False  # netns is the node's own: the pod has no namespace of its own

    def nsenter(self) -> list[str]:
        """argv prefix that runs a command inside the pod's namespaces."""
        return [
            "nsenter",
            f"--net={self.netns}",
            f"--uts={self.uts}",
            f"--mount={self.mnt}",
            "--",
        ]


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

    def running(self, namespace: str, name: str, container: str) -> bool:
        """Whether the container's current instance is running (attach ends with it)."""
        ...
