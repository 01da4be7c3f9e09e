"""Deployments and ReplicaSets driven by the real kubectl against the control plane.

No kubelet runs: the test plays it, marking pods Running and Ready through the status
subresource and finishing graceful deletions of pods that were bound to a node.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess, wait_for

pytestmark = pytest.mark.e2e

HASH = "pod-template-hash"


def deployment(
    name: str = "web",
    replicas: int = 3,
    image: str = "nginx:1.25",
    strategy: str = "RollingUpdate",
    surge: int = 1,
    unavailable: int = 0,
) -> str:
    rolling = (
        f"    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}\n"
        if strategy == "RollingUpdate"
        else ""
    )
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: {strategy}
{rolling}  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: {image}
"""


def get_json(cp: ApiServerProcess, ns: str, *args: str) -> Any:
    return json.loads(cp.out("-n", ns, "get", *args, "-o", "json"))


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _deleting(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


class Kubelet:
    """Plays the node agent for the pods of one namespace."""

    def __init__(self, cp: ApiServerProcess, ns: str) -> None:
        self.cp, self.ns = cp, ns
        self.ips = 10

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(get_json(self.cp, self.ns, "pods", "-l", selector)["items"])

    def live(self, selector: str) -> list[dict[str, Any]]:
        """Pods that count as replicas: not being deleted."""
        return [p for p in self.pods(selector) if not _deleting(p)]

    def ready(self, selector: str) -> list[dict[str, Any]]:
        return [p for p in self.live(selector) if _ready(p)]

    def start(self, pod: dict[str, Any]) -> None:
        self.ips += 1
        ip = f"10.244.7.{self.ips}"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }
        }
        self.cp.out(
            "-n",
            self.ns,
            "patch",
            "pod",
            pod["metadata"]["name"],
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )

    def start_all(self, selector: str) -> None:
        for pod in self.live(selector):
            if not _ready(pod):
                self.start(pod)

    def reap(self, selector: str) -> None:
        """Finish graceful deletions (only pods bound to a node wait for their kubelet)."""
        for pod in self.pods(selector):
            if _deleting(pod):
                self.cp.kubectl(
                    "-n",
                    self.ns,
                    "delete",
                    "pod",
                    pod["metadata"]["name"],
                    "--grace-period=0",
                    "--force",
                    "--wait=false",
                    check=False,
                )


def replica_sets(cp: ApiServerProcess, ns: str, app: str) -> list[dict[str, Any]]:
    return list(get_json(cp, ns, "rs", "-l", f"app={app}")["items"])


def events(cp: ApiServerProcess, ns: str, reason: str) -> list[str]:
    items = get_json(cp, ns, "events", "--field-selector", f"reason={reason}")["items"]
    return [e["message"] for e in items]


def rollout_status(cp: ApiServerProcess, ns: str, name: str = "web", timeout: str = "20s") -> str:
    return cp.out("-n", ns, "rollout", "status", f"deployment/{name}", f"--timeout={timeout}")


def create_ready_deployment(cp: ApiServerProcess, ns: str, kubelet: Kubelet, **kw: Any) -> None:
    cp.out("-n", ns, "apply", "-f", "-", input=deployment(**kw))
    replicas = kw.get("replicas", 3)
    name = kw.get("name", "web")
    wait_for(lambda: len(kubelet.live(f"app={name}")) == replicas, what=f"{replicas} pods")
    kubelet.start_all(f"app={name}")
    assert "successfully rolled out" in rollout_status(cp, ns, name)


def test_deployment_creates_replica_set_and_owned_pods(cp: ApiServerProcess, cp_ns: str) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    cp.out("-n", ns, "apply", "-f", "-", input=deployment())
    rss = wait_for(lambda: replica_sets(cp, ns, "web"), what="a replica set")
    assert len(rss) == 1
    rs = rss[0]
    deploy = get_json(cp, ns, "deployment", "web")
    h = rs["metadata"]["labels"][HASH]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH: h}
    assert rs["spec"]["replicas"] == 3
    ann = rs["metadata"]["annotations"]
    assert ann["deployment.kubernetes.io/revision"] == "1"
    assert ann["deployment.kubernetes.io/desired-replicas"] == "3"
    assert ann["deployment.kubernetes.io/max-replicas"] == "4"
    [owner] = rs["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": deploy["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }

    pods = wait_for(lambda: (p := kubelet.live("app=web")) and len(p) == 3 and p, what="3 pods")
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{h}-")
        assert pod["metadata"]["labels"] == {"app": "web", HASH: h}
        assert pod["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs["metadata"]["name"],
                "uid": rs["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    # not ready yet: the rollout is not done and the table says so
    table = cp.out("-n", ns, "get", "deploy", "web", "--no-headers").split()
    assert table[:4] == ["web", "0/3", "3", "0"]
    kubelet.start_all("app=web")
    assert 'deployment "web" successfully rolled out' in rollout_status(cp, ns)
    table = cp.out("-n", ns, "get", "deploy", "web", "--no-headers").split()
    assert table[:4] == ["web", "3/3", "3", "3"]

    status = get_json(cp, ns, "deployment", "web")["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
    assert status["observedGeneration"] == deploy["metadata"]["generation"]
    rs_status = get_json(cp, ns, "rs", f"web-{h}")["status"]
    assert rs_status["replicas"] == rs_status["readyReplicas"] == 3
    assert rs_status["availableReplicas"] == rs_status["fullyLabeledReplicas"] == 3

    assert f"Scaled up replica set web-{h} to 3" in events(cp, ns, "ScalingReplicaSet")
    sources = {
        e["reason"]: e["source"]["component"]
        for e in get_json(cp, ns, "events")["items"]
        if e["reason"] in ("ScalingReplicaSet", "SuccessfulCreate")
    }
    assert sources == {
        "ScalingReplicaSet": "deployment-controller",
        "SuccessfulCreate": "replicaset-controller",
    }
    created = events(cp, ns, "SuccessfulCreate")
    assert sorted(created) == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)


def test_kubectl_scale_up_and_down(cp: ApiServerProcess, cp_ns: str) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    create_ready_deployment(cp, ns, kubelet)
    [rs] = replica_sets(cp, ns, "web")
    name = rs["metadata"]["name"]

    cp.out("-n", ns, "scale", "deployment/web", "--replicas=5")
    wait_for(lambda: len(kubelet.live("app=web")) == 5, what="5 pods")
    kubelet.start_all("app=web")
    rollout_status(cp, ns)
    assert (
        get_json(cp, ns, "rs", name)["metadata"]["annotations"][
            "deployment.kubernetes.io/desired-replicas"
        ]
        == "5"
    )

    cp.out("-n", ns, "scale", "deployment/web", "--replicas=2")
    wait_for(lambda: len(kubelet.live("app=web")) == 2, what="2 pods left")
    kubelet.reap("app=web")
    wait_for(lambda: len(kubelet.pods("app=web")) == 2, what="scaled-down pods gone")
    rollout_status(cp, ns)
    table = cp.out("-n", ns, "get", "deploy", "web", "--no-headers").split()
    assert table[:4] == ["web", "2/2", "2", "2"]
    assert len(replica_sets(cp, ns, "web")) == 1
    scaling = events(cp, ns, "ScalingReplicaSet")
    assert f"Scaled up replica set {name} to 5 from 3" in scaling
    assert f"Scaled down replica set {name} to 2 from 5" in scaling
    assert len(events(cp, ns, "SuccessfulDelete")) == 3


def test_rolling_update_never_drops_below_desired_ready(cp: ApiServerProcess, cp_ns: str) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    create_ready_deployment(cp, ns, kubelet, surge=1, unavailable=0)
    [old] = replica_sets(cp, ns, "web")
    old_hash = old["metadata"]["labels"][HASH]

    cp.out("-n", ns, "set", "image", "deployment/web", "web=nginx:1.26")
    new_hash = wait_for(
        lambda: next(
            (
                rs["metadata"]["labels"][HASH]
                for rs in replica_sets(cp, ns, "web")
                if rs["metadata"]["labels"][HASH] != old_hash
            ),
            None,
        ),
        what="the new replica set",
    )
    deadline = time.monotonic() + 60
    started = 0
    while time.monotonic() < deadline:
        live = kubelet.live("app=web")
        ready = [p for p in live if _ready(p)]
        assert len(ready) >= 3, f"only {len(ready)} ready pods during the rollout"
        assert len(live) <= 4, f"{len(live)} pods exceed replicas + maxSurge"
        new = [p for p in live if p["metadata"]["labels"][HASH] == new_hash]
        waiting = [p for p in new if not _ready(p)]
        if len(new) == 3 and not waiting and len(live) == 3:
            break
        if waiting:
            kubelet.start(waiting[0])  # one new pod becomes ready at a time
            started += 1
        kubelet.reap("app=web")
        time.sleep(0.2)
    else:
        raise AssertionError("rolling update did not finish")
    assert started == 3

    out = rollout_status(cp, ns)
    assert 'deployment "web" successfully rolled out' in out
    rss = {rs["metadata"]["labels"][HASH]: rs for rs in replica_sets(cp, ns, "web")}
    assert rss[old_hash]["spec"]["replicas"] == 0
    assert rss[new_hash]["spec"]["replicas"] == 3
    assert rss[new_hash]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    d = get_json(cp, ns, "deployment", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert d["status"]["updatedReplicas"] == d["status"]["availableReplicas"] == 3
    table = cp.out("-n", ns, "get", "deploy", "web", "--no-headers").split()
    assert table[:4] == ["web", "3/3", "3", "3"]
    scaling = events(cp, ns, "ScalingReplicaSet")
    assert f"Scaled up replica set web-{new_hash} to 1" in scaling
    assert f"Scaled down replica set web-{old_hash} to 2 from 3" in scaling
    assert f"Scaled down replica set web-{old_hash} to 0 from 1" in scaling


def test_recreate_scales_old_down_before_new(cp: ApiServerProcess, cp_ns: str) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    create_ready_deployment(cp, ns, kubelet, name="db", replicas=2, strategy="Recreate")
    [old] = replica_sets(cp, ns, "db")
    old_hash = old["metadata"]["labels"][HASH]
    template = '{.type} {.object.metadata.name} {.object.metadata.labels.pod-template-hash}{"\\n"}'
    argv = ["-n", ns, "get", "pods", "-l", "app=db", "-w", "--output-watch-events"]
    watch = subprocess.Popen(
        [KUBECTL, *argv, "-o", f"jsonpath={template}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cp.env(),
    )
    try:
        time.sleep(0.5)  # the watch is established before the change
        cp.out("-n", ns, "set", "image", "deployment/db", "web=nginx:1.26")

        def new_pods() -> list[dict[str, Any]]:
            kubelet.reap("app=db")
            return [p for p in kubelet.live("app=db") if p["metadata"]["labels"][HASH] != old_hash]

        wait_for(new_pods, what="the new pods")
        wait_for(lambda: len(kubelet.live("app=db")) == 2, what="2 new pods")
        time.sleep(0.3)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=5)
    seen = [line.split() for line in out.splitlines() if line.strip()]
    first_new = next(i for i, (_, _, h) in enumerate(seen) if h != old_hash)
    old_deletes = [i for i, (t, _, h) in enumerate(seen) if t == "DELETED" and h == old_hash]
    assert len(old_deletes) == 2 and max(old_deletes) < first_new, seen
    assert len(replica_sets(cp, ns, "db")) == 2
    kubelet.start_all("app=db")
    assert "successfully rolled out" in rollout_status(cp, ns, "db")
    rss = {rs["metadata"]["labels"][HASH]: rs for rs in replica_sets(cp, ns, "db")}
    assert rss[old_hash]["spec"]["replicas"] == 0
    assert f"Scaled down replica set db-{old_hash} to 0 from 2" in events(
        cp, ns, "ScalingReplicaSet"
    )


def test_deleted_pod_is_replaced(cp: ApiServerProcess, cp_ns: str) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    create_ready_deployment(cp, ns, kubelet)
    before = {p["metadata"]["name"] for p in kubelet.live("app=web")}
    victim = sorted(before)[0]
    cp.out("-n", ns, "delete", "pod", victim, "--wait=false")
    kubelet.reap("app=web")
    after = wait_for(
        lambda: (
            (names := {p["metadata"]["name"] for p in kubelet.live("app=web")})
            and victim not in names
            and len(names) == 3
            and names
        ),
        what="a replacement pod",
    )
    assert len(after - before) == 1
    kubelet.start_all("app=web")
    rollout_status(cp, ns)
    assert len(replica_sets(cp, ns, "web")) == 1


def test_deleting_deployment_removes_replica_sets_and_pods(
    cp: ApiServerProcess, cp_ns: str
) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    create_ready_deployment(cp, ns, kubelet)
    cp.out("-n", ns, "delete", "deployment", "web", "--wait=false")

    def gone() -> bool:
        kubelet.reap("app=web")
        return not replica_sets(cp, ns, "web") and not kubelet.pods("app=web")

    wait_for(gone, timeout=20, interval=0.3, what="replica sets and pods collected")


def test_min_ready_seconds_delays_availability(cp: ApiServerProcess, cp_ns: str) -> None:
    ns, kubelet = cp_ns, Kubelet(cp, cp_ns)
    manifest = deployment(replicas=2).replace(
        "  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 3\n"
    )
    cp.out("-n", ns, "apply", "-f", "-", input=manifest)
    wait_for(lambda: len(kubelet.live("app=web")) == 2, what="2 pods")
    kubelet.start_all("app=web")
    status = wait_for(
        lambda: (
            (s := get_json(cp, ns, "deployment", "web")["status"]).get("readyReplicas") == 2 and s
        ),
        what="2 ready replicas",
    )
    assert status.get("availableReplicas", 0) == 0  # ready, but not for 3s yet
    started = time.monotonic()
    assert "successfully rolled out" in rollout_status(cp, ns)
    assert 1 < time.monotonic() - started < 7
    table = cp.out("-n", ns, "get", "deploy", "web", "--no-headers").split()
    assert table[:4] == ["web", "2/2", "2", "2"]
