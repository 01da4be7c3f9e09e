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


def spawn(
    cmd: list[str], log_path: Path, ready: str, timeout: float
) -> tuple[subprocess.Popen[bytes], re.Match[str]]:
    """Start a process logging to a file (a pipe nobody reads could block it) and wait for
    a line matching `ready`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_bytes()[start:].decode(errors="replace")
        m = re.search(ready, text)
        if m:
            return proc, m
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    stop_process(proc)
    text = log_path.read_bytes()[start:].decode(errors="replace")
    raise RuntimeError(f"{cmd[3]} did not start:\n{text}")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class ApiServerProcess:
    data_dir: Path
    port: int = 0
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
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
        self.proc, m = spawn(
            cmd,
            self.data_dir.parent / f"{self.data_dir.name}.log",
            r"listening on https://[^:]+:(\d+)",
            timeout,
        )
        self.port = int(m.group(1))

    def kill9(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        stop_process(self.proc)
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
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "kubesvc.cli.main",
            "controller-manager",
            "--kubeconfig",
            str(self.kubeconfig),
            "--leader-elect=false",  # one controller-manager per API server here
        ]
        if self.controllers:
            cmd += ["--controllers", self.controllers]
        log_path = self.kubeconfig.parent.parent / "controller-manager.log"
        self.proc, _ = spawn(cmd, log_path, r"controller-manager running", timeout)

    def stop(self) -> None:
        stop_process(self.proc)
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
