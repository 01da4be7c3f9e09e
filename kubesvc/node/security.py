"""A container's effective securityContext and the argv that applies it (pure).

Upstream's rules (pkg/securitycontext, DetermineEffectiveSecurityContext): the container's
runAsUser, runAsGroup and runAsNonRoot override the pod's; supplementalGroups and fsGroup
are the pod's. Capabilities start from the container runtime's default set (Docker's 14,
what containerd gives), `drop` then `add` apply, "ALL" meaning every capability.

A container process runs, inside its pod's namespaces, under `setpriv` (util-linux): it
sets the user, group and supplementary groups, limits the capability bounding set (root's
capabilities after exec are the bounding set; any other user has none) and sets
no_new_privs unless the container may escalate. A read-only root filesystem is a mount
namespace of the container's own (`unshare --mount`) in which the pod's root is remounted
read-only. A privileged container keeps every capability and never gets no_new_privs.

Stored objects are read defensively: a field of the wrong type counts as unset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# containerd's and Docker's default capability set
DEFAULT_CAPS = frozenset(
    {
        "chown",
        "dac_override",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "net_bind_service",
        "net_raw",
        "sys_chroot",
        "mknod",
        "audit_write",
        "setfcap",
    }
)
# every capability Linux 6.x knows, in number order (capability.h)
ALL_CAPS = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
MAX_ID = 2**31 - 1  # upstream's bound on a user or group id


class ConfigError(ValueError):
    """The container cannot be started as configured (CreateContainerConfigError)."""


@dataclass(frozen=True)
class Security:
    """What one container runs as. `caps` is None for a privileged container (all)."""

    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    caps: frozenset[str] | None = DEFAULT_CAPS
    no_new_privs: bool = True
    read_only_root: bool = False
    run_as_non_root: bool = False
    run_as_user_set: bool = False

    @property
    def privileged(self) -> bool:
        return self.caps is None


def _id(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        return None
    return value


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def cap_name(raw: Any) -> str | None:
    """A capability as upstream writes it ("NET_ADMIN", "CAP_NET_ADMIN", "ALL"), lowercase
    without the prefix; None for anything else."""
    if not isinstance(raw, str):
        return None
    name = raw.strip().lower()
    name = name[4:] if name.startswith("cap_") else name
    return name if name == "all" or name in ALL_CAPS else None


def _caps(container_sc: Mapping[str, Any]) -> frozenset[str]:
    spec = _dict(container_sc.get("capabilities"))
    caps = set(DEFAULT_CAPS)
    for key in ("drop", "add"):
        values = spec.get(key)
        for raw in values if isinstance(values, list) else []:
            name = cap_name(raw)
            if name is None:
                verb = "to add" if key == "add" else "to drop"
                raise ConfigError(f'unknown capability "{str(raw)[:64]}" {verb}')
            if key == "drop":
                caps = set() if name == "all" else caps - {name}
            else:
                caps = set(ALL_CAPS) if name == "all" else caps | {name}
    return frozenset(caps)


def container_security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> Security:
    """The effective securityContext of `container` in a pod with `pod_spec`; ConfigError
    for what no container can run with (an unknown capability)."""
    psc = _dict(pod_spec.get("securityContext"))
    csc = _dict(container.get("securityContext"))

    def pick(key: str) -> Any:
        return csc[key] if csc.get(key) is not None else psc.get(key)

    uid = _id(pick("runAsUser"))
    gid = _id(pick("runAsGroup"))
    groups: list[int] = []
    raw_groups = psc.get("supplementalGroups")
    for g in raw_groups if isinstance(raw_groups, list) else []:
        if (n := _id(g)) is not None and n not in groups:
            groups.append(n)
    if (fs_group := _id(psc.get("fsGroup"))) is not None and fs_group not in groups:
        groups.append(fs_group)
    privileged = csc.get("privileged") is True
    caps = None if privileged else _caps(csc)
    may_escalate = (
        privileged
        or csc.get("allowPrivilegeEscalation") is True
        or (caps is not None and "sys_admin" in caps)
    )
    return Security(
        uid=uid or 0,
        gid=gid or 0,
        groups=tuple(groups),
        caps=caps,
        no_new_privs=not may_escalate,
        read_only_root=csc.get("readOnlyRootFilesystem") is True,
        run_as_non_root=pick("runAsNonRoot") is True,
        run_as_user_set=uid is not None,
    )


def non_root_error(sec: Security, pod_ref: str, container: str) -> str | None:
    """Why runAsNonRoot refuses the container (upstream's verifyRunAsNonRoot wording), or
    None. The built-in images all run as root, as a user the image does not name would."""
    if not sec.run_as_non_root:
        return None
    pod = json.dumps(pod_ref)  # Go's %q
    if sec.run_as_user_set and sec.uid == 0:
        return f"container's runAsUser breaks non-root policy (pod: {pod}, container: {container})"
    if not sec.run_as_user_set:
        return (
            f"container has runAsNonRoot and image will run as root (pod: {pod}, "
            f"container: {container})"
        )
    return None


def privileges_argv(sec: Security) -> list[str]:
    """The argv prefix, run inside the pod's namespaces, that makes a process what the
    container runs as: the container's own command follows it (and so does what
    `kubectl exec` or an exec probe runs in it)."""
    argv: list[str] = []
    if sec.read_only_root:
        # a mount namespace of its own whose root is the pod's, read-only (mounts below it,
        # such as volumes, /proc and /dev, keep their own flags)
        argv += [
            "unshare",
            "--mount",
            "--propagation=private",
            "sh",
            "-c",
            'mount -o remount,bind,ro / && exec "$@"',
            "sh",
        ]
    argv += ["setpriv", f"--reuid={sec.uid}", f"--regid={sec.gid}"]
    argv.append("--groups=" + ",".join(map(str, sec.groups)) if sec.groups else "--clear-groups")
    if sec.caps is not None:
        kept = "".join(f",+{c}" for c in ALL_CAPS if c in sec.caps)
        argv += [f"--bounding-set=-all{kept}", "--inh-caps=-all"]
    if sec.no_new_privs:
        argv.append("--no-new-privs")
    argv.append("--")
    return argv
