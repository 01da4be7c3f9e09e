"""What the supervisor runs for a cluster, from cluster.json: the store's members, the API
servers and the controller-managers (pure: no process is started)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubesvc.cluster.etcd import EtcdPlan
from kubesvc.cluster.lifecycle import Cluster, components


def cluster(tmp_path: Path, **state: Any) -> Cluster:
    c = Cluster("c1", tmp_path / "c1")
    c.dir.mkdir(parents=True)
    base = {"name": "c1", "node_cidr": "172.31.9.0/24", "nodes": ["c1-node-1"]}
    (c.dir / "cluster.json").write_text(json.dumps({**base, **state}))
    return c


def names(c: Cluster) -> list[str]:
    return [comp.name for comp in components(c)]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_sqlite_one_of_each_without_election(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    comps = {x.name: x for x in components(c)}
    assert list(comps) == ["apiserver", "controller-manager", "c1-node-1"]
    assert "--etcd-servers" not in comps["apiserver"].argv
    assert "--leader-elect=false" in comps["controller-manager"].argv
    # several API servers need a shared store: on SQLite the setting is not taken
    assert names(cluster(tmp_path / "x", apiservers=2)) == names(c)


def test_etcd_members_api_servers_and_elected_controller_managers(tmp_path: Path) -> None:
    plan = EtcdPlan("c1", (2379, 2380, 2381), (2479, 2480, 2481))
    c = cluster(tmp_path, store="etcd", etcd=plan.state(), apiservers=2, controller_managers=2)
    comps = {x.name: x for x in components(c)}
    assert list(comps) == [
        "etcd-1", "etcd-2", "etcd-3", "apiserver", "apiserver-2",
        "controller-manager", "controller-manager-2", "c1-node-1",
    ]  # fmt: skip
    one, two = comps["apiserver"].argv, comps["apiserver-2"].argv
    assert (flag(one, "--bind"), flag(two, "--bind")) == ("172.31.9.1", "172.31.9.2")
    peers = "https://172.31.9.1:6443,https://172.31.9.2:6443"
    assert flag(one, "--apiserver-peers") == flag(two, "--apiserver-peers") == peers
    servers = "https://127.0.0.1:2379,https://127.0.0.1:2380,https://127.0.0.1:2381"
    assert flag(one, "--etcd-servers") == servers
    assert "--leader-elect=false" not in comps["controller-manager-2"].argv
    member = comps["etcd-2"].argv
    assert flag(member, "--listen-client-urls") == "https://127.0.0.1:2380"
    assert "--client-cert-auth" in member and "--peer-client-cert-auth" in member
    assert flag(member, "--initial-cluster").count("=https://127.0.0.1:") == 3


def test_the_users_etcd(tmp_path: Path) -> None:
    c = cluster(
        tmp_path, store="etcd",
        etcd_servers={"servers": "https://10.0.0.5:2379", "cafile": "/ca.crt"},
    )  # fmt: skip
    comps = {x.name: x for x in components(c)}
    assert not any(n.startswith("etcd-") for n in comps)
    argv = comps["apiserver"].argv
    assert flag(argv, "--etcd-servers") == "https://10.0.0.5:2379"
    assert flag(argv, "--etcd-cafile") == "/ca.crt" and "--etcd-keyfile" not in argv
