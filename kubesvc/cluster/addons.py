"""What `kubesvc up` installs into a new cluster: cluster DNS, the way kubeadm deploys it
(a `coredns` Deployment labelled k8s-app=kube-dns behind the `kube-dns` Service)."""

from __future__ import annotations

from typing import Any

from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.node.netplan import DNS_SERVICE_IP

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


async def install(client: ApiClient) -> None:
    for kind, obj in (("Service", dns_service()), ("Deployment", dns_deployment())):
        try:
            await client.create(kind, "kube-system", obj, field_manager="kubesvc-up")
        except ApiException as e:
            if e.status != 409:
                raise
