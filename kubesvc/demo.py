"""`./run demo`: start an API server and show the real kubectl working against it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: database
spec:
  selector: {app: database}
  ports:
  - name: mysql
    port: 3306
"""

EXTERNAL = """apiVersion: v1
kind: Service
metadata:
  name: external-db
spec:
  type: ExternalName
  externalName: db.example.com
"""

STEPS: list[tuple[str, list[str], str | None]] = [
    ("Services the cluster starts with", ["get", "svc", "-A"], None),
    ("Create a Service; the API server allocates its ClusterIP", ["apply", "-f", "-"], SERVICE),
    ("An ExternalName Service is only a DNS alias", ["apply", "-f", "-"], EXTERNAL),
    (
        "A NodePort Service gets a port from 30000-32767",
        ["create", "service", "nodeport", "web", "--tcp=80:8080"],
        None,
    ),
    ("All Services, wide", ["get", "svc", "-o", "wide"], None),
    ("What kubectl describe shows", ["describe", "svc", "database"], None),
]


def _kubectl(env: dict[str, str], args: list[str], stdin: str | None) -> None:
    print(f"\n\033[1m$ kubectl {' '.join(args)}\033[0m", flush=True)
    subprocess.run(["kubectl", *args], input=stdin, text=True, env=env, check=False)


def main() -> int:
    if shutil.which("kubectl") is None:
        print("kubectl is not installed: apt-get install kubectl", file=sys.stderr)
        return 1
    data_dir = Path(tempfile.mkdtemp(prefix="kubesvc-demo-"))
    print(f"==> starting the kubesvc API server (data in {data_dir})", flush=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubesvc.cli.main",
            "apiserver",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        started = time.monotonic()
        for line in proc.stdout:
            m = re.search(r"listening on https://[^:]+:(\d+)", line)
            if m:
                port = m.group(1)
                break
        if port is None:
            print("the API server did not start", file=sys.stderr)
            return 1
        print(f"==> ready on https://127.0.0.1:{port} in {time.monotonic() - started:.2f} s")
        env = dict(
            os.environ,
            KUBECONFIG=str(data_dir / "kubeconfig"),
            KUBECACHEDIR=str(data_dir / "kubectl-cache"),
        )
        for title, args, stdin in STEPS:
            print(f"\n==> {title}")
            _kubectl(env, args, stdin)
        print(f"\n==> try it yourself: export KUBECONFIG={data_dir / 'kubeconfig'}")
        if sys.stdin.isatty():
            print("==> the API server keeps running; press Ctrl-C to stop it")
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
