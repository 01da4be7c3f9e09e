"""Nothing acknowledged is lost when the API server is killed; watchers resume."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import KUBECTL, ApiServerProcess

pytestmark = pytest.mark.e2e


def test_kill9_keeps_everything_and_watch_resumes(tmp_path: Path) -> None:
    server = ApiServerProcess(tmp_path / "data")
    server.start()
    try:
        for i in range(20):
            server.out("create", "configmap", f"cm{i}", f"--from-literal=i={i}")
        rv = json.loads(server.out("get", "cm", "cm19", "-o", "json"))["metadata"][
            "resourceVersion"
        ]
        server.out("create", "configmap", "after", "--from-literal=x=y")
        server.out("create", "service", "nodeport", "np", "--tcp=80:80", "--node-port=31000")
        server.kill9()
        server.start()
        names = server.out("get", "cm", "-o", "name").split()
        assert len([n for n in names if n.startswith("configmap/cm")]) == 20
        assert "configmap/after" in names
        # the allocator remembers what was taken before the crash
        err = server.fails(
            "create", "service", "nodeport", "np2", "--tcp=80:80", "--node-port=31000"
        )
        assert "provided port is already allocated" in err
        # a watch from the old resourceVersion replays what came after it
        url = f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        out = subprocess.run(
            [KUBECTL, "get", "--raw", url],
            capture_output=True,
            text=True,
            env=server.env(),
            timeout=30,
        ).stdout
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "after")
        ]
    finally:
        server.stop()


def test_compacted_history_gives_410_and_relist_works(tmp_path: Path) -> None:
    server = ApiServerProcess(tmp_path / "data", extra_args=("--etcd-compaction-interval", "0.5"))
    server.start()
    try:
        server.out("create", "configmap", "old", "--from-literal=a=b")
        for i in range(3):
            server.out("label", "configmap", "old", f"n={i}", "--overwrite")
        time.sleep(1.5)  # two compaction ticks
        url = "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2&timeoutSeconds=1"
        out = subprocess.run(
            [KUBECTL, "get", "--raw", url],
            capture_output=True,
            text=True,
            env=server.env(),
            timeout=30,
        ).stdout
        event = json.loads(out.splitlines()[0])
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
        assert event["object"]["message"].startswith("too old resource version: 2 (")
        listing = json.loads(server.out("get", "--raw", "/api/v1/namespaces/default/configmaps"))
        assert [i["metadata"]["name"] for i in listing["items"]] == ["old"]
    finally:
        server.stop()


def test_an_expired_continue_token_gives_410_with_a_token_that_goes_on(tmp_path: Path) -> None:
    """A continue token whose snapshot was compacted away: upstream's 410, whose Status
    carries a token that continues at the newest revision (an inconsistent list, as its
    message says), and that token works."""
    from kubernetes import client, config

    server = ApiServerProcess(tmp_path / "data", extra_args=("--etcd-compaction-interval", "0.5"))
    server.start()
    try:
        for n in "abc":
            server.out("create", "configmap", f"page-{n}")
        api = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))
        first = api.list_namespaced_config_map("default", limit=1)
        assert [i.metadata.name for i in first.items] == ["page-a"]
        token = first.metadata._continue
        for i in range(2):
            server.out("label", "configmap", "page-b", "page-c", f"n={i}", "--overwrite")
        server.out("create", "configmap", "page-d")
        time.sleep(1.5)  # two compaction ticks: the token's revision is gone
        with pytest.raises(client.ApiException) as expired:
            api.list_namespaced_config_map("default", limit=100, _continue=token)
        status = json.loads(expired.value.body)
        assert status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"].startswith("The provided continue parameter is too old")
        rest = api.list_namespaced_config_map(
            "default", limit=100, _continue=status["metadata"]["continue"]
        )
        after_first = sorted(
            {"page-a", "page-b", "page-c", "page-d"} - {first.items[0].metadata.name}
        )
        assert [i.metadata.name for i in rest.items] == after_first
        assert int(rest.metadata.resource_version) > int(first.metadata.resource_version)
        with pytest.raises(client.ApiException) as bad:  # rv 0 is no revision at all
            api.list_namespaced_config_map(
                "default", _continue="eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MCwic3RhcnQiOiIifQ"
            )
        assert bad.value.status == 400
    finally:
        server.stop()
