"""Controllers survive an API server crash and dropped watches without missing or
duplicating work."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ApiServerProcess, ControllerManagerProcess, wait_for
from tests.e2e.test_workloads import Kubelet, deployment

pytestmark = pytest.mark.e2e

NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node-r"},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}
SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _endpoint_ips(api: ApiServerProcess) -> set[str]:
    ep = json.loads(api.out("get", "endpoints", "web", "-o", "json"))
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def test_controllers_recover_from_apiserver_crash(tmp_path: Path) -> None:
    api = ApiServerProcess(tmp_path / "data", port=_free_port())
    api.start()
    cm = ControllerManagerProcess(api.kubeconfig, "endpoints,replicaset,deployment,scheduler")
    try:
        cm.start()
        api.out("create", "-f", "-", input=json.dumps(NODE))
        api.out("create", "-f", "-", input=deployment(replicas=3) + "---" + SERVICE)
        kubelet = Kubelet(api, "default")
        wait_for(lambda: len(kubelet.live("app=web")) == 3, what="3 pods")
        kubelet.start_all("app=web")
        wait_for(lambda: len(_endpoint_ips(api)) == 3, what="3 endpoints")

        # crash the API server; the controllers' watches drop and their lists fail
        api.kill9()
        time.sleep(1.0)
        api.start()
        api.out("scale", "deployment", "web", "--replicas=5")
        wait_for(lambda: len(kubelet.live("app=web")) == 5, what="5 pods after restart")
        kubelet.start_all("app=web")
        wait_for(lambda: len(_endpoint_ips(api)) == 5, what="5 endpoints after restart")

        # a clean restart drops every watch again; nothing is created twice meanwhile
        api.stop()
        api.start()
        victim = kubelet.live("app=web")[0]["metadata"]["name"]
        api.out("delete", "pod", victim, "--grace-period=0", "--force")
        wait_for(
            lambda: (
                victim not in {p["metadata"]["name"] for p in kubelet.live("app=web")}
                and len(kubelet.live("app=web")) == 5
            ),
            what="replacement pod",
        )
        kubelet.start_all("app=web")
        wait_for(lambda: len(_endpoint_ips(api)) == 5, what="endpoints follow the replacement")
        time.sleep(2.0)
        assert len(kubelet.pods("app=web")) == 5
        rs = json.loads(api.out("get", "rs", "-l", "app=web", "-o", "json"))["items"]
        assert len(rs) == 1 and rs[0]["status"]["replicas"] == 5
    finally:
        cm.stop()
        api.stop()
