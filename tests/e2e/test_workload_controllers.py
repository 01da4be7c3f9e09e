"""DaemonSets, StatefulSets, Jobs and CronJobs on a real two-node cluster, driven by the real
kubectl: pods run as processes on the nodes, so Jobs finish and DNS names answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, running_cluster
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kubesvc"), "w") as c:
        yield c


JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: count}
spec:
  completions: 3
  parallelism: 2
  backoffLimit: 2
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: count
        image: busybox
        command: [sh, -c, "echo done"]
"""

FAILING_JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: broken, image: busybox, command: [sh, -c, "exit 3"]}
"""


def test_job_runs_to_completion_and_failures_hit_the_backoff_limit(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=JOB)
    cluster.out("wait", "--for=condition=complete", "job/count", "--timeout=60s")
    job = cluster.json("get", "job", "count")
    status = job["status"]
    assert status["succeeded"] == 3 and "active" not in status
    assert status["startTime"] and status["completionTime"]
    kinds = [c["type"] for c in status["conditions"]]
    assert kinds == ["SuccessCriteriaMet", "Complete"]
    uid = job["metadata"]["uid"]
    pods = cluster.pods(f"batch.kubernetes.io/job-name=count,controller-uid={uid}")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)
    row = cluster.out("get", "job", "count", "--no-headers").split()
    assert row[:3] == ["count", "Complete", "3/3"]
    logs = cluster.out("logs", pods[0]["metadata"]["name"])
    assert logs.strip() == "done"

    cluster.out("apply", "-f", "-", input=FAILING_JOB)
    cluster.out("wait", "--for=condition=failed", "job/broken", "--timeout=60s")
    status = cluster.json("get", "job", "broken")["status"]
    assert status["failed"] == 2
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"


INDEXED_JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        command: [sh, -c, 'echo "index=$JOB_COMPLETION_INDEX host=$(hostname)"']
"""


def test_indexed_job_gives_each_pod_its_index(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=INDEXED_JOB)
    cluster.out("wait", "--for=condition=complete", "job/indexed", "--timeout=60s")
    status = cluster.json("get", "job", "indexed")["status"]
    assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3
    pods = cluster.pods("batch.kubernetes.io/job-name=indexed")
    seen = set()
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["name"].startswith(f"indexed-{index}-")
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        logs = cluster.out("logs", pod["metadata"]["name"]).strip()
        assert logs == f"index={index} host=indexed-{index}"
        seen.add(index)
    assert seen == {"0", "1", "2"}


TTL_JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: short-lived}
spec:
  ttlSecondsAfterFinished: 0
  template:
    spec:
      restartPolicy: OnFailure
      containers:
      - {name: c, image: busybox, command: [sh, -c, "true"]}
"""


def test_finished_job_with_ttl_is_deleted(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=TTL_JOB)

    def gone() -> bool:
        res = cluster.kubectl("get", "job", "short-lived", check=False)
        return res.returncode != 0 and "NotFound" in res.stderr

    wait_for(gone, timeout=60, what="the job deleted after its TTL")


DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - name: agent
        image: IMAGE
        command: [sh, -c, "sleep 3600"]
"""


def test_daemonset_puts_a_pod_on_each_node_and_rolls(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"] for n in cluster.json("get", "nodes")["items"]}
    assert len(nodes) == 2
    cluster.out("apply", "-f", "-", input=DAEMONSET.replace("IMAGE", "busybox"))
    cluster.out("rollout", "status", "ds/agent", "--timeout=60s")
    pods = cluster.running("app=agent", 2)
    assert {p["spec"]["nodeName"] for p in pods} == nodes
    status = cluster.json("get", "ds", "agent")["status"]
    assert status["desiredNumberScheduled"] == 2
    assert status["currentNumberScheduled"] == 2
    assert status["numberReady"] == 2 and status["numberAvailable"] == 2
    assert status["updatedNumberScheduled"] == 2
    row = cluster.out("get", "ds", "agent", "--no-headers").split()
    assert row[:6] == ["agent", "2", "2", "2", "2", "2"]
    before = {p["metadata"]["name"] for p in pods}
    # a template change replaces the pods one node at a time
    cluster.out("apply", "-f", "-", input=DAEMONSET.replace("IMAGE", "busybox:1.36"))
    cluster.out("rollout", "status", "ds/agent", "--timeout=90s")
    after = cluster.running("app=agent", 2)
    assert not before & {p["metadata"]["name"] for p in after}
    assert {p["spec"]["containers"][0]["image"] for p in after} == {"busybox:1.36"}
    assert {p["spec"]["nodeName"] for p in after} == nodes
    # a node selector that matches one node leaves one pod
    node = sorted(nodes)[0]
    cluster.out("label", "node", node, "daemon=yes")
    cluster.out(
        "patch",
        "ds",
        "agent",
        "-p",
        json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"daemon": "yes"}}}}}),
    )
    cluster.out("rollout", "status", "ds/agent", "--timeout=90s")
    wait_for(
        lambda: (
            [
                p["spec"].get("nodeName")
                for p in cluster.pods("app=agent")
                if not p["metadata"].get("deletionTimestamp")
            ]
            == [node]
        ),
        timeout=60,
        what="one daemon pod on the selected node",
    )


CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "@hourly"
  timeZone: Europe/Paris
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: hello, image: busybox, command: [sh, -c, "echo Hello"]}
"""


def test_cronjob_instantiated_by_hand_runs_a_job(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=CRONJOB)
    cluster.out("create", "job", "--from=cronjob/hello", "hello-manual")
    cluster.out("wait", "--for=condition=complete", "job/hello-manual", "--timeout=60s")
    job = cluster.json("get", "job", "hello-manual")
    cj = cluster.json("get", "cronjob", "hello")
    ref = job["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "CronJob" and ref["uid"] == cj["metadata"]["uid"]
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    pods = cluster.pods("batch.kubernetes.io/job-name=hello-manual")
    assert cluster.out("logs", pods[0]["metadata"]["name"]).strip() == "Hello"

    def success_recorded() -> bool:
        status = cluster.json("get", "cronjob", "hello").get("status") or {}
        return bool(status.get("lastSuccessfulTime")) and not status.get("active")

    wait_for(success_recorded, timeout=30, what="lastSuccessfulTime on the CronJob")
    row = cluster.out("get", "cronjob", "hello", "--no-headers").split()
    assert row[:5] == ["hello", "@hourly", "Europe/Paris", "False", "0"]


STATEFULSET = """
apiVersion: v1
kind: Service
metadata: {name: nginx, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80, name: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80, name: web}]
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"""


def _ready_since(pod: dict[str, object]) -> str:
    conds = (pod.get("status") or {}).get("conditions") or []  # type: ignore[union-attr]
    return next(c["lastTransitionTime"] for c in conds if c["type"] == "Ready")  # type: ignore[index]


def test_statefulset_ordered_start_stable_names_and_dns(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=STATEFULSET)
    cluster.out("rollout", "status", "sts/web", "--timeout=90s")
    pods = {p["metadata"]["name"]: p for p in cluster.running("app=nginx", 3)}
    assert set(pods) == {"web-0", "web-1", "web-2"}
    for i in range(3):
        pod = pods[f"web-{i}"]
        assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
        assert pod["spec"]["hostname"] == f"web-{i}" and pod["spec"]["subdomain"] == "nginx"
    # OrderedReady: each pod was created only after the one before it was Ready
    for i in (1, 2):
        created = pods[f"web-{i}"]["metadata"]["creationTimestamp"]
        assert created >= _ready_since(pods[f"web-{i - 1}"])
    claims = {c["metadata"]["name"] for c in cluster.json("get", "pvc")["items"]}
    assert {"www-web-0", "www-web-1", "www-web-2"} <= claims
    row = cluster.out("get", "sts", "web", "--no-headers").split()
    assert row[:2] == ["web", "3/3"]

    # the pod's stable DNS name answers through the headless Service, from another pod
    cluster.out("run", "stsclient", "--image=busybox", "--command", "--", "sleep", "3600")
    cluster.running("run=stsclient", 1)
    ns = "default"
    for name in ("web-0", "web-1"):
        fqdn = f"{name}.nginx.{ns}.svc.cluster.local"
        ip = pods[name]["status"]["podIP"]

        def answer(fqdn: str = fqdn) -> str:
            res = cluster.exec("stsclient", "getent", "hosts", fqdn, check=False)
            return res.stdout.split()[0] if res.returncode == 0 and res.stdout else ""

        assert wait_for(lambda ip=ip: answer() == ip, timeout=30, what=f"{fqdn} -> {ip}")

    # a rolling update replaces every pod (highest ordinal first: see the unit tests)
    cluster.out("set", "image", "sts/web", "nginx=nginx:1.26")
    cluster.out("rollout", "status", "sts/web", "--timeout=90s")
    updated = {p["metadata"]["name"]: p for p in cluster.running("app=nginx", 3)}
    assert {p["spec"]["containers"][0]["image"] for p in updated.values()} == {"nginx:1.26"}
    status = cluster.json("get", "sts", "web")["status"]
    assert status["currentRevision"] == status["updateRevision"]

    # scale down removes the highest ordinals, one at a time
    cluster.out("scale", "sts", "web", "--replicas=1")
    cluster.out("rollout", "status", "sts/web", "--timeout=90s")
    wait_for(
        lambda: sorted(p["metadata"]["name"] for p in cluster.pods("app=nginx")) == ["web-0"],
        timeout=90,
        what="only web-0 left",
    )


RC = """
apiVersion: v1
kind: ReplicationController
metadata: {name: rc-web}
spec:
  replicas: 3
  selector: {app: rc-web}
  template:
    metadata: {labels: {app: rc-web}}
    spec:
      containers:
      - {name: web, image: busybox, command: [sh, -c, "sleep 3600"]}
"""


def test_replication_controller_keeps_its_replicas(cluster: Cluster) -> None:
    cluster.out("apply", "-f", "-", input=RC)
    pods = cluster.running("app=rc-web", 3)
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ReplicationController" and ref["apiVersion"] == "v1"
    cluster.out("scale", "rc", "rc-web", "--replicas=1")
    (survivor,) = cluster.running("app=rc-web", 1)  # the others may still be terminating
    cluster.out("delete", "pod", survivor["metadata"]["name"], "--wait=false")
    (replacement,) = cluster.running("app=rc-web", 1)
    assert replacement["metadata"]["name"] != survivor["metadata"]["name"]

    def counted() -> bool:
        status = cluster.json("get", "rc", "rc-web")["status"]
        return status.get("replicas") == 1 and status.get("readyReplicas") == 1

    wait_for(counted, timeout=30, what="the rc's status")
    row = cluster.out("get", "rc", "rc-web", "--no-headers").split()
    assert row[:4] == ["rc-web", "1", "1", "1"]
    scale = json.loads(
        cluster.out(
            "get", "--raw", "/api/v1/namespaces/default/replicationcontrollers/rc-web/scale"
        )
    )
    assert scale["status"]["selector"] == "app=rc-web"


def test_every_namespace_gets_a_default_service_account(cluster: Cluster) -> None:
    cluster.out("create", "namespace", "sa-check")
    try:
        wait_for(
            lambda: (
                cluster.kubectl("-n", "sa-check", "get", "sa", "default", check=False).returncode
                == 0
            ),
            timeout=30,
            what="the default ServiceAccount",
        )
        cluster.out("-n", "sa-check", "delete", "sa", "default")
        wait_for(
            lambda: (
                cluster.kubectl("-n", "sa-check", "get", "sa", "default", check=False).returncode
                == 0
            ),
            timeout=30,
            what="the default ServiceAccount again",
        )
    finally:
        cluster.kubectl("delete", "namespace", "sa-check", "--wait=false", check=False)
