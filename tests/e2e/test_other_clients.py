"""Clients other than kubectl and the official one, from PyPI, unchanged: lightkube and kr8s
do their basic operations against a kubesvc API server."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ApiServerProcess

pytestmark = pytest.mark.e2e


def test_lightkube(api: ApiServerProcess, ns: str) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.models.core_v1 import ServicePort, ServiceSpec
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap, Service

    client = Client(config=KubeConfig.from_file(str(api.kubeconfig)), namespace=ns)
    cm = client.create(ConfigMap(metadata=ObjectMeta(name="lk"), data={"a": "1"}))
    assert cm.metadata is not None and cm.metadata.uid
    patched = client.patch(ConfigMap, "lk", {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}
    applied = client.apply(
        ConfigMap(metadata=ObjectMeta(name="lk-ssa"), data={"c": "3"}), field_manager="lk"
    )
    assert applied.data == {"c": "3"}
    assert {c.metadata.name for c in client.list(ConfigMap)} >= {"lk", "lk-ssa"}  # type: ignore[union-attr]
    events = client.watch(ConfigMap, resource_version=cm.metadata.resourceVersion)
    client.delete(ConfigMap, "lk-ssa")
    for op, obj in events:
        if op == "DELETED":
            assert obj.metadata.name == "lk-ssa"  # type: ignore[union-attr]
            break
    svc = client.create(
        Service(
            metadata=ObjectMeta(name="lk-svc"),
            spec=ServiceSpec(ports=[ServicePort(port=80)], selector={"app": "x"}),
        )
    )
    assert svc.spec is not None and svc.spec.clusterIP
    client.delete(Service, "lk-svc")
    client.delete(ConfigMap, "lk")


def test_kr8s(api: ApiServerProcess, ns: str) -> None:
    import kr8s
    from kr8s.objects import ConfigMap, Service

    client = kr8s.api(kubeconfig=str(api.kubeconfig))
    assert client.version()["major"] == "1"
    cm = ConfigMap(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k8s", "namespace": ns}},
        api=client,
    )
    cm.create()
    cm.patch({"data": {"b": "2"}})
    cm.refresh()
    assert cm.raw["data"] == {"b": "2"}
    names = {c.name for c in client.get("configmaps", namespace=ns)}
    assert "k8s" in names
    svc = Service(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "k8s-svc", "namespace": ns},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}},
        },
        api=client,
    )
    svc.create()
    assert svc.raw["spec"]["clusterIP"]
    svc.delete()
    cm.delete()
    assert not cm.exists()
