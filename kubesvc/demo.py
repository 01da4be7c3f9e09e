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
GRACE = 15  # --node-monitor-grace-period
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"

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


def wait_ready(
    selector: str, n: int, timeout: float = 60, namespace: str = "default"
) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json", show=False)
        pods = json.loads(out or "{}")
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


def kubesvc_cli(*args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
    if show:
        print(f"$ kubesvc {' '.join(args)}", flush=True)
    res = subprocess.run(
        [sys.executable, "-m", "kubesvc.cli.main", *args],
        text=True,
        capture_output=True,
        check=False,
    )
    if show:
        print(res.stdout + res.stderr, end="", flush=True)
    return res


def on_laptop(*cmd: str, show: bool = True) -> subprocess.CompletedProcess[str]:
    """A command on the demo's host outside the cluster."""
    if show:
        print(f"laptop$ {' '.join(cmd)}", flush=True)
    res = kubesvc_cli("host", "exec", "laptop", "--name", CLUSTER, "--", *cmd, show=False)
    if show:
        print(res.stdout, end="" if res.stdout.endswith("\n") or not res.stdout else "\n")
        if res.returncode:
            print(f"(failed: exit {res.returncode})", flush=True)
    return res


def node_ips() -> dict[str, str]:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json", show=False))["items"]
    return {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in nodes
    }


def outside_world(node_port: int) -> None:
    """The seed's chapter 5: NodePort and LoadBalancer seen from outside, and a node that
    fails."""
    say("Outside the cluster: a laptop on the nodes' LAN (its own network namespace)")
    kubesvc_cli("host", "add", "laptop", "--name", CLUSTER)
    ips = node_ips()
    for ip in ips.values():
        on_laptop("curl", "-s", "-m", "3", f"http://{ip}:{node_port}")
    say("A LoadBalancer Service: one IP in front of all nodes (MetalLB's layer 2 mode)")
    kubectl(
        "expose", "deployment", "kubia", "--name=kubia-lb", "--type=LoadBalancer",
        "--port=80", "--target-port=8080",
    )  # fmt: skip
    lb_ip = ""
    deadline = time.monotonic() + 30
    while not lb_ip and time.monotonic() < deadline:
        svc = json.loads(kubectl("get", "svc", "kubia-lb", "-o", "json", show=False))
        lb_ip = ((svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}])[0]).get(
            "ip", ""
        )
        time.sleep(0.2)
    kubectl("get", "svc", "kubia-lb")
    if not lb_ip:
        print("no EXTERNAL-IP: see `kubectl describe svc kubia-lb`")
        return
    url = f"http://{lb_ip}"
    for _ in range(30):  # until a node announces the IP
        if on_laptop("curl", "-s", "-m", "1", url, show=False).returncode == 0:
            break
        time.sleep(0.2)
    for _ in range(3):
        on_laptop("curl", "-s", "-m", "3", url)
    say("Keep-alive: one connection (here curl with four URLs) stays with one pod")
    on_laptop("curl", "-s", "-m", "5", url, url, url, url)
    events = json.loads(
        kubectl("get", "events", "--field-selector", "reason=nodeAssigned", "-o", "json",
                show=False) or "{}"
    ).get("items", [])  # fmt: skip
    events.sort(key=lambda e: e.get("lastTimestamp") or "")
    announcing = [n for e in events[-1:] for n in ips if f'node "{n}"' in e.get("message", "")]
    if not announcing:
        return
    failing = announcing[0]
    say(f"{failing} announces {lb_ip} (kubectl describe svc kubia-lb). Now it fails")
    kubesvc_cli("node", "stop", failing, "--name", CLUSTER)
    print("The client that only knew that node's address loses the NodePort Service:")
    on_laptop("curl", "-s", "-m", "2", f"http://{ips[failing]}:{node_port}")
    print(
        f"The LoadBalancer IP moves to a node that is left within a second or two; until the\n"
        f"control plane marks {failing} NotReady ({GRACE} s here, 50 s upstream), kube-proxy\n"
        f"still sends some connections to the pods on it, which time out:"
    )
    for _ in range(4):
        on_laptop("curl", "-s", "-m", "1", url)
    deadline = time.monotonic() + GRACE + 30
    while time.monotonic() < deadline:
        node = json.loads(kubectl("get", "node", failing, "-o", "json", show=False) or "{}")
        conditions = node.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") != "True" for c in conditions):
            break
        time.sleep(0.5)
    time.sleep(1)  # the endpoint controllers and kube-proxy follow within a moment
    kubectl("get", "nodes")
    print("Its pods have left the Service's endpoints: every connection is answered")
    for _ in range(4):
        on_laptop("curl", "-s", "-m", "3", url)
    say(f"{failing} comes back")
    kubesvc_cli("node", "start", failing, "--name", CLUSTER)


def ingress() -> None:
    """The seed's chapter 6: one address for many Services, chosen by host and path; the
    controller sends each request to a pod it found through the endpoints."""
    say("Ingress: one address in front of many Services (the controller `kubesvc up` deployed)")
    wait_ready("app.kubernetes.io/name=ingress-kubesvc", 1, namespace="ingress-kubesvc")
    kubectl("get", "pods,svc", "-n", "ingress-kubesvc")
    kubectl("create", "deployment", "echo", f"--image={AGNHOST}", "--", "/agnhost", "netexec",
            "--http-port=8080")  # fmt: skip
    # headless: the Service only selects the pods; the controller never connects to it
    kubectl("create", "service", "clusterip", "echo", "--clusterip=None", "--tcp=80:8080")
    kubectl(
        "create", "ingress", "kubia",
        "--rule=kubia.example.com/*=kubia:80", "--rule=kubia.example.com/echo*=echo:80",
        "--rule=echo.example.com/*=echo:80",
    )  # fmt: skip
    wait_ready("app=echo", 1)
    address = ""
    deadline = time.monotonic() + 30
    while not address and time.monotonic() < deadline:
        ing = json.loads(kubectl("get", "ingress", "kubia", "-o", "json", show=False) or "{}")
        lb = ing.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}]
        address = lb[0].get("ip", "")
        time.sleep(0.2)
    kubectl("get", "ingress", "kubia")
    if not address:
        print("no ADDRESS: see `kubectl logs -n ingress-kubesvc deploy/ingress-kubesvc-controller`")
        return

    def browse(name: str, path: str = "/", show: bool = True) -> str:
        # --resolve plays the laptop's hosts file: the name is at the controller's address
        res = on_laptop("curl", "-s", "-m", "3", "--resolve", f"{name}:80:{address}",
                        f"http://{name}{path}", show=show)  # fmt: skip
        return res.stdout

    for _ in range(30):  # until the controller has the echo pod's endpoint
        if browse("echo.example.com", "/hostname", show=False).startswith("echo-"):
            break
        time.sleep(0.2)
    say(f"The Host header and the path choose the Service; all at {address}")
    for _ in range(3):
        browse("kubia.example.com")
    browse("echo.example.com", "/hostname")
    browse("kubia.example.com", "/echo?msg=routed-by-path")
    say("The controller sends the request to the pod itself, not to the Service")
    print("echo's pod sees the request come from the controller pod's address (no NAT),")
    browse("echo.example.com", "/clientip")
    kubectl("get", "pods", "-n", "ingress-kubesvc", "-o", "wide")
    print("and the laptop's address in X-Forwarded-For:")
    browse("echo.example.com", "/header?key=X-Forwarded-For")
    kubectl("get", "svc", "echo")
    say("An Ingress no controller serves is only stored: no ADDRESS, no route")
    kubectl("create", "ingress", "elsewhere", "--class=nginx",
            "--rule=nginx.example.com/*=kubia:80")  # fmt: skip
    time.sleep(0.5)
    kubectl("get", "ingress")
    browse("nginx.example.com")
    print()


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
    # a node that fails is noticed in 15 s and its pods evicted 10 s later (upstream: 50 s
    # and 5 minutes), so the walk-through need not wait
    up = subprocess.run(
        [
            sys.executable, "-m", "kubesvc.cli.main", "up", "--name", CLUSTER,
            "--node-monitor-grace-period", str(GRACE),
            "--default-unreachable-toleration-seconds", "10",
            "--default-not-ready-toleration-seconds", "10",
        ],
        check=False,
    )  # fmt: skip
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

    say("Through the Service: one stable address, spread over the pods by kube-proxy")
    print("$ kubectl exec client -- sh -c 'curl -s http://$KUBIA_SERVICE_HOST' (x6)", flush=True)
    script = "for i in 1 2 3 4 5 6; do curl -s http://$KUBIA_SERVICE_HOST; done"
    print(kubectl("exec", "client", "--", "sh", "-c", script, show=False), end="")
    say("Or by name: cluster DNS (kube-dns in kube-system) answers for every Service")
    wait_ready("k8s-app=kube-dns", 2, namespace="kube-system")
    kubectl("exec", "client", "--", "nslookup", "kubia.default.svc.cluster.local")
    kubectl("exec", "client", "--", "curl", "-s", "http://kubia")
    kubectl("exec", "client", "--", "cat", "/etc/resolv.conf")
    cluster_ip = json.loads(kubectl("get", "svc", "kubia", "-o", "json", show=False))["spec"][
        "clusterIP"
    ]
    say("A ClusterIP is virtual: curl (TCP) works, ping (ICMP) gets no answer")
    kubectl("exec", "client", "--", "ping", "-c1", "-W1", cluster_ip)
    say("What kube-proxy wrote into the node's kernel for this Service")
    node = pods[0]["spec"]["nodeName"]
    print(f"$ kubesvc proxy rules --name {CLUSTER} --node {node} --service default/kubia")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubesvc.cli.main",
            "proxy",
            "rules",
            "--name",
            CLUSTER,
            "--node",
            node,
            "--service",
            "default/kubia",
        ],
        check=False,
    )
    say("A NodePort Service answers on every node's address, here from the host shell")
    kubectl(
        "expose",
        "deployment",
        "kubia",
        "--name=kubia-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    )
    np = json.loads(kubectl("get", "svc", "kubia-np", "-o", "json", show=False))
    port = np["spec"]["ports"][0]["nodePort"]
    for n in json.loads(kubectl("get", "nodes", "-o", "json", show=False))["items"]:
        ip = next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        print(f"$ curl http://{ip}:{port}", flush=True)
        time.sleep(0.3)
        subprocess.run(["curl", "-s", "--max-time", "3", f"http://{ip}:{port}"], check=False)

    outside_world(port)
    ingress()

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
