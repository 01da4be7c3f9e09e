"""Merge a cluster's admin credentials into ~/.kube/config as context `kubesvc-NAME`.

Every change is a read-modify-write under an exclusive flock on a lock file beside the
kubeconfig (`.config.kubesvc-lock`), so concurrent `kubesvc up` and `down` runs never lose
each other's entries. kubectl's own protocol is honoured too: while kubesvc writes, it holds
`config.lock` (created exclusively, as client-go does), so a kubectl changing the file at the
same moment waits for neither side to be overwritten. The new contents go to a unique
temporary file in the same directory (mode 0600) that is renamed over the old one, so a
reader sees the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

KUBECTL_LOCK_WAIT = 5.0  # how long to wait for a kubectl that holds config.lock


class KubeconfigError(RuntimeError):
    """The kubeconfig could not be read or changed; the message says what to do."""


def default_path() -> Path:
    env = os.environ.get("KUBECONFIG", "").split(":")[0]
    return Path(env) if env else Path.home() / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise KubeconfigError(
                f"{path} is not valid YAML ({e}); fix it or move it away and run this again"
            ) from e
        if isinstance(data, dict):
            return data
        raise KubeconfigError(f"{path} is not a kubeconfig; fix it or move it away")
    return {"apiVersion": "v1", "kind": "Config", "preferences": {}}


def _upsert(items: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in items if i.get("name") != entry["name"]] + [entry]


def context_name(cluster: str) -> str:
    return f"kubesvc-{cluster}"


def named(admin: dict[str, Any], cluster: str) -> dict[str, Any]:
    """The server's own kubeconfig, renamed to this cluster's context."""
    name = context_name(cluster)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": f"{name}-admin", "user": admin["users"][0]["user"]}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
        "preferences": {},
    }


def merge(path: Path, config: dict[str, Any]) -> None:
    """Add (or replace) `config`'s clusters, users and contexts and make its context current."""

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        for section in ("clusters", "users", "contexts"):
            items = list(current.get(section) or [])
            for entry in config[section]:
                items = _upsert(items, entry)
            current[section] = items
        current["current-context"] = config["current-context"]
        return current

    _update(path, change)


def remove(path: Path, cluster: str) -> None:
    """Drop the cluster's context, cluster and user; clear current-context if it was this one."""
    name = context_name(cluster)
    wanted = (("clusters", name), ("users", f"{name}-admin"), ("contexts", name))

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        present = any(
            i.get("name") == key for section, key in wanted for i in current.get(section) or []
        )
        if not present and current.get("current-context") != name:
            return None
        for section, key in wanted:
            current[section] = [i for i in current.get(section) or [] if i.get("name") != key]
        if current.get("current-context") == name:
            current["current-context"] = ""
        return current

    if path.exists():
        _update(path, change)


def _update(path: Path, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    target = path.resolve() if path.is_symlink() else path
    if not target.parent.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(target):
        data = change(_load(target))
        if data is not None:
            _write(target, data)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.kubesvc-lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _kubectl_lock(path):
            yield
    finally:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def _kubectl_lock(path: Path) -> Iterator[None]:
    """client-go's lock: `<file>.lock`, created with O_EXCL and removed afterwards."""
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + KUBECTL_LOCK_WAIT
    while True:
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            break
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise KubeconfigError(
                    f"{lock} exists: a kubectl is changing {path}, or one left the lock "
                    "behind; remove it if no kubectl is running and try again"
                ) from None
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _write(path: Path, data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".kubesvc-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError, PermissionError):
            st = path.stat()
            if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
                os.chown(tmp, st.st_uid, st.st_gid)  # root updating a user's kubeconfig
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
