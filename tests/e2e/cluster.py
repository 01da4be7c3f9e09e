"""A real cluster for end-to-end tests: `kubesvc up` in a temporary KUBESVC_HOME, driven by
the real kubectl, always removed with `kubesvc down`."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import KUBECTL, wait_for

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


@dataclass
class Cluster:
    name: str
    env: dict[str, str]
    home: Path

    def kubesvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "kubesvc.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubesvc {' '.join(args)}: {res.stdout}\n{res.stderr}")
        return res

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [KUBECTL, *args],
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {res.stdout}\n{res.stderr}")
        return res

    def out(self, *args: str, input: str | None = None) -> str:
        return self.kubectl(*args, input=input).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.out(*args, "-o", "json"))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(self.json("get", "pods", "-l", selector)["items"])

    def running(self, selector: str, n: int) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")]
            ok = [p for p in pods if pod_ready(p)]
            return ok if len(ok) == n and len(pods) == n else None

        return wait_for(ready, timeout=30, what=f"{n} ready pods {selector}")  # type: ignore[no-any-return]

    def exec(self, pod: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("exec", pod, "--", *cmd, check=check)


def pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


@contextlib.contextmanager
def running_cluster(
    tmp: Path, prefix: str, *up_args: str, kubeconfig: Path | None = None
) -> Iterator[Cluster]:
    """A cluster with a unique name under `tmp`, up for the duration of the block."""
    assert os.geteuid() == 0, "the cluster tests run as root (network namespaces)"
    name = prefix + secrets.token_hex(3)
    env = dict(
        os.environ,
        KUBESVC_HOME=str(tmp / "home"),
        KUBECONFIG=str(kubeconfig or tmp / "kubeconfig"),
        KUBECACHEDIR=str(tmp / "kubecache"),
    )
    c = Cluster(name, env, tmp / "home")
    try:
        c.kubesvc("up", "--name", name, "--nodes", "2", *up_args)
        yield c
    finally:
        c.kubesvc("down", "--name", name, check=False)


def deploy_netexec(c: Cluster, name: str, replicas: int, *args: str) -> None:
    """A Deployment of agnhost netexec servers (HTTP on 8080) behind a Service on port 80,
    and a `client` pod to connect from; returns once all are Ready."""
    c.out(
        "create",
        "deployment",
        name,
        f"--image={AGNHOST}",
        f"--replicas={replicas}",
        "--",
        "/agnhost",
        "netexec",
        "--http-port=8080",
        *args,
    )
    c.out("expose", "deployment", name, "--port=80", "--target-port=8080")
    c.out("run", "client", "--image=busybox", "--command", "--", "sleep", "3600")
    c.running(f"app={name}", replicas)
    c.running("run=client", 1)
