"""Small builders and waits for the pod runtime tests: one busybox pod per test, applied as
JSON through the real kubectl."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.e2e.cluster import Cluster, pod_ready
from tests.e2e.harness import wait_for


def uniq(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def apply(c: Cluster, obj: dict[str, Any]) -> None:
    c.out("apply", "-f", "-", input=json.dumps(obj))


def busybox_pod(
    name: str, mounts: list[dict[str, Any]], vols: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "busybox",
        "command": ["sleep", "3600"],
        "volumeMounts": mounts,
    }
    container.update(extra)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name, "tier": "test"}},
        "spec": {
            "containers": [container],
            "volumes": vols,
            "terminationGracePeriodSeconds": 0,
        },
    }


def wait_ready(c: Cluster, name: str, timeout: float = 30) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = c.json("get", "pod", name)
        return pod if pod_ready(pod) else None

    return wait_for(ready, timeout=timeout, what=f"pod {name} ready")  # type: ignore[no-any-return]


def cat(c: Cluster, pod: str, path: str) -> str:
    return c.exec(pod, "cat", path).stdout
