"""The stored kinds a Helm chart or a docs example contains: created from docs-like manifests
with the real kubectl, defaulted and validated as upstream, listed with upstream's columns."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e

# kubectl get's header line per kind (upstream printers; Role, ClusterRole and LimitRange have
# none and get the server's default NAME/CREATED AT columns)
HEADERS = {
    "replicationcontrollers": "NAME DESIRED CURRENT READY AGE",
    "persistentvolumeclaims": "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS "
    "VOLUMEATTRIBUTESCLASS AGE",
    "serviceaccounts": "NAME SECRETS AGE",
    "resourcequotas": "NAME REQUEST LIMIT AGE",
    "limitranges": "NAME CREATED AT",
    "daemonsets": "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE",
    "statefulsets": "NAME READY AGE",
    "jobs": "NAME STATUS COMPLETIONS DURATION AGE",
    "cronjobs": "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE",
    "horizontalpodautoscalers": "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
    "poddisruptionbudgets": "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
    "networkpolicies": "NAME POD-SELECTOR AGE",
    "roles": "NAME CREATED AT",
    "rolebindings": "NAME ROLE AGE",
}
CLUSTER_HEADERS = {
    "persistentvolumes": "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS "
    "VOLUMEATTRIBUTESCLASS REASON AGE",
    "priorityclasses": "NAME VALUE GLOBAL-DEFAULT AGE",
    "storageclasses": "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
    "clusterroles": "NAME CREATED AT",
    "clusterrolebindings": "NAME ROLE AGE",
    "apiservices": "NAME SERVICE AVAILABLE AGE",
}

NAMESPACED = """
apiVersion: v1
kind: ReplicationController
metadata: {name: nginx}
spec:
  replicas: 3
  selector: {app: nginx}
  template:
    metadata: {name: nginx, labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: task-pv-claim}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 3Gi}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: build-robot}
automountServiceAccountToken: false
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: mem-cpu-demo}
spec:
  hard: {requests.cpu: "1", requests.memory: 1Gi, limits.cpu: "2", limits.memory: 2Gi, pods: 10}
---
apiVersion: v1
kind: LimitRange
metadata: {name: cpu-resource-constraint}
spec:
  limits:
  - default: {cpu: 500m}
    defaultRequest: {cpu: 500m}
    max: {cpu: "1"}
    min: {cpu: 100m}
    type: Container
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: fluentd-elasticsearch, labels: {k8s-app: fluentd-logging}}
spec:
  selector: {matchLabels: {name: fluentd-elasticsearch}}
  template:
    metadata: {labels: {name: fluentd-elasticsearch}}
    spec:
      tolerations:
      - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      containers:
      - name: fluentd-elasticsearch
        image: quay.io/fluentd_elasticsearch/fluentd:v2.5.2
        resources: {limits: {memory: 200Mi}, requests: {cpu: 100m, memory: 200Mi}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: nginx}}
  serviceName: nginx
  replicas: 3
  minReadySeconds: 10
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        ports: [{containerPort: 80, name: web}]
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: my-storage-class
      resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      containers:
      - {name: pi, image: perl:5.34.0, command: [perl, -Mbignum=bpi, -wle, print bpi(2000)]}
      restartPolicy: Never
  backoffLimit: 4
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: hello, image: busybox:1.28, command: [/bin/sh, -c, date; echo Hello]}
          restartPolicy: OnFailure
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: php-apache}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: php-apache}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: zk-pdb}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: zookeeper}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: test-network-policy}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    - namespaceSelector: {matchLabels: {project: myproject}}
    - podSelector: {matchLabels: {role: frontend}}
    ports: [{protocol: TCP, port: 6379}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
    ports: [{protocol: TCP, port: 5978}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, watch, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods}
subjects:
- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}
roleRef: {kind: Role, name: pod-reader, apiGroup: rbac.authorization.k8s.io}
"""


def cluster_scoped(suffix: str) -> str:
    return f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: task-pv-volume-{suffix}, labels: {{type: local}}}}
spec:
  storageClassName: manual
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: /mnt/data}}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {{name: high-priority-{suffix}}}
value: 1000000
globalDefault: false
description: "This priority class should be used for XYZ service pods only."
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: local-storage-{suffix}}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: secret-reader-{suffix}}}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, watch, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: read-secrets-global-{suffix}}}
subjects:
- {{kind: Group, name: manager, apiGroup: rbac.authorization.k8s.io}}
roleRef: {{kind: ClusterRole, name: secret-reader-{suffix}, apiGroup: rbac.authorization.k8s.io}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.{suffix}.example.com}}
spec:
  group: {suffix}.example.com
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {{name: metrics-server, namespace: kube-system}}
"""


def header(api: ApiServerProcess, *args: str) -> str:
    lines = api.out("get", *args).splitlines()
    return " ".join(lines[0].split())


def test_namespaced_kinds_apply_and_print_upstream_columns(api: ApiServerProcess, ns: str) -> None:
    out = api.out("-n", ns, "apply", "-f", "-", input=NAMESPACED)
    assert out.count("created") == 14, out
    for resource, want in HEADERS.items():
        assert header(api, "-n", ns, resource) == want, resource
    # defaults as upstream's
    job = json.loads(api.out("-n", ns, "get", "job", "pi", "-o", "json"))
    uid = job["metadata"]["uid"]
    assert job["spec"]["completions"] == 1 and job["spec"]["parallelism"] == 1
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "pi" and labels["controller-uid"] == uid
    cj = json.loads(api.out("-n", ns, "get", "cronjob", "hello", "-o", "json"))
    assert cj["spec"]["concurrencyPolicy"] == "Allow"
    assert cj["spec"]["successfulJobsHistoryLimit"] == 3
    sts = json.loads(api.out("-n", ns, "get", "sts", "web", "-o", "json"))
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": 0},
    }
    rows = api.out("-n", ns, "get", "cronjob", "hello", "--no-headers").split()
    assert rows[:5] == ["hello", "*", "*", "*", "*"] or rows[1:4] == ["*", "*", "*"]
    pvc = api.out("-n", ns, "get", "pvc", "task-pv-claim", "--no-headers").split()
    assert pvc[:2] == ["task-pv-claim", "Pending"]
    pdb = api.out("-n", ns, "get", "pdb", "zk-pdb", "--no-headers").split()
    assert pdb[:4] == ["zk-pdb", "2", "N/A", "0"]
    hpa = api.out("-n", ns, "get", "hpa", "php-apache", "--no-headers").split()
    assert hpa[:2] == ["php-apache", "Deployment/php-apache"]
    binding = api.out("-n", ns, "get", "rolebinding", "read-pods", "--no-headers").split()
    assert binding[:2] == ["read-pods", "Role/pod-reader"]
    quota = api.out("-n", ns, "get", "quota", "mem-cpu-demo", "--no-headers")
    assert quota.startswith("mem-cpu-demo")
    # short names resolve through discovery
    for short in ("rc", "pvc", "sa", "quota", "limits", "ds", "sts", "cj", "hpa", "pdb", "netpol"):
        api.out("-n", ns, "get", short)
    # main validation rules, with upstream's wording
    bad_job = NAMESPACED.split("---")[7].replace("restartPolicy: Never", "restartPolicy: Always")
    err = api.fails("-n", ns, "apply", "-f", "-", input=bad_job.replace("name: pi", "name: pi2"))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in err, err
    bad_cron = NAMESPACED.split("---")[8].replace('"* * * * *"', '"61 * * * *"')
    err = api.fails("-n", ns, "apply", "-f", "-", input=bad_cron.replace("hello}", "hello2}"))
    assert "spec.schedule: Invalid value" in err and "above maximum" in err, err
    bad_pdb = NAMESPACED.split("---")[10].replace(
        "minAvailable: 2", "minAvailable: 2\n  maxUnavailable: 1"
    )
    err = api.fails("-n", ns, "apply", "-f", "-", input=bad_pdb.replace("zk-pdb", "zk-pdb2"))
    assert "minAvailable and maxUnavailable cannot be both set" in err, err


def test_cluster_scoped_kinds_and_seeded_priority_classes(api: ApiServerProcess) -> None:
    import secrets

    suffix = secrets.token_hex(3)
    manifest = cluster_scoped(suffix)
    try:
        out = api.out("apply", "-f", "-", input=manifest)
        assert out.count("created") == 6, out
        for resource, want in CLUSTER_HEADERS.items():
            assert header(api, resource) == want, resource
        rows = api.out("get", "priorityclasses", "--no-headers").splitlines()
        seeded = {r.split()[0]: r.split()[1] for r in rows}
        assert seeded["system-cluster-critical"] == "2000000000"
        assert seeded["system-node-critical"] == "2000001000"
        pv = api.out("get", "pv", f"task-pv-volume-{suffix}", "--no-headers").split()
        assert pv[1:5] == ["10Gi", "RWO", "Retain", "Pending"]
        sc = api.out("get", "sc", f"local-storage-{suffix}", "--no-headers").split()
        assert sc[1:5] == [
            "kubernetes.io/no-provisioner",
            "Delete",
            "WaitForFirstConsumer",
            "false",
        ]
        err = api.fails("create", "priorityclass", f"system-{suffix}", "--value=5")
        assert "priority class names with 'system-' prefix are reserved" in err, err
    finally:
        api.kubectl("delete", "-f", "-", input=manifest, check=False)


def test_kubectl_create_generators(api: ApiServerProcess, ns: str) -> None:
    """kubectl's `create` generators send protobuf bodies: each of these kinds decodes."""
    api.out("-n", ns, "create", "serviceaccount", "robot")
    api.out("-n", ns, "create", "role", "reader", "--verb=get,list", "--resource=pods")
    api.out(
        "-n",
        ns,
        "create",
        "rolebinding",
        "read",
        "--role=reader",
        "--user=jane",
        f"--serviceaccount={ns}:robot",
    )
    api.out("-n", ns, "create", "quota", "q", "--hard=pods=5,requests.cpu=1")
    api.out("-n", ns, "create", "pdb", "budget", "--selector=app=x", "--min-available=50%")
    api.out(
        "-n",
        ns,
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--",
        "date",
    )
    api.out("-n", ns, "create", "job", "once", "--image=busybox", "--", "date")
    api.out("-n", ns, "create", "job", "from-tick", "--from=cronjob/tick")
    role = json.loads(api.out("-n", ns, "get", "role", "reader", "-o", "json"))
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    binding = json.loads(api.out("-n", ns, "get", "rolebinding", "read", "-o", "json"))
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "reader",
    }
    kinds = sorted(s["kind"] for s in binding["subjects"])
    assert kinds == ["ServiceAccount", "User"]
    quota = json.loads(api.out("-n", ns, "get", "quota", "q", "-o", "json"))
    assert quota["spec"]["hard"] == {"pods": "5", "requests.cpu": "1"}
    pdb = json.loads(api.out("-n", ns, "get", "pdb", "budget", "-o", "json"))
    assert pdb["spec"]["minAvailable"] == "50%"
    cj = json.loads(api.out("-n", ns, "get", "cronjob", "tick", "-o", "json"))
    assert cj["spec"]["schedule"] == "*/5 * * * *"
    job = json.loads(api.out("-n", ns, "get", "job", "from-tick", "-o", "json"))
    assert job["metadata"]["ownerReferences"][0]["name"] == "tick"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    cluster_wide = f"reader-{ns}"
    try:
        api.out("create", "clusterrole", cluster_wide, "--verb=get", "--resource=nodes")
        api.out(
            "create",
            "clusterrolebinding",
            cluster_wide,
            f"--clusterrole={cluster_wide}",
            "--group=ops",
        )
        row = api.out("get", "clusterrolebinding", cluster_wide, "--no-headers").split()
        assert row[1] == f"ClusterRole/{cluster_wide}"
    finally:
        api.kubectl("delete", "clusterrolebinding", cluster_wide, check=False)
        api.kubectl("delete", "clusterrole", cluster_wide, check=False)


def test_claim_binds_to_a_matching_volume(cp: ApiServerProcess, cp_ns: str) -> None:
    """The docs' task-pv-volume / task-pv-claim pair: the claim is bound to the volume."""
    import secrets

    from tests.e2e.harness import wait_for

    volume = f"task-pv-volume-{secrets.token_hex(3)}"
    manifest = f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {volume}, labels: {{type: local}}}}
spec:
  storageClassName: manual-{cp_ns}
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: /mnt/data}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: task-pv-claim, namespace: {cp_ns}}}
spec:
  storageClassName: manual-{cp_ns}
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 3Gi}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: too-big, namespace: {cp_ns}}}
spec:
  storageClassName: manual-{cp_ns}
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 30Gi}}}}
"""
    try:
        cp.out("apply", "-f", "-", input=manifest)

        def bound() -> bool:
            row = cp.out("-n", cp_ns, "get", "pvc", "task-pv-claim", "--no-headers").split()
            return row[1] == "Bound"

        wait_for(bound, timeout=30, what="the claim bound")
        row = cp.out("-n", cp_ns, "get", "pvc", "task-pv-claim", "--no-headers").split()
        assert row[:5] == ["task-pv-claim", "Bound", volume, "10Gi", "RWO"]
        pv = cp.out("get", "pv", volume, "--no-headers").split()
        assert pv[4:6] == ["Bound", f"{cp_ns}/task-pv-claim"]
        big = cp.out("-n", cp_ns, "get", "pvc", "too-big", "--no-headers").split()
        assert big[1] == "Pending"
        cp.out("-n", cp_ns, "delete", "pvc", "task-pv-claim")
        wait_for(
            lambda: cp.out("get", "pv", volume, "--no-headers").split()[4] == "Released",
            timeout=30,
            what="the volume released",
        )
    finally:
        cp.kubectl("delete", "pv", volume, check=False)


def test_quota_status_shows_usage(cp: ApiServerProcess, cp_ns: str) -> None:
    from tests.e2e.harness import wait_for

    manifest = """
apiVersion: v1
kind: ResourceQuota
metadata: {name: mem-cpu-demo}
spec:
  hard: {requests.cpu: "1", requests.memory: 1Gi, limits.cpu: "2", limits.memory: 2Gi, pods: "10"}
---
apiVersion: v1
kind: Pod
metadata: {name: quota-mem-cpu-demo}
spec:
  containers:
  - name: quota-mem-cpu-demo-ctr
    image: nginx
    resources:
      limits: {memory: 800Mi, cpu: 800m}
      requests: {memory: 600Mi, cpu: 400m}
"""
    cp.out("-n", cp_ns, "apply", "-f", "-", input=manifest)

    def used() -> dict[str, str]:
        quota = json.loads(cp.out("-n", cp_ns, "get", "quota", "mem-cpu-demo", "-o", "json"))
        return dict((quota.get("status") or {}).get("used") or {})

    want = {
        "limits.cpu": "800m",
        "limits.memory": "800Mi",
        "pods": "1",
        "requests.cpu": "400m",
        "requests.memory": "600Mi",
    }
    wait_for(lambda: used() == want, timeout=30, what="the quota's usage")
    row = " ".join(cp.out("-n", cp_ns, "get", "quota", "mem-cpu-demo", "--no-headers").split())
    assert "pods: 1/10, requests.cpu: 400m/1, requests.memory: 600Mi/1Gi" in row, row
    assert "limits.cpu: 800m/2, limits.memory: 800Mi/2Gi" in row, row
