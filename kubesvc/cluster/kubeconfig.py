"""Merge a cluster's admin credentials into ~/.kube/config as context `kubesvc-NAME`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def default_path() -> Path:
    env = os.environ.get("KUBECONFIG", "").split(":")[0]
    return Path(env) if env else Path.home() / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
        if isinstance(data, dict):
            return data
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
    current = _load(path)
    for section in ("clusters", "users", "contexts"):
        items = list(current.get(section) or [])
        for entry in config[section]:
            items = _upsert(items, entry)
        current[section] = items
    current["current-context"] = config["current-context"]
    _write(path, current)


def remove(path: Path, cluster: str) -> None:
    if not path.exists():
        return
    current = _load(path)
    name = context_name(cluster)
    for section, key in (("clusters", name), ("users", f"{name}-admin"), ("contexts", name)):
        current[section] = [i for i in current.get(section) or [] if i.get("name") != key]
    if current.get("current-context") == name:
        current["current-context"] = ""
    _write(path, current)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".kubesvc-tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
