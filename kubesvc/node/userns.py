"""Whether a pod gets a user namespace of its own, and which host ids it maps to (pure).

Every pod gets one where the kernel allows it, unless it needs the host's users: root in
the pod is then an unprivileged id on the host. `hostUsers: false` always asks for one,
as upstream; `hostUsers: true` never gets one. Left unset, a pod keeps the host's users
when a user namespace would change what it may do:
- a host namespace (`hostNetwork`, `hostPID`, `hostIPC`), which upstream forbids with one;
- a privileged container, or a capability beyond the default set: its power is over the
  pod's network namespace, which the node made and the host's users own;
- a hostPath or persistentVolumeClaim volume: files on the host keep host owners, which
  the pod's root could not write (upstream maps them with idmapped mounts, which
  util-linux's `mount` here cannot make);
- a user or group id of 65536 or more, which the pod's range does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubesvc.node import security

SIZE = 65536  # ids per pod, as upstream's kubelet gives each pod
HOST_VOLUMES = ("hostPath", "persistentVolumeClaim")
ID_FIELDS = ("runAsUser", "runAsGroup")


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    keys = ("initContainers", "containers", "ephemeralContainers")
    return [c for k in keys for c in _list(spec.get(k)) if isinstance(c, Mapping)]


def _ids(spec: Mapping[str, Any]) -> Iterable[Any]:
    psc = _dict(spec.get("securityContext"))
    yield from (psc.get(k) for k in (*ID_FIELDS, "fsGroup"))
    yield from _list(psc.get("supplementalGroups"))
    for c in _containers(spec):
        csc = _dict(c.get("securityContext"))
        yield from (csc.get(k) for k in ID_FIELDS)


def host_users_reason(spec: Mapping[str, Any], kernel_allows: bool) -> str | None:
    """Why the pod with `spec` shares the host's users; None when it gets a user namespace."""
    host_users = spec.get("hostUsers")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            return f"{key}"
    if host_users is False:
        return None
    if host_users is True:
        return "hostUsers: true"
    if not kernel_allows:
        return "the kernel has no user namespaces"
    for c in _containers(spec):
        csc = _dict(c.get("securityContext"))
        if csc.get("privileged") is True:
            return f"container {str(c.get('name'))[:64]} is privileged"
        for raw in _list(_dict(csc.get("capabilities")).get("add")):
            name = security.cap_name(raw)
            if name is not None and name not in security.DEFAULT_CAPS:
                return f"container {str(c.get('name'))[:64]} adds {name.upper()}"
    for v in _list(spec.get("volumes")):
        kind = next((k for k in HOST_VOLUMES if isinstance(_dict(v).get(k), Mapping)), None)
        if kind is not None:
            return f"volume {str(_dict(v).get('name'))[:64]} is a {kind}"
    for value in _ids(spec):
        if isinstance(value, int) and not isinstance(value, bool) and value >= SIZE:
            return f"id {value} is beyond a pod's {SIZE}"
    return None


def free_base(taken: Iterable[int]) -> int:
    """The host id a new pod's root maps to: the lowest multiple of SIZE from SIZE on that
    no pod of the node holds."""
    used = set(taken)
    n = 1
    while n * SIZE in used:
        n += 1
    return n * SIZE
