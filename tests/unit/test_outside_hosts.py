"""Outside hosts and stopped nodes: addresses, names and what cluster.json may hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.cli.main import build_parser, main
from kubesvc.cluster.hosts import check_name, recorded
from kubesvc.cluster.lifecycle import running_nodes, stopped_nodes, tunable_flags
from kubesvc.node.agent import conditions_overwritten
from kubesvc.node.netplan import ClusterNet, pick_outside_host_index

NET = ClusterNet("demo", "172.31.7.0/24")


def test_outside_host_addresses_and_names() -> None:
    assert NET.outside_host_ip(0) == "172.31.7.100"
    assert NET.outside_host_ip(99) == "172.31.7.199"
    for bad in (-1, 100):
        with pytest.raises(ValueError):
            NET.outside_host_ip(bad)
    assert NET.outside_host_netns("laptop") == "ksv-demo-h-laptop"
    assert NET.outside_host_netns("laptop").startswith(NET.netns_prefix)  # down finds it
    veth = NET.outside_host_veth("laptop")
    assert veth.startswith("kh") and len(veth) <= 15
    assert veth != NET.outside_host_veth("db")
    assert NET.node_veth("laptop") != veth


def test_pick_outside_host_index() -> None:
    assert pick_outside_host_index([]) == 0
    assert pick_outside_host_index([0, 1, 3]) == 2
    with pytest.raises(ValueError, match="taken"):
        pick_outside_host_index(range(100))


@pytest.mark.parametrize("name", ["laptop", "db", "a", "client-1", "x" * 32])
def test_good_host_names(name: str) -> None:
    assert check_name(name) is None


@pytest.mark.parametrize("name", ["", "-a", "a-", "Laptop", "a_b", "a.b", "x" * 33, "a/b"])
def test_bad_host_names(name: str) -> None:
    assert check_name(name) is not None


@given(st.dictionaries(st.text(max_size=40), st.integers() | st.text() | st.none()) | st.text())
def test_recorded_hosts_read_defensively(hosts: Any) -> None:
    out = recorded({"hosts": hosts})
    assert all(check_name(k) is None and isinstance(v, int) for k, v in out.items())
    for index in out.values():
        NET.outside_host_ip(index)  # every slot read back is one that has an address


def test_stopped_nodes_and_tunables() -> None:
    state: dict[str, Any] = {"nodes": ["n1", "n2"], "stopped_nodes": ["n2", "n9", 3]}
    assert stopped_nodes(state) == ["n2"]
    assert running_nodes(state) == ["n1"]
    assert stopped_nodes({"nodes": ["n1"], "stopped_nodes": "n1"}) == []
    assert tunable_flags({}) == {"apiserver": [], "controller-manager": []}
    flags = tunable_flags(
        {
            "node_monitor_grace_period": 8.0,
            "default_not_ready_toleration_seconds": 10,
            "default_unreachable_toleration_seconds": "x",
        }
    )
    assert tunable_flags({"node_monitor_grace_period": float("inf")})["controller-manager"] == []
    assert flags == {
        "apiserver": ["--default-not-ready-toleration-seconds", "10"],
        "controller-manager": ["--node-monitor-grace-period", "8"],
    }


def test_command_line() -> None:
    p = build_parser()
    args = p.parse_args(["node", "--name", "n1", "--cluster", "c", "--kubeconfig", "k",
                         "--node-ip", "1.2.3.4", "--node-cidr", "1.2.3.0/24",
                         "--pod-cidr", "10.244.0.0/24", "--state-dir", "/x"])  # fmt: skip
    assert args.name == "n1"  # the agent
    args = p.parse_args(["up", "--node-monitor-grace-period", "5",
                         "--default-unreachable-toleration-seconds", "10"])  # fmt: skip
    assert args.node_monitor_grace_period == 5.0
    assert args.default_unreachable_toleration_seconds == 10


def test_host_exec_takes_the_command_after_the_dashes(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBESVC_HOME", str(tmp_path))
    assert main(["host", "exec", "laptop", "--name", "c", "--", "curl", "--name", "x"]) == 1
    assert "cluster 'c' has no host 'laptop'" in capsys.readouterr().err
    assert main(["host", "exec", "laptop"]) == 2
    assert "no command" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["status", "--", "x"])


def test_node_verbs_are_told_from_the_agent(capsys: pytest.CaptureFixture[str]) -> None:
    # `kubesvc node stop` reaches the administrative command (it needs root: it says so)
    code = main(["node", "stop", "n1", "--name", "nosuch"])
    err = capsys.readouterr().err
    assert code == 1
    assert "nosuch" in err or "needs root" in err


def test_the_agent_sees_its_pod_conditions_overwritten() -> None:
    published = json.dumps(
        {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"},
                                            {"type": "Initialized", "status": "True"}]}
    )  # fmt: skip

    def pod(*conds: tuple[str, str]) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conds]}}

    assert not conditions_overwritten(published, pod(("Ready", "True"), ("Initialized", "True")))
    assert conditions_overwritten(published, pod(("Ready", "False"), ("Initialized", "True")))
    assert not conditions_overwritten(published, pod())  # nothing to compare yet
    assert not conditions_overwritten(published, {"status": None})
    assert not conditions_overwritten("not json", pod(("Ready", "False")))
    assert not conditions_overwritten(published, {"status": {"conditions": ["x", 3]}})
