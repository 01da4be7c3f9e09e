"""Workload objects with wrong types or unusable values written straight into the store:
the DaemonSet, StatefulSet, Job, CronJob and ReplicationController controllers leave them out
(logged once) and go on running the good ones next to them."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import ControllerManagerProcess, wait_for
from tests.e2e.stored import InProcessApiServer

pytestmark = pytest.mark.e2e

TEMPLATE = {
    "metadata": {"labels": {"app": "good"}},
    "spec": {"containers": [{"name": "c", "image": "pause"}]},
}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApiServer]:
    srv = InProcessApiServer(tmp_path_factory.mktemp("wpoison") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def cm(stored: InProcessApiServer) -> Iterator[ControllerManagerProcess]:
    proc = ControllerManagerProcess(stored.kubeconfig)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def pns(stored: InProcessApiServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "w-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    name += "-" + secrets.token_hex(2)
    stored.kubectl("create", "namespace", name)
    yield name
    stored.kubectl("delete", "namespace", name, "--wait=false", check=False)


def raw(kind: str, api_version: str, ns: str, name: str, spec: Any) -> str:
    obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": spec,
    }
    return json.dumps(obj)


def poison(ns: str) -> list[tuple[str, str, str]]:
    """(kind, name, stored JSON): wrong types and values no controller can run."""
    return [
        ("DaemonSet", "bad-ds", raw("DaemonSet", "apps/v1", ns, "bad-ds", {"template": "x"})),
        (
            "DaemonSet",
            "noselector-ds",
            raw("DaemonSet", "apps/v1", ns, "noselector-ds", {"template": TEMPLATE}),
        ),
        ("StatefulSet", "bad-sts", raw("StatefulSet", "apps/v1", ns, "bad-sts", {"replicas": "3"})),
        (
            "StatefulSet",
            "huge-sts",
            raw(
                "StatefulSet",
                "apps/v1",
                ns,
                "huge-sts",
                {"replicas": 2**31 - 1, "selector": {"matchLabels": {"x": "y"}}, "template": {}},
            ),
        ),
        ("Job", "bad-job", raw("Job", "batch/v1", ns, "bad-job", {"parallelism": 1.5})),
        ("Job", "empty-job", raw("Job", "batch/v1", ns, "empty-job", {})),
        ("CronJob", "bad-cj", raw("CronJob", "batch/v1", ns, "bad-cj", {"schedule": 5})),
        (
            "CronJob",
            "nonsense-cj",
            raw(
                "CronJob",
                "batch/v1",
                ns,
                "nonsense-cj",
                {"schedule": "61 99 * * *", "timeZone": "../etc"},
            ),
        ),
        (
            "ReplicationController",
            "bad-rc",
            raw("ReplicationController", "v1", ns, "bad-rc", {"selector": "x", "replicas": 2}),
        ),
    ]


def test_workload_controllers_run_good_objects_next_to_poison(
    stored: InProcessApiServer, cm: ControllerManagerProcess, pns: str
) -> None:
    for kind, name, body in poison(pns):
        stored.put_raw(kind, pns, name, body)
    stored.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "good-job", "namespace": pns},
            "spec": {"template": {"spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "good-sts", "namespace": pns},
            "spec": {
                "serviceName": "good",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "good"}},
                "template": TEMPLATE,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ReplicationController",
            "metadata": {"name": "good-rc", "namespace": pns},
            "spec": {
                "replicas": 1,
                "selector": {"rc": "good"},
                "template": {"metadata": {"labels": {"rc": "good"}}, "spec": TEMPLATE["spec"]},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "good-ds", "namespace": pns},
            "spec": {"selector": {"matchLabels": {"app": "good"}}, "template": TEMPLATE},
        },
    )

    def pods() -> set[str]:
        items = stored.run(stored.client.list("Pod", pns))["items"]
        return {p["metadata"]["name"] for p in items}

    # no nodes run here: the pods stay Pending, but the controllers made them
    wait_for(lambda: "good-sts-0" in pods(), timeout=30, what="the StatefulSet's pod")
    wait_for(lambda: any(n.startswith("good-job-") for n in pods()), timeout=30, what="job pod")
    wait_for(lambda: any(n.startswith("good-rc-") for n in pods()), timeout=30, what="rc pod")
    ds = stored.run(stored.client.get("DaemonSet", pns, "good-ds"))
    wait_for(
        lambda: (
            (stored.run(stored.client.get("DaemonSet", pns, "good-ds")).get("status") or {}).get(
                "observedGeneration"
            )
            == ds["metadata"]["generation"]
        ),
        timeout=30,
        what="the DaemonSet's status",
    )
    assert not any(n.startswith(("bad-", "huge-", "noselector-", "empty-")) for n in pods())
    assert cm.proc is not None and cm.proc.poll() is None
    # each one is logged as unusable, once
    log = (cm.kubeconfig.parent.parent / "controller-manager.log").read_text()
    for _, name, _ in poison(pns):
        lines = [
            line
            for line in log.splitlines()
            if f"key={pns}/{name} " in line and "cannot be used" in line
        ]
        assert len(lines) == 1, (name, lines)
