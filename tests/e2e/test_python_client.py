"""The official `kubernetes` Python client against a real kubesvc API server."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_client(api: ApiServerProcess) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(api.kubeconfig))


def _service(name: str) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1ServiceSpec(
            selector={"app": name},
            ports=[client.V1ServicePort(name="http", port=80, target_port=8080)],
        ),
    )


def test_typed_crud(api_client: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api_client)
    created = v1.create_namespaced_service(ns, _service("py"))
    assert created.spec.cluster_ip and created.spec.ports[0].protocol == "TCP"
    read = v1.read_namespaced_service("py", ns)
    assert read.metadata.uid == created.metadata.uid
    patched = v1.patch_namespaced_service("py", ns, {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels["extra"] == "1"
    patched.spec.session_affinity = "ClientIP"
    replaced = v1.replace_namespaced_service("py", ns, patched)
    assert replaced.spec.session_affinity_config.client_ip.timeout_seconds == 10800
    listed = v1.list_namespaced_service(ns, label_selector="app=py")
    assert [s.metadata.name for s in listed.items] == ["py"]
    deleted = v1.delete_namespaced_service("py", ns)
    assert deleted.metadata.name == "py"
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_service("py", ns)
    assert err.value.status == 404

    apps = client.AppsV1Api(api_client)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "d"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "d"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
            ),
        ),
    )
    apps.create_namespaced_deployment(ns, dep)
    assert apps.read_namespaced_deployment("d", ns).spec.strategy.type == "RollingUpdate"
    apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment_scale("d", ns).spec.replicas == 4


def test_watch_stream(api_client: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api_client)
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for event in w.stream(v1.list_namespaced_config_map, ns, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    v1.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1"), data={"a": "b"})
    )
    v1.patch_namespaced_config_map("w1", ns, {"data": {"a": "c"}})
    v1.delete_namespaced_config_map("w1", ns)
    t.join(timeout=15)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_dynamic_client(api_client: client.ApiClient, ns: str) -> None:
    dyn = dynamic.DynamicClient(api_client)
    services = dyn.resources.get(api_version="v1", kind="Service")
    svc = services.create(
        namespace=ns,
        body={
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "dyn"},
            "spec": {"ports": [{"port": 53, "protocol": "UDP"}], "selector": {"app": "dns"}},
        },
    )
    assert svc.spec.clusterIP
    got = services.get(name="dyn", namespace=ns)
    assert got.spec.ports[0].protocol == "UDP"
    slices = dyn.resources.get(api_version="discovery.k8s.io/v1", kind="EndpointSlice")
    assert slices.get(namespace=ns).items == []
    services.delete(name="dyn", namespace=ns)
