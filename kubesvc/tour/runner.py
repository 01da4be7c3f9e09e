"""The tour's machinery: narration in one language, commands shown with their real output,
and checks that stop the tour when the cluster does not show what the narration claims."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
GRACE = 15  # --node-monitor-grace-period of the tour's cluster


class ClaimFailed(RuntimeError):
    """What the narration says is not what the cluster showed."""


@dataclass
class Tour:
    cluster: str
    lang: str = "en"
    pause: bool = False
    quiet: bool = False  # run a step for its effects only (steps before --step N)
    checks: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what later steps need

    @property
    def context(self) -> str:
        return f"kubesvc-{self.cluster}"

    def out(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)

    def title(self, number: int, ko: str, en: str, section: str) -> None:
        self.out(f"\n\033[1m[{number}] {ko if self.lang == 'ko' else en}\033[0m")
        self.out(f"    ({'노트' if self.lang == 'ko' else 'notes'}: {section})")

    def say(self, ko: str, en: str) -> None:
        self.out(f"\033[36m{ko if self.lang == 'ko' else en}\033[0m")

    def wait_key(self) -> None:
        if self.pause and not self.quiet and sys.stdin.isatty():
            input("(Enter)")

    def check(self, ok: bool, ko: str, en: str, detail: str = "") -> None:
        """The claim, checked against what the commands showed."""
        claim = ko if self.lang == "ko" else en
        if not ok:
            raise ClaimFailed(f"{claim}{': ' + detail if detail else ''}")
        self.checks.append(claim)
        self.out(f"\033[32m  ✓ {claim}\033[0m")

    def run(
        self, argv: list[str], prompt: str, stdin: str | None = None, show: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if show:
            self.out(f"{prompt} {' '.join(argv[1:] if prompt != '$' else argv)}")
        res = subprocess.run(
            argv, input=stdin, text=True, capture_output=True, check=False, timeout=120
        )
        if show and (res.stdout + res.stderr).strip():
            self.out((res.stdout + res.stderr).rstrip("\n"))
        return res

    def kubectl(self, *args: str, stdin: str | None = None, show: bool = True) -> str:
        return self.run(
            ["kubectl", "--context", self.context, *args], "$ kubectl", stdin, show
        ).stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", show=False) or "{}")

    def kubesvc(self, *args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "kubesvc.cli.main", *args]
        if show:
            self.out(f"$ kubesvc {' '.join(args)}")
        res = subprocess.run(argv, text=True, capture_output=True, check=False, timeout=180)
        if show and (res.stdout + res.stderr).strip():
            self.out((res.stdout + res.stderr).rstrip("\n"))
        return res

    def pod_exec(self, pod: str, *cmd: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["kubectl", "--context", self.context, "exec", pod, "--", *cmd]
        return self.run(argv, "$ kubectl", show=show)

    def on_host(self, host: str, *cmd: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        """A command on one of the cluster's outside hosts."""
        if show:
            self.out(f"{host}$ {' '.join(cmd)}")
        res = self.kubesvc("host", "exec", host, "--name", self.cluster, "--", *cmd, show=False)
        if show:
            if res.stdout.strip():
                self.out(res.stdout.rstrip("\n"))
            if res.returncode:
                self.out(f"(exit {res.returncode})")
        return res

    def ready_pods(self, selector: str, n: int, namespace: str = "default") -> list[dict]:
        def ready(p: dict) -> bool:
            conds = p.get("status", {}).get("conditions", [])
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = self.kubectl_json("-n", namespace, "get", "pods", "-l", selector)
            items = [p for p in got.get("items", []) if not p["metadata"].get("deletionTimestamp")]
            if len(items) == n and all(ready(p) for p in items):
                return items
            time.sleep(0.2)
        raise ClaimFailed(
            f"pods {selector} did not become Ready (kubesvc status --name {self.cluster})"
        )

    def until(self, fn: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(every)
