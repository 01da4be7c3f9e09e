"""Start real kubesvc processes and drive them with the real kubectl."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KUBECTL = shutil.which("kubectl") or "kubectl"


@dataclass
class ApiServerProcess:
    data_dir: Path
    port: int = 0
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[str] | None = None
    cache_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.cache_dir = self.data_dir.parent / f"{self.data_dir.name}-kubecache"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self, timeout: float = 20.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "kubesvc.cli.main",
            "apiserver",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on https://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return
        self.stop()
        raise RuntimeError("API server did not start:\n" + "".join(lines))

    def kill9(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.cache_dir)
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [KUBECTL, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def out(self, *args: str, input: str | None = None) -> str:
        return self.kubectl(*args, input=input).stdout

    def fails(self, *args: str, input: str | None = None) -> str:
        res = self.kubectl(*args, input=input, check=False)
        assert res.returncode != 0, (
            f"kubectl {' '.join(args)} unexpectedly succeeded:\n{res.stdout}"
        )
        return res.stderr


@dataclass
class ControllerManagerProcess:
    kubeconfig: Path
    controllers: str = ""
    proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "kubesvc.cli.main",
            "controller-manager",
            "--kubeconfig",
            str(self.kubeconfig),
        ]
        if self.controllers:
            cmd += ["--controllers", self.controllers]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "controller-manager running" in line:
                return
        self.stop()
        raise RuntimeError("controller-manager did not start:\n" + "".join(lines))

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll until predicate() is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
