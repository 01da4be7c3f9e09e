"""Applying a pod's volume plan (kubesvc/node/volumes.py): content on the node's disk under
the pod's state directory, bind mounts at the mountPaths inside the pod's mount namespace.

A configMap/secret/downwardAPI/projected volume is a directory kept by the atomic writer, so
the bind mount of the whole directory shows updates to running pods (a subPath mount, as
upstream, does not follow them). An emptyDir is a plain directory, or a tmpfs mounted inside
the pod's mount namespace for `medium: Memory`, so it disappears with the pod. Mounts are
made while the pod's own root is built (kubesvc/node/podroot.py): a mountPath that does not
exist is made in that root, never on the host.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubesvc.node import atomicwriter, images, podroot
from kubesvc.node.podroot import q
from kubesvc.node.volumes import MountPlan, PathFacts, VolumePlan, host_path_action


def volume_dir(root: Path, name: str) -> Path:
    # volume names are DNS labels once validated; anything else is hex-escaped so a hostile
    # name can never leave the pod's volume root
    safe = (
        name
        if name and name.replace("-", "").isalnum() and name.isascii()
        else name.encode("utf-8", "surrogateescape").hex()
    )
    return root / (safe or "_")


def _facts(path: str) -> PathFacts:
    try:
        return PathFacts(True, os.stat(path).st_mode)
    except OSError:
        return PathFacts(False)


def prepare(root: Path, plan: VolumePlan) -> str | None:
    """Bring one volume's content on disk up to date; the error that blocks it, if any."""
    if plan.error is not None:
        return plan.error
    d = volume_dir(root, plan.name)
    try:
        if plan.kind == "files":
            atomicwriter.write_payload(d, plan.files)
        elif plan.kind == "emptyDir":
            if not d.exists():
                d.mkdir(parents=True)
                d.chmod(0o777)
                if plan.owner:
                    os.chown(d, plan.owner, plan.owner)
        elif plan.kind == "hostPath":
            action, error = host_path_action(plan.host_path, plan.host_type, _facts(plan.host_path))
            if error is not None:
                return error
            if action == "mkdir":
                Path(plan.host_path).mkdir(mode=0o755, parents=True, exist_ok=True)
            elif action == "touch":
                Path(plan.host_path).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                fd = os.open(plan.host_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
                os.close(fd)
    except OSError as e:
        return f"{e.strerror or e}: {e.filename or d}"
    return None


def source_path(root: Path, plan: VolumePlan) -> str:
    return plan.host_path if plan.kind == "hostPath" else str(volume_dir(root, plan.name))


# the built-in images' own programs, at the paths their real images have them
IMAGE_FILES = {"agnhost": "/agnhost"}


def launcher_text(image: str) -> str:
    """A shell script that runs built-in image `image` with this agent's Python."""
    module = f"{images.PACKAGE}.{image}"
    return (
        f"#!/bin/sh\nexec {q(sys.executable)} -m {module} "
        f'--kubesvc-argv0={IMAGE_FILES[image]} "$@"\n'
    )


def write_launchers(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for image in IMAGE_FILES:
        tmp = bin_dir / f".{image}.tmp"
        tmp.write_text(launcher_text(image))
        tmp.chmod(0o755)
        tmp.replace(bin_dir / image)


def image_binds(pod: Mapping[str, Any], bin_dir: Path) -> list[tuple[str, str]]:
    """(launcher, path in the pod) for each built-in image a container of the pod uses, so
    `kubectl exec POD -- /agnhost ...` finds it where the real image has it."""
    spec = pod.get("spec") or {}
    containers = [
        c
        for key in ("initContainers", "containers")
        for c in (spec.get(key) if isinstance(spec.get(key), list) else [])
        if isinstance(c, dict)
    ]
    kinds = set()
    for c in containers:
        try:
            kinds.add(images.builtin_kind(images.parse_image(str(c.get("image") or ""))))
        except images.InvalidReference:
            continue
    return [(str(bin_dir / k), IMAGE_FILES[k]) for k in sorted(IMAGE_FILES) if k in kinds]


def mount_script(
    root: Path, plans: Sequence[VolumePlan], mounts: Sequence[MountPlan], pod_root: str
) -> str:
    """The shell lines, run while the pod's root is built (its tmpfs on `pod_root`, the
    host still visible), that mount every volume at its mountPath in the root. Pure, so
    what it does can be read in a test."""
    by_name = {p.name: p for p in plans}
    lines = []
    for p in plans:
        if p.kind == "emptyDir" and p.memory:
            size = f",size={p.size_limit}" if p.size_limit else ""
            size += f",uid={p.owner},gid={p.owner}" if p.owner else ""
            src = q(source_path(root, p))
            lines.append(f"mountpoint -q {src} || mount -t tmpfs -o mode=0777{size} tmpfs {src}")
    for m in mounts:
        p = by_name.get(m.volume)
        if p is None:
            continue
        src = source_path(root, p)
        if m.sub_path:
            src = f"{src}/{m.sub_path}"
            if p.kind in ("emptyDir", "hostPath"):
                # upstream creates a missing subPath inside a writable volume
                lines.append(f"[ -e {q(src)} ] || mkdir -p {q(src)}")
        s, t = q(src), q(podroot.inside(pod_root, m.path))
        lines.append(f"[ -e {s} ] || {{ echo 'subPath {m.sub_path} does not exist' >&2; exit 1; }}")
        if m.sub_path:
            # a link in the volume must not lead the mount out of it (CVE-2017-1002101)
            base = q(source_path(root, p))
            lines.append(
                f'case "$(realpath {s})" in "$(realpath {base})"|"$(realpath {base})"/*) ;; '
                f"*) echo {q(f'subpath {m.sub_path!r} not within volume path')} >&2; exit 1;; esac"
            )
        # the mount point is made in the pod's own root, never on the host
        lines.append(f"if [ -d {s} ]; then made {t}; else touched {t}; fi")
        lines.append(f"mount --bind {s} {t}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {t}")
    if not lines:
        return ""
    return mount_point_functions(pod_root) + "\n".join(lines) + "\n" + layers_done(pod_root)


def layers_done(pod_root: str) -> str:
    """After the mounts: each layered directory read-only again, as the host's directory
    was (the mounts on it stay as they are), and the layers' tmpfs out of the root (the
    overlays keep it)."""
    r = q(pod_root.rstrip("/"))
    return (
        f"if [ -d {r}/{LAYERS} ]; then cd {r}\n"
        f'  while IFS= read -r _d; do mount -o remount,bind,ro "$_d"; done < {LAYERS}/made\n'
        f"  umount -l {LAYERS}; rmdir {LAYERS}\n"
        "fi\n"
    )


LAYERS = ".kubesvc-layers"  # in the root while it is built; gone before the pod starts


def mount_point_functions(pod_root: str) -> str:
    """Shell functions that make a mount point in the root: `made DIR` and `touched FILE`.
    A mount point under a read-only host directory (a mountPath under /usr, say) that
    does not exist there gets that directory a layer, an overlay whose upper half is a
    tmpfs, as a container's writable layer would let a runtime make it; layers_done makes
    it read-only again. Paths in the overlay's options are relative to the root, so the
    state directory's name cannot break them."""
    r = q(pod_root.rstrip("/"))
    return f"""layer() {{
  cd {r}; _rel=${{1#{r}/}}
  case $_rel in *[,:\\\\]*) echo "cannot make a mount point under $1" >&2; exit 1;; esac
  if [ ! -d {LAYERS} ]; then mkdir {LAYERS}; mount -t tmpfs -o mode=0700 tmpfs {LAYERS}; fi
  _n=$((${{_n:-0}} + 1)); _l={LAYERS}/$_n; mkdir $_l $_l/up $_l/work
  mount -t overlay overlay -o "lowerdir=$_rel,upperdir=$_l/up,workdir=$_l/work" "$_rel"
  printf '%s\\n' "$_rel" >> {LAYERS}/made
}}
made() {{
  [ -d "$1" ] && return 0
  mkdir -p "$1" 2>/dev/null && return 0
  _a=$1; while [ ! -e "$_a" ]; do _a=$(dirname "$_a"); done
  layer "$_a"; mkdir -p "$1"
}}
touched() {{
  [ -e "$1" ] && return 0
  made "$(dirname "$1")"
  ( : >> "$1" ) 2>/dev/null && return 0  # a subshell: a failed redirection ends it only
  layer "$(dirname "$1")"; : >> "$1"
}}
"""
