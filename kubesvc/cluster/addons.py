"""What `kubesvc up` installs into a new cluster: cluster DNS, the way kubeadm deploys it
(a `coredns` Deployment labelled k8s-app=kube-dns behind the `kube-dns` Service), and
MetalLB's CRDs with an IPAddressPool and an L2Advertisement `default` in `metallb-system`
for LoadBalancer Services (.240-.254 of the node network), and the ingress controller
(docs/ingress.md) unless `kubesvc up --no-ingress`. DNS and the ingress controller run as
their own ServiceAccounts with the roles upstream's manifests give them (CoreDNS's
system:coredns, ingress-nginx's ClusterRole), so they work under RBAC."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubesvc.api.crd.kinds import CRD_KIND
from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.controllers.lbipam import metallb
from kubesvc.node.netplan import DNS_SERVICE_IP, ClusterNet, lb_pool_range

DNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
LABELS = {"k8s-app": "kube-dns"}


def dns_service() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {
                **LABELS,
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
        },
        "spec": {
            "selector": dict(LABELS),
            "clusterIP": DNS_SERVICE_IP,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }


def dns_deployment(replicas: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": dict(LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": DNS_ACCOUNT,
                    "dnsPolicy": "Default",
                    "containers": [
                        {
                            "name": "coredns",
                            "image": DNS_IMAGE,
                            "args": ["--listen=0.0.0.0:53", "--metrics=0.0.0.0:9153"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 9153},
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 9153},
                                "periodSeconds": 10,
                                "failureThreshold": 5,
                            },
                        }
                    ],
                },
            },
        },
    }


DNS_ACCOUNT = "coredns"  # as CoreDNS's own manifests name its ServiceAccount
RBAC_GROUP = "rbac.authorization.k8s.io"


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def cluster_role_for(
    namespace: str, account: str, role: str, rules: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """(kind, object): a ClusterRole and its binding to the ServiceAccount namespace/account."""
    return [
        ("ClusterRole", {"metadata": {"name": role}, "rules": rules}),
        (
            "ClusterRoleBinding",
            {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            },
        ),
    ]


def dns_rbac() -> list[tuple[str, dict[str, Any]]]:
    """CoreDNS's manifest: ClusterRole system:coredns bound to kube-system/coredns."""
    rules = [
        _rule([""], ["endpoints", "services", "pods", "namespaces"], ["list", "watch"]),
        _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
    ]
    return cluster_role_for("kube-system", DNS_ACCOUNT, "system:coredns", rules)


def service_account(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}


async def install(client: ApiClient, net: ClusterNet, ingress: bool = True) -> None:
    for kind, obj in dns_rbac():
        await _create(client, kind, None, obj)
    # the ServiceAccount first: its pods are refused while it does not exist
    for kind, obj in (
        ("ServiceAccount", service_account(DNS_ACCOUNT)),
        ("Service", dns_service()),
        ("Deployment", dns_deployment()),
    ):
        await _create(client, kind, "kube-system", obj)
    await install_metallb(client, lb_pool_range(net))
    if ingress:
        await install_ingress(client)


INGRESS_NAMESPACE = "ingress-kubesvc"
INGRESS_NAME = "ingress-kubesvc-controller"
INGRESS_IMAGE = "kubesvc/ingress-controller:v0.1"
INGRESS_LABELS = {"app.kubernetes.io/name": "ingress-kubesvc"}
INGRESS_ACCOUNT = "ingress-kubesvc"  # as ingress-nginx's manifests name theirs ingress-nginx


def ingress_rbac() -> list[tuple[str, dict[str, Any]]]:
    """ingress-nginx's ClusterRole for what this controller does: watch Ingresses,
    IngressClasses, Services, EndpointSlices, Nodes and Secrets, write Ingresses' status,
    record Events."""
    rules = [
        _rule([""], ["services", "secrets", "nodes"], ["get", "list", "watch"]),
        _rule(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
        _rule(["networking.k8s.io"], ["ingresses", "ingressclasses"], ["get", "list", "watch"]),
        _rule(["networking.k8s.io"], ["ingresses/status"], ["update", "patch"]),
        _rule([""], ["events"], ["create", "patch"]),
    ]
    return cluster_role_for(INGRESS_NAMESPACE, INGRESS_ACCOUNT, INGRESS_ACCOUNT, rules)


def ingress_class() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "kubesvc",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": "kubesvc.io/ingress-controller"},
    }


def ingress_service() -> dict[str, Any]:
    return {
        "metadata": {
            "name": INGRESS_NAME,
            "namespace": INGRESS_NAMESPACE,
            "labels": dict(INGRESS_LABELS),
        },
        "spec": {
            "type": "LoadBalancer",
            # as ingress-nginx's manifests: the client's address reaches the controller (for
            # X-Forwarded-For); only nodes with a controller pod answer
            "externalTrafficPolicy": "Local",
            "selector": dict(INGRESS_LABELS),
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"},
            ],
        },
    }


def ingress_deployment() -> dict[str, Any]:
    return {
        "metadata": {
            "name": INGRESS_NAME,
            "namespace": INGRESS_NAMESPACE,
            "labels": dict(INGRESS_LABELS),
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(INGRESS_LABELS)},
            "template": {
                "metadata": {"labels": dict(INGRESS_LABELS)},
                "spec": {
                    "serviceAccountName": INGRESS_ACCOUNT,
                    "containers": [
                        {
                            "name": "controller",
                            "image": INGRESS_IMAGE,
                            "args": [f"--publish-service={INGRESS_NAMESPACE}/{INGRESS_NAME}"],
                            "ports": [
                                {"name": "http", "containerPort": 80, "protocol": "TCP"},
                                {"name": "https", "containerPort": 443, "protocol": "TCP"},
                                {"name": "health", "containerPort": 10254, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 10255, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": 10254},
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": 10254},
                                "periodSeconds": 10,
                                "failureThreshold": 5,
                            },
                        }
                    ],
                },
            },
        },
    }


async def install_ingress(client: ApiClient) -> None:
    """kubesvc's ingress controller as ingress-nginx is deployed: its namespace, the
    default IngressClass, a LoadBalancer Service (NodePorts too) and a Deployment. Only
    objects are created here: `kubesvc up` does not wait for the pod."""
    await _create(client, "IngressClass", None, ingress_class())
    await _create(client, "Namespace", None, {"metadata": {"name": INGRESS_NAMESPACE}})
    for kind, obj in ingress_rbac():
        await _create(client, kind, None, obj)
    for kind, obj in (
        ("ServiceAccount", service_account(INGRESS_ACCOUNT)),
        ("Service", ingress_service()),
        ("Deployment", ingress_deployment()),
    ):
        await _create(client, kind, INGRESS_NAMESPACE, obj)


async def install_metallb(client: ApiClient, addresses: str, wait: float = 10.0) -> None:
    for crd in metallb.crds():
        await _create(client, CRD_KIND, None, crd)
    namespace = {"metadata": {"name": metallb.NAMESPACE}}
    await _create(client, "Namespace", None, namespace)
    deadline = time.monotonic() + wait
    for kind, obj in (
        (metallb.IP_ADDRESS_POOL, metallb.default_pool(addresses)),
        (metallb.L2_ADVERTISEMENT, metallb.default_l2_advertisement()),
    ):
        while True:
            try:
                await _create(client, kind, metallb.NAMESPACE, obj)
                break
            except ApiException as e:
                # a CRD is served a moment after it is created
                if e.status != 404 or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)


async def _create(client: ApiClient, kind: Any, namespace: str | None, obj: Any) -> None:
    try:
        await client.create(kind, namespace, obj, field_manager="kubesvc-up")
    except ApiException as e:
        if e.status != 409:
            raise
