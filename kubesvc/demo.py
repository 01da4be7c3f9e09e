"""`./run demo`: bring up a cluster and walk through why Services exist, with the real kubectl.

The cluster keeps running afterwards (`kubesvc down --name demo` removes it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

CLUSTER = "demo"
CONTEXT = f"kubesvc-{CLUSTER}"

DATABASE = """apiVersion: v1
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


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def kubectl(*args: str, stdin: str | None = None, show: bool = True) -> str:
    if show:
        print(f"$ kubectl {' '.join(args)}", flush=True)
    res = subprocess.run(
        ["kubectl", "--context", CONTEXT, *args],
        input=stdin,
        text=True,
        capture_output=True,
        check=False,
    )
    if show:
        print(res.stdout + res.stderr, end="", flush=True)
    return res.stdout


def wait_ready(selector: str, n: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(kubectl("get", "pods", "-l", selector, "-o", "json", show=False) or "{}")
        items = [p for p in pods.get("items", []) if not p["metadata"].get("deletionTimestamp")]
        ready = [
            p
            for p in items
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]
        if len(ready) == n == len(items):
            return ready
        time.sleep(0.2)
    raise SystemExit(f"pods {selector} did not become ready; see `kubesvc status --name {CLUSTER}`")


def main() -> int:
    if shutil.which("kubectl") is None:
        print("kubectl is not installed: apt-get install kubectl", file=sys.stderr)
        return 1
    say("Bring up a 2-node cluster (nodes and pods are network namespaces)")
    # a fresh cluster every time, so the walk-through starts from the same state
    subprocess.run(
        [sys.executable, "-m", "kubesvc.cli.main", "down", "--name", CLUSTER],
        check=False,
        capture_output=True,
    )
    up = subprocess.run(
        [sys.executable, "-m", "kubesvc.cli.main", "up", "--name", CLUSTER], check=False
    )
    if up.returncode != 0:
        return up.returncode
    kubectl("get", "nodes", "-o", "wide")

    say("A Service created before the pods: its address is injected into their environment")
    kubectl("apply", "-f", "-", stdin=DATABASE)
    say("Three kubia pods behind one Service; each pod has its own IP")
    kubectl("create", "deployment", "kubia", "--image=luksa/kubia", "--replicas=3")
    kubectl("expose", "deployment", "kubia", "--port=80", "--target-port=8080")
    kubectl("run", "client", "--image=busybox", "--command", "--", "sleep", "3600")
    pods = wait_ready("app=kubia", 3)
    wait_ready("run=client", 1)
    kubectl("get", "pods", "-o", "wide")
    kubectl("get", "svc,endpoints")

    say("The client pod found the database Service through environment variables")
    print("$ kubectl exec client -- env | grep DATABASE", flush=True)
    env = kubectl("exec", "client", "--", "env", show=False)
    print("".join(line + "\n" for line in sorted(env.splitlines()) if "DATABASE" in line))

    say("Pod to pod across nodes: each kubia pod answers with its own name")
    for p in pods:
        kubectl("exec", "client", "--", "curl", "-s", f"http://{p['status']['podIP']}:8080")

    say("Pods are ephemeral: a re-created pod comes back with a different IP")
    old = pods[0]
    kubectl("delete", "pod", old["metadata"]["name"])
    fresh = wait_ready("app=kubia", 3)
    kubectl("get", "pods", "-l", "app=kubia", "-o", "wide")
    kubectl("get", "endpoints", "kubia")
    new_ips = {p["status"]["podIP"] for p in fresh}
    print(f"{old['status']['podIP']} is gone; the endpoints now list {', '.join(sorted(new_ips))}")

    say("An ExternalName Service is only a DNS alias")
    kubectl("apply", "-f", "-", stdin=EXTERNAL)
    kubectl("get", "svc", "external-db")

    say("The cluster keeps running")
    kubesvc = os.path.join(os.path.dirname(sys.executable), "kubesvc")
    print(f"  kubectl --context {CONTEXT} get all")
    print(f"  {kubesvc} status")
    print(f"  {kubesvc} down --name {CLUSTER}     # remove everything it created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
