"""The real kubectl against a real kubesvc API server process."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess

pytestmark = pytest.mark.e2e

SVC = """
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"""

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: [netexec, --http-port=8080]
        ports:
        - containerPort: 8080
"""


def _json(api: ApiServerProcess, *args: str) -> dict:
    return json.loads(api.out(*args, "-o", "json"))


def test_seeded_cluster(api: ApiServerProcess) -> None:
    out = api.out("get", "svc", "-A")
    assert out.splitlines()[0].split() == [
        "NAMESPACE",
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ]
    assert "kubernetes" in out and "10.96.0.1" in out and "443/TCP" in out
    names = api.out("get", "ns", "-o", "name").split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{ns}" in names
    assert "v1.32" in api.out("version")


def test_api_resources(api: ApiServerProcess) -> None:
    out = api.out("api-resources")
    for line in (
        "services     svc",
        "deployments  deploy",
        "endpointslices",
        "ingresses",
        "leases",
    ):
        assert line.split()[0] in out
    assert "svc" in out and "deploy" in out and "ing" in out


def test_create_get_describe_delete_service(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "-f", "-", input=SVC)
    wide = api.out("-n", ns, "get", "svc", "web", "-o", "wide")
    header, row = wide.splitlines()
    assert header.split() == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
        "SELECTOR",
    ]
    cells = row.split()
    assert (
        cells[0] == "web"
        and cells[1] == "ClusterIP"
        and cells[4] == "80/TCP"
        and cells[6] == "app=web"
    )
    assert cells[2].startswith("10.") and cells[3] == "<none>"
    svc = _json(api, "-n", ns, "get", "svc", "web")
    assert svc["spec"]["sessionAffinity"] == "None"
    assert svc["spec"]["ports"][0]["protocol"] == "TCP"
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    desc = " ".join(api.out("-n", ns, "describe", "svc", "web").split())
    assert "Type: ClusterIP" in desc and "TargetPort: 8080/TCP" in desc
    assert "Session Affinity: None" in desc
    err = api.fails("-n", ns, "create", "-f", "-", input=SVC)
    assert 'services "web" already exists' in err
    api.out("-n", ns, "delete", "svc", "web")
    assert 'services "web" not found' in api.fails("-n", ns, "get", "svc", "web")


def test_validation_errors_have_upstream_wording(api: ApiServerProcess, ns: str) -> None:
    bad = SVC.replace("port: 80", "port: 0")
    err = api.fails("-n", ns, "create", "-f", "-", input=bad)
    assert (
        'The Service "web" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive'  # noqa: E501 (upstream wording)
        in err
    )
    bad_type = SVC.replace("selector:", "type: Foo\n  selector:")
    err = api.fails("-n", ns, "create", "-f", "-", input=bad_type)
    assert (
        'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'  # noqa: E501 (upstream wording)
        in err
    )
    bad_name = SVC.replace("name: web\n  labels", "name: Web\n  labels")
    err = api.fails("-n", ns, "create", "-f", "-", input=bad_name)
    assert "a DNS-1035 label must consist of lower case alphanumeric characters" in err


def test_apply_twice_and_remove_field(api: ApiServerProcess, ns: str) -> None:
    assert "service/web created" in api.out("-n", ns, "apply", "-f", "-", input=SVC)
    assert "service/web unchanged" in api.out("-n", ns, "apply", "-f", "-", input=SVC)
    rv = _json(api, "-n", ns, "get", "svc", "web")["metadata"]["resourceVersion"]
    smaller = SVC.replace(", tier: front", "").replace("targetPort: 8080", "targetPort: 9090")
    assert "service/web configured" in api.out("-n", ns, "apply", "-f", "-", input=smaller)
    svc = _json(api, "-n", ns, "get", "svc", "web")
    assert svc["metadata"]["labels"] == {"app": "web"}
    assert svc["spec"]["ports"][0]["targetPort"] == 9090
    assert svc["metadata"]["resourceVersion"] != rv
    two_ports = smaller.replace(
        "    targetPort: 9090", "    targetPort: 9090\n  - name: metrics\n    port: 9100"
    )
    api.out("-n", ns, "apply", "-f", "-", input=two_ports)
    ports = _json(api, "-n", ns, "get", "svc", "web")["spec"]["ports"]
    assert [p["name"] for p in ports] == ["http", "metrics"]
    api.out("-n", ns, "apply", "-f", "-", input=smaller)
    ports = _json(api, "-n", ns, "get", "svc", "web")["spec"]["ports"]
    assert [p["name"] for p in ports] == ["http"]


def test_server_side_apply(api: ApiServerProcess, ns: str) -> None:
    out = api.out("-n", ns, "apply", "--server-side", "-f", "-", input=SVC)
    assert "serverside-applied" in out
    svc = _json(api, "-n", ns, "get", "svc", "web", "--show-managed-fields")
    managers = {m["manager"]: m for m in svc["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:spec" in managers["kubectl"]["fieldsV1"]
    smaller = SVC.replace(", tier: front", "")
    api.out("-n", ns, "apply", "--server-side", "-f", "-", input=smaller)
    assert _json(api, "-n", ns, "get", "svc", "web")["metadata"]["labels"] == {"app": "web"}
    # another manager changing a field owned by kubectl conflicts unless forced
    other = SVC.replace("targetPort: 8080", "targetPort: 7070")
    err = api.fails(
        "-n", ns, "apply", "--server-side", "--field-manager=other", "-f", "-", input=other
    )
    assert "conflict" in err.lower() and ".spec.ports" in err
    api.out(
        "-n",
        ns,
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        input=other,
    )
    assert _json(api, "-n", ns, "get", "svc", "web")["spec"]["ports"][0]["targetPort"] == 7070


def test_generators(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "service", "clusterip", "cip", "--tcp=80:8080")
    api.out("-n", ns, "create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30555")
    api.out("-n", ns, "create", "service", "externalname", "ext", "--external-name=db.example.com")
    api.out(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--from-literal=pw=s3cret",
    )
    api.out("-n", ns, "create", "configmap", "cfg", "--from-literal=a=b")
    api.out("-n", ns, "create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80")
    api.out("-n", ns, "create", "ingress", "ing", "--rule=foo.com/bar*=cip:80")
    np = _json(api, "-n", ns, "get", "svc", "np")
    assert np["spec"]["type"] == "NodePort" and np["spec"]["ports"][0]["nodePort"] == 30555
    assert "80:30555/TCP" in api.out("-n", ns, "get", "svc", "np")
    ext = api.out("-n", ns, "get", "svc", "ext")
    assert "ExternalName" in ext and "db.example.com" in ext
    secret = _json(api, "-n", ns, "get", "secret", "creds")
    assert secret["type"] == "Opaque" and set(secret["data"]) == {"user", "pw"}
    dep = _json(api, "-n", ns, "get", "deployment", "web")
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    ing = _json(api, "-n", ns, "get", "ingress", "ing")
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    assert path["pathType"] == "Prefix" and path["backend"]["service"]["name"] == "cip"
    api.out(
        "-n", ns, "expose", "deployment", "web", "--name=web-svc", "--port=80", "--target-port=8080"
    )
    exposed = _json(api, "-n", ns, "get", "svc", "web-svc")
    assert exposed["spec"]["selector"] == {"app": "web"}
    assert "deployment.apps/web" in api.out("-n", ns, "get", "all")


def test_nodeport_conflicts_and_range(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "service", "nodeport", "a", "--tcp=80:8080", "--node-port=30601")
    err = api.fails(
        "-n", ns, "create", "service", "nodeport", "b", "--tcp=80:8080", "--node-port=30601"
    )
    assert "spec.ports[0].nodePort: Invalid value: 30601: provided port is already allocated" in err
    err = api.fails(
        "-n", ns, "create", "service", "nodeport", "c", "--tcp=80:8080", "--node-port=40000"
    )
    assert "provided port is not in the valid range. The range of valid ports is 30000-32767" in err
    api.out("-n", ns, "delete", "svc", "a")
    api.out("-n", ns, "create", "service", "nodeport", "b", "--tcp=80:8080", "--node-port=30601")


def test_cluster_ip_rules(api: ApiServerProcess, ns: str) -> None:
    fixed = SVC.replace("selector:", "clusterIP: 10.96.200.200\n  selector:")
    api.out("-n", ns, "create", "-f", "-", input=fixed)
    again = fixed.replace("name: web\n", "name: web2\n")
    err = api.fails("-n", ns, "create", "-f", "-", input=again)
    assert "failed to allocate IP 10.96.200.200: provided IP is already allocated" in err
    err = api.fails("-n", ns, "patch", "svc", "web", "-p", '{"spec":{"clusterIP":"10.96.200.201"}}')
    assert "may not change once set" in err
    # type change to ExternalName releases the IP
    api.out(
        "-n",
        ns,
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        '{"spec":{"type":"ExternalName","externalName":"x.example.com","clusterIP":"","clusterIPs":null,"ports":null,"selector":null}}',
    )
    assert "clusterIP" not in _json(api, "-n", ns, "get", "svc", "web")["spec"]
    api.out("-n", ns, "create", "-f", "-", input=again)


def test_patch_types_label_annotate(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "-f", "-", input=SVC)
    api.out("-n", ns, "patch", "svc", "web", "-p", '{"metadata":{"labels":{"p":"strategic"}}}')
    api.out(
        "-n",
        ns,
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        '{"spec":{"sessionAffinity":"ClientIP"}}',
    )
    api.out(
        "-n",
        ns,
        "patch",
        "svc",
        "web",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/ports/0/targetPort","value":9999}]',
    )
    api.out("-n", ns, "label", "svc", "web", "color=blue")
    api.out("-n", ns, "annotate", "svc", "web", "note=hello")
    svc = _json(api, "-n", ns, "get", "svc", "web")
    assert (
        svc["metadata"]["labels"]["p"] == "strategic"
        and svc["metadata"]["labels"]["color"] == "blue"
    )
    assert svc["metadata"]["annotations"]["note"] == "hello"
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 10800
    assert svc["spec"]["ports"][0]["targetPort"] == 9999
    api.out("-n", ns, "label", "svc", "web", "color-")
    assert "color" not in _json(api, "-n", ns, "get", "svc", "web")["metadata"]["labels"]
    assert "web" in api.out("-n", ns, "get", "svc", "-l", "app=web,p in (strategic)", "-o", "name")
    assert api.out("-n", ns, "get", "svc", "-l", "app!=web", "-o", "name").strip() == ""


def test_replace_and_conflict(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "-f", "-", input=SVC)
    svc = _json(api, "-n", ns, "get", "svc", "web")
    svc["metadata"]["labels"]["replaced"] = "yes"
    api.out("-n", ns, "replace", "-f", "-", input=json.dumps(svc))
    assert _json(api, "-n", ns, "get", "svc", "web")["metadata"]["labels"]["replaced"] == "yes"
    err = api.fails("-n", ns, "replace", "-f", "-", input=json.dumps(svc))  # stale resourceVersion
    assert (
        'Operation cannot be fulfilled on services "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    ) in err


def test_get_watch(api: ApiServerProcess, ns: str) -> None:
    proc = subprocess.Popen(
        [KUBECTL, "-n", ns, "get", "svc", "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=api.env(),
    )
    try:
        time.sleep(1.5)
        api.out("-n", ns, "create", "-f", "-", input=SVC)
        api.out("-n", ns, "label", "svc", "web", "x=y")
        time.sleep(1.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    lines = [line for line in out.splitlines() if line.startswith("web")]
    assert len(lines) >= 2, out
    assert "ClusterIP" in lines[0]


def test_wait_and_every_kind(api: ApiServerProcess, ns: str) -> None:
    manifests = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: cm1}}
data: {{k: v}}
---
apiVersion: v1
kind: Pod
metadata: {{name: pod1, labels: {{app: web}}}}
spec:
  containers: [{{name: c, image: busybox, command: [sleep, "3600"]}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: manual}}
subsets:
- addresses: [{{ip: 192.0.2.10}}]
  ports: [{{port: 5432}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: manual-1, labels: {{kubernetes.io/service-name: manual}}}}
addressType: IPv4
endpoints: [{{addresses: [192.0.2.10]}}]
ports: [{{port: 5432, protocol: TCP}}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: lease1}}
spec: {{holderIdentity: me, leaseDurationSeconds: 40}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: {ns}-class}}
spec: {{controller: kubesvc.io/ingress}}
"""
    api.out("-n", ns, "create", "-f", "-", input=manifests)
    uid = _json(api, "-n", ns, "get", "pod", "pod1")["metadata"]["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "ev1"},
        "involvedObject": {"kind": "Pod", "name": "pod1", "namespace": ns, "uid": uid},
        "reason": "Testing",
        "message": "hello",
        "type": "Normal",
    }
    api.out("-n", ns, "create", "-f", "-", input=json.dumps(event))
    for kind, name in [
        ("cm", "cm1"),
        ("pod", "pod1"),
        ("ep", "manual"),
        ("endpointslice", "manual-1"),
        ("lease", "lease1"),
        ("ev", "ev1"),
    ]:
        assert name in api.out("-n", ns, "get", kind, "-o", "name")
        api.out("-n", ns, "describe", kind, name)
    assert "Testing" in api.out("-n", ns, "get", "events")
    assert "192.0.2.10:5432" in api.out("-n", ns, "get", "ep", "manual")
    assert f"{ns}-class" in api.out("get", "ingressclass")
    pod = api.out("-n", ns, "get", "pod", "pod1")
    assert pod.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "Pending" in pod
    assert "Testing" in api.out("-n", ns, "describe", "pod", "pod1")
    api.out("-n", ns, "label", "cm", "cm1", "ready=yes")
    api.out(
        "-n", ns, "wait", "--for=jsonpath={.metadata.labels.ready}=yes", "cm/cm1", "--timeout=10s"
    )
    api.out("delete", "ingressclass", f"{ns}-class")
    for kind, name in [
        ("cm", "cm1"),
        ("pod", "pod1"),
        ("ep", "manual"),
        ("endpointslice", "manual-1"),
        ("lease", "lease1"),
        ("ev", "ev1"),
    ]:
        assert "deleted" in api.out("-n", ns, "delete", kind, name)
        assert "not found" in api.fails("-n", ns, "get", kind, name)


def test_dry_run(api: ApiServerProcess, ns: str) -> None:
    out = api.out("-n", ns, "create", "-f", "-", "--dry-run=server", "-o", "json", input=SVC)
    assert json.loads(out)["spec"]["clusterIP"]
    assert "not found" in api.fails("-n", ns, "get", "svc", "web")


def test_namespace_deletion_removes_contents(api: ApiServerProcess) -> None:
    api.out("create", "namespace", "doomed")
    api.out("-n", "doomed", "create", "-f", "-", input=SVC)
    api.out("-n", "doomed", "create", "configmap", "cfg", "--from-literal=a=b")
    api.out("delete", "namespace", "doomed", "--timeout=30s")
    assert 'namespaces "doomed" not found' in api.fails("get", "namespace", "doomed")
    assert (
        api.out(
            "get", "svc", "-A", "--field-selector=metadata.namespace=doomed", "-o", "name"
        ).strip()
        == ""
    )
    err = api.fails("-n", "missing-ns", "create", "-f", "-", input=SVC)
    assert 'namespaces "missing-ns" not found' in err


def test_owner_references_are_collected(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "configmap", "owner", "--from-literal=a=b")
    uid = _json(api, "-n", ns, "get", "cm", "owner")["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    api.out("-n", ns, "create", "-f", "-", input=json.dumps(dependent))
    api.out("-n", ns, "delete", "cm", "owner")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "dependent" not in api.out("-n", ns, "get", "cm", "-o", "name"):
            return
        time.sleep(0.2)
    pytest.fail("dependent ConfigMap was not garbage collected")


def test_explain(api: ApiServerProcess) -> None:
    out = api.out("explain", "svc.spec.ports")
    assert "targetPort" in out and "port" in out


def test_scale(api: ApiServerProcess, ns: str) -> None:
    api.out("-n", ns, "create", "-f", "-", input=DEPLOY)
    api.out("-n", ns, "scale", "deployment", "web", "--replicas=5")
    assert _json(api, "-n", ns, "get", "deploy", "web")["spec"]["replicas"] == 5
    assert _json(api, "-n", ns, "get", "deploy", "web")["metadata"]["generation"] == 2
