"""kubesvc's components with identities of their own: what each one's requests are allowed
(a node agent's by the Node authorizer, each controller's by its upstream role, the
speaker's and MetalLB controller's by MetalLB's roles), the per-object watches of what a
node's pods mount, and the controllers' ServiceAccount tokens."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubesvc.apiserver.certs import component_identities, ensure_credentials, node_user
from kubesvc.apiserver.rbac_bootstrap import _objects, component_object
from kubesvc.auth.bootstrap import bootstrap_policy, node_rules
from kubesvc.auth.component_policy import SPEAKER_USER, component_objects
from kubesvc.auth.node import NodeGraph, authorize
from kubesvc.auth.rbac import Policy
from kubesvc.auth.request import request_info, resource_attributes
from kubesvc.auth.user import UserInfo, service_account_user
from kubesvc.client.kubeconfig import load
from kubesvc.client.rest import ApiException
from kubesvc.controllers.clientbuilder import (
    ACCOUNTS,
    PARTS,
    TOKEN_SECONDS,
    AccountToken,
    bindings_needed,
    renew_at,
)
from kubesvc.controllers.manager import CONTROLLERS
from kubesvc.node.sourcewatch import References, SourceWatches

# -- the node agent's requests -------------------------------------------------------------
POD = {
    "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
    "spec": {
        "nodeName": "n1",
        "serviceAccountName": "robot",
        "volumes": [
            {"name": "a", "configMap": {"name": "cm"}},
            {"name": "b", "secret": {"secretName": "s"}},
        ],
    },
}


def graph() -> NodeGraph:
    g = NodeGraph()
    g.set_pod(POD)
    return g


def node_may(method: str, path: str, **query: str) -> bool:
    return authorize("n1", request_info(method, path, query), graph(), node_rules()).allowed


def test_what_the_agent_does_the_node_authorizer_allows() -> None:
    # its pods, its own Node (watched by name) and Lease, Services for pods' environment
    assert node_may("GET", "/api/v1/pods", watch="1", fieldSelector="spec.nodeName=n1")
    assert node_may("GET", "/api/v1/nodes", watch="1", fieldSelector="metadata.name=n1")
    assert node_may("POST", "/api/v1/nodes")
    assert node_may("PATCH", "/api/v1/nodes/n1/status")
    assert node_may("PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
    assert node_may("GET", "/api/v1/services", watch="1")
    assert node_may("POST", "/api/v1/namespaces/ns/events")
    assert node_may("PATCH", "/api/v1/namespaces/ns/pods/web/status")
    assert node_may("DELETE", "/api/v1/namespaces/ns/pods/web")
    # what its pod mounts: a list and watch by name (the per-object watches), and a get
    for plural, name in (("configmaps", "cm"), ("secrets", "s")):
        by_name = f"metadata.name={name}"
        assert node_may("GET", f"/api/v1/namespaces/ns/{plural}", fieldSelector=by_name)
        assert node_may("GET", f"/api/v1/namespaces/ns/{plural}", watch="1", fieldSelector=by_name)
        assert node_may("GET", f"/api/v1/namespaces/ns/{plural}/{name}")
    assert node_may("POST", "/api/v1/namespaces/ns/serviceaccounts/robot/token")


def test_what_the_agent_no_longer_does_is_refused() -> None:
    assert not node_may("GET", "/api/v1/configmaps", watch="1")
    assert not node_may("GET", "/api/v1/secrets")
    assert not node_may("GET", "/api/v1/namespaces/ns/secrets")
    assert not node_may("GET", "/api/v1/namespaces/ns/secrets/other")
    assert not node_may("GET", "/api/v1/namespaces/ns/secrets", fieldSelector="metadata.name=x")
    assert not node_may("GET", "/api/v1/nodes", watch="1")  # every Node: the speaker's
    assert not node_may("GET", "/apis/discovery.k8s.io/v1/endpointslices", watch="1")
    assert not node_may("POST", "/api/v1/namespaces/ns/serviceaccounts/default/token")


# -- the controllers' and the speaker's roles ----------------------------------------------
BOOT = bootstrap_policy()
EXTRA = component_objects()
POLICY = Policy(
    BOOT.roles,
    [*BOOT.cluster_roles, *(o for o in EXTRA if o["kind"] == "ClusterRole")],
    BOOT.role_bindings,
    [*BOOT.cluster_role_bindings, *(o for o in EXTRA if o["kind"] == "ClusterRoleBinding")],
)


def account(controller: str) -> UserInfo:
    return service_account_user(*ACCOUNTS[controller])


def can(user: UserInfo, verb: str, resource: str, group: str = "", sub: str = "") -> bool:
    attrs = resource_attributes(verb, resource, group=group, namespace="ns", subresource=sub)
    return POLICY.authorize(user, attrs).allowed


# what each controller writes (kubesvc/controllers/*): its upstream role must allow it all
WRITES: dict[str, list[tuple[str, str, str, str]]] = {
    "endpoints": [("create", "endpoints", "", ""), ("update", "endpoints", "", "")],
    "endpointslice": [
        ("create", "endpointslices", "discovery.k8s.io", ""),
        ("update", "endpointslices", "discovery.k8s.io", ""),
        ("delete", "endpointslices", "discovery.k8s.io", ""),
    ],
    "endpointslice-mirroring": [("create", "endpointslices", "discovery.k8s.io", "")],
    "replicaset": [
        ("create", "pods", "", ""),
        ("delete", "pods", "", ""),
        ("patch", "pods", "", ""),
        ("update", "replicasets", "apps", "status"),
    ],
    "replicationcontroller": [
        ("create", "pods", "", ""),
        ("update", "replicationcontrollers", "", "status"),
    ],
    "deployment": [
        ("create", "replicasets", "apps", ""),
        ("update", "replicasets", "apps", ""),
        ("patch", "replicasets", "apps", ""),
        ("delete", "replicasets", "apps", ""),
        ("update", "deployments", "apps", "status"),
    ],
    "nodelifecycle": [
        ("patch", "nodes", "", ""),
        ("patch", "nodes", "", "status"),
        ("patch", "pods", "", "status"),
    ],
    "taint-eviction-controller": [("delete", "pods", "", ""), ("patch", "pods", "", "status")],
    "job": [
        ("create", "pods", "", ""),
        ("delete", "pods", "", ""),
        ("update", "jobs", "batch", "status"),
    ],
    "ttl-after-finished": [("delete", "jobs", "batch", "")],
    "daemonset": [("create", "pods", "", ""), ("update", "daemonsets", "apps", "status")],
    "cronjob": [
        ("create", "jobs", "batch", ""),
        ("delete", "jobs", "batch", ""),
        ("update", "cronjobs", "batch", "status"),
    ],
    "statefulset": [
        ("create", "pods", "", ""),
        ("create", "persistentvolumeclaims", "", ""),
        ("update", "statefulsets", "apps", "status"),
    ],
    "serviceaccount": [("create", "serviceaccounts", "", "")],
    "root-ca-cert-publisher": [("create", "configmaps", "", ""), ("update", "configmaps", "", "")],
    "persistentvolume-binder": [
        ("update", "persistentvolumes", "", ""),
        ("update", "persistentvolumes", "", "status"),
        ("update", "persistentvolumeclaims", "", ""),
        ("update", "persistentvolumeclaims", "", "status"),
    ],
    "resourcequota": [("update", "resourcequotas", "", "status")],
    "lbipam": [("update", "services", "", "status"), ("patch", "services", "", "")],
}


@pytest.mark.parametrize("controller", sorted(WRITES))
def test_each_controller_may_write_what_it_writes(controller: str) -> None:
    user = account(controller)
    for verb, resource, group, sub in WRITES[controller]:
        assert can(user, verb, resource, group, sub), (controller, verb, resource, sub)
    assert can(user, "create", "events"), controller
    # and no more than its role: none deletes namespaces, and only the quota controller
    # (which counts every kind: upstream's role lists and watches */*) lists Secrets
    assert can(user, "list", "secrets") == (controller == "resourcequota"), controller
    assert not can(user, "delete", "namespaces"), controller


def test_every_controller_but_the_scheduler_has_an_account() -> None:
    assert set(CONTROLLERS) - set(ACCOUNTS) == {"scheduler"}
    assert set(ACCOUNTS) - set(CONTROLLERS) == PARTS
    scheduler = UserInfo("system:kube-scheduler", "", ("system:authenticated",))
    assert can(scheduler, "create", "pods", sub="binding")
    assert can(scheduler, "patch", "pods", sub="status")
    assert not can(scheduler, "create", "pods")


def test_controller_manager_reads_everything_and_writes_little() -> None:
    kcm = UserInfo("system:kube-controller-manager", "", ("system:authenticated",))
    assert can(kcm, "list", "pods") and can(kcm, "watch", "secrets")
    assert can(kcm, "create", "serviceaccounts")
    assert can(kcm, "create", "serviceaccounts", sub="token")
    assert not can(kcm, "create", "pods")
    assert not can(kcm, "update", "deployments", "apps")
    assert not can(kcm, "delete", "nodes")


def test_speaker_reads_what_it_and_the_routes_need() -> None:
    speaker = UserInfo(SPEAKER_USER, "", ("system:authenticated",))
    assert can(speaker, "list", "nodes") and can(speaker, "watch", "services")
    assert can(speaker, "watch", "endpointslices", "discovery.k8s.io")
    assert can(speaker, "list", "ipaddresspools", "metallb.io")
    assert can(speaker, "watch", "l2advertisements", "metallb.io")
    assert can(speaker, "create", "events")
    assert not can(speaker, "get", "secrets")
    assert not can(speaker, "update", "services", sub="status")


def test_component_objects_are_written_before_serving() -> None:
    names = [o["metadata"]["name"] for o in [*BOOT.objects(), *EXTRA]]
    early = {n for n in names if component_object(n)}
    assert {"system:node-proxier", "system:kube-controller-manager", "system:kube-scheduler"} <= (
        early
    )
    assert "system:controller:replicaset-controller" not in early  # first after serving
    order = [o["metadata"]["name"] for o in _objects()]
    kinds = [o["kind"] for o in _objects()]
    first_binding = next(i for i, k in enumerate(kinds) if k.endswith("Binding"))
    assert all(not k.endswith("Binding") for k in kinds[:first_binding])
    assert all(k.endswith("Binding") for k in kinds[first_binding:])
    assert order[0].startswith("system:controller:")
    assert order[first_binding].startswith("system:controller:")
    assert bindings_needed(["job", "replicaset", "scheduler", "lbipam"]) == {
        "system:controller:job-controller",
        "system:controller:ttl-after-finished-controller",
        "system:controller:replicaset-controller",
    }
    have = {o["metadata"]["name"] for o in _objects() if o["kind"] == "ClusterRoleBinding"}
    assert bindings_needed(list(CONTROLLERS)) <= have
    assert "metallb-system:speaker" in early
    assert "cluster-admin" not in early and "system:node" not in early


# -- credentials ---------------------------------------------------------------------------
def test_each_node_and_component_gets_a_certificate(tmp_path: Path) -> None:
    idents = component_identities(["n1", "n2"])
    creds = ensure_credentials(tmp_path, ["127.0.0.1"], idents)
    by_stem = {i.stem: i for i in idents}
    assert by_stem["kubelet-n1"].user == node_user("n1") == "system:node:n1"
    assert by_stem["kubelet-n1"].groups == ("system:nodes",)
    assert by_stem["kube-controller-manager"].user == "system:kube-controller-manager"
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "kubelet-n2.crt").read_bytes())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [
        "system:node:n2"
    ]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:nodes"]
    assert (tmp_path / "pki" / "kubelet-n2.key").stat().st_mode & 0o777 == 0o600
    # the kubelet API's token is neither the admin token nor empty
    assert creds.kubelet_client_token and creds.kubelet_client_token != creds.token


def test_a_kubeconfig_without_its_credentials(tmp_path: Path) -> None:
    idents = component_identities([])
    creds = ensure_credentials(tmp_path, ["127.0.0.1"], idents)
    import base64

    import yaml

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    path = tmp_path / "k.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:6443",
                            "certificate-authority-data": b64(creds.ca_cert),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "client-certificate-data": b64(creds.admin_cert),
                            "client-key-data": b64(creds.admin_key),
                            "token": "t",
                        },
                    }
                ],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    assert load(path).token == "t"
    bare = load(path, credentials=False)
    assert bare.token is None and bare.server == "https://127.0.0.1:6443"
    assert bare.ssl_context.get_ca_certs()  # the cluster CA is still trusted


# -- per-object watches --------------------------------------------------------------------
def test_references_are_counted_per_pod() -> None:
    refs = References()
    cm, s = ("configMap", "ns", "cm"), ("secret", "ns", "s")
    assert refs.set_pod("a", [cm, s]) == ({cm, s}, set())
    assert refs.set_pod("b", [cm]) == (set(), set())
    assert refs.set_pod("a", [cm]) == (set(), {s})
    assert refs.forget_pod("a") == set()
    assert refs.forget_pod("b") == {cm}
    assert refs.referred() == set()
    # nameless or unknown references are no watch
    assert refs.set_pod("c", [("configMap", "ns", ""), ("other", "ns", "x")]) == (set(), set())


class FakeInformer:
    def __init__(self, kind: str, namespace: str, name: str) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        self.started = self.stopped = False
        self.cache: dict[str, Any] = {}
        self.has_synced = True

    def add_handler(self, *fns: Any) -> None:
        self.handlers = fns

    def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def get(self, key: str) -> Any:
        return self.cache.get(key)


def test_source_watches_start_and_stop_with_their_pods() -> None:
    made: list[FakeInformer] = []
    changes: list[tuple[str, str]] = []

    def informer(_client: Any, kind: str, namespace: str, name: str) -> Any:
        made.append(FakeInformer(kind, namespace, name))
        return made[-1]

    async def run() -> None:
        w = SourceWatches(
            None,  # type: ignore[arg-type]
            lambda k, o: changes.append((k, o["metadata"]["name"])),
            informer,  # type: ignore[arg-type]
        )
        w.set_pod("u1", "ns", {("configMap", "cm"), ("secret", "s")})
        w.set_pod("u2", "ns", {("configMap", "cm")})
        assert sorted((i.kind, i.name) for i in made) == [("ConfigMap", "cm"), ("Secret", "s")]
        assert all(i.started for i in made)
        cm = next(i for i in made if i.kind == "ConfigMap")
        cm.cache["ns/cm"] = {"metadata": {"name": "cm", "namespace": "ns"}}
        assert w.get("configMap", "ns", "cm") is cm.cache["ns/cm"]
        assert w.get("configMap", "ns", "other") is None
        cm.handlers[1]({}, cm.cache["ns/cm"])  # an update
        assert changes == [("configMap", "cm")]
        w.forget_pod("u1")
        await asyncio.sleep(0)
        assert [i.stopped for i in made if i.kind == "Secret"] == [True]
        assert not cm.stopped
        w.forget_pod("u2")
        await asyncio.sleep(0)
        assert cm.stopped

    asyncio.run(run())


# -- the controllers' tokens ---------------------------------------------------------------
class FakeRoot:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.accounts: set[str] = set()
        self.fail = False
        self.issued = 0

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        self.calls.append((method, path))
        if self.fail:
            raise ApiException(503, None, "down")
        if method == "GET":
            if path.rsplit("/", 1)[1] not in self.accounts:
                raise ApiException(404, None, "not found")
            return {}
        if path.endswith("/token"):
            assert body["spec"]["expirationSeconds"] == TOKEN_SECONDS
            self.issued += 1
            return {
                "status": {
                    "token": f"tok{self.issued}",
                    "expirationTimestamp": "2030-01-01T01:00:00Z",
                }
            }
        self.accounts.add(body["metadata"]["name"])
        return {}


def test_account_tokens_make_the_account_and_renew_before_expiry() -> None:
    expires = 1893459600.0  # 2030-01-01T01:00:00Z
    now = [expires - TOKEN_SECONDS]
    root = FakeRoot()
    token = AccountToken(root, "kube-system", "replicaset-controller", clock=lambda: now[0])  # type: ignore[arg-type]

    async def run() -> None:
        assert await token() == "tok1"
        assert ("POST", "/api/v1/namespaces/kube-system/serviceaccounts") in root.calls
        assert await token() == "tok1"  # cached
        assert root.issued == 1
        now[0] = renew_at(expires, TOKEN_SECONDS) + 1  # 80 % of its life gone
        assert await token() == "tok2"
        # the API server down: the current token serves while it is good
        root.fail = True
        now[0] = renew_at(expires, TOKEN_SECONDS) + 1
        token.invalidate()
        with pytest.raises(ApiException):
            await token()

    asyncio.run(run())
    assert renew_at(expires, TOKEN_SECONDS) == expires - 720
