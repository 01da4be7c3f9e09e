"""~/.kube/config merging: entries kept, file private, concurrent writers never lose entries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesvc.cluster import kubeconfig


def admin(server: str) -> dict[str, Any]:
    return {
        "clusters": [{"name": "kubesvc", "cluster": {"server": server}}],
        "users": [{"name": "kubesvc-admin", "user": {"token": "t-" + server[-4:]}}],
    }


FOREIGN = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://prod.example:6443"}}],
    "users": [{"name": "prod-admin", "user": {"token": "secret"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod-admin"}}],
    "current-context": "prod",
}


def names(cfg: dict[str, Any], section: str) -> list[str]:
    return [i["name"] for i in cfg.get(section) or []]


def test_merge_keeps_other_entries_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(FOREIGN))
    path.chmod(0o644)
    kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.0.1:6443"), "a"))
    cfg = yaml.safe_load(path.read_text())
    assert names(cfg, "contexts") == ["prod", "kubesvc-a"]
    assert names(cfg, "clusters") == ["prod", "kubesvc-a"]
    assert names(cfg, "users") == ["prod-admin", "kubesvc-a-admin"]
    assert cfg["current-context"] == "kubesvc-a"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # merging again replaces, never duplicates
    kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.0.1:7443"), "a"))
    cfg = yaml.safe_load(path.read_text())
    assert names(cfg, "contexts") == ["prod", "kubesvc-a"]
    assert cfg["clusters"][1]["cluster"]["server"] == "https://172.31.0.1:7443"
    assert sorted(os.listdir(path.parent)) == [".config.kubesvc-lock", "config"]


def test_remove_clears_current_context_only_when_it_was_ours(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(FOREIGN))
    kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.0.1:6443"), "a"))
    kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.1.1:6443"), "b"))
    kubeconfig.remove(path, "a")
    cfg = yaml.safe_load(path.read_text())
    assert names(cfg, "contexts") == ["prod", "kubesvc-b"]
    assert names(cfg, "users") == ["prod-admin", "kubesvc-b-admin"]
    assert cfg["current-context"] == "kubesvc-b"
    kubeconfig.remove(path, "b")
    cfg = yaml.safe_load(path.read_text())
    assert names(cfg, "contexts") == ["prod"]
    assert names(cfg, "clusters") == ["prod"]
    assert cfg["current-context"] == ""
    kubeconfig.remove(path, "never-there")  # nothing to do, no error
    kubeconfig.remove(tmp_path / "missing", "a")
    assert not (tmp_path / "missing").exists()


def test_symlinked_kubeconfig_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-config"
    real.write_text(yaml.safe_dump(FOREIGN))
    link = tmp_path / "config"
    link.symlink_to(real)
    kubeconfig.merge(link, kubeconfig.named(admin("https://172.31.0.1:6443"), "a"))
    assert link.is_symlink()
    assert "kubesvc-a" in names(yaml.safe_load(real.read_text()), "contexts")


def test_invalid_kubeconfig_is_left_alone_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(kubeconfig.KubeconfigError, match="move it away"):
        kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.0.1:6443"), "a"))
    assert path.read_text() == "clusters: [unclosed\n"


def test_kubectl_lock_is_waited_for_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(FOREIGN))
    (tmp_path / "config.lock").write_text("")  # a kubectl that is writing, or died writing
    monkeypatch.setattr(kubeconfig, "KUBECTL_LOCK_WAIT", 0.2)
    with pytest.raises(kubeconfig.KubeconfigError, match="remove it if no kubectl is running"):
        kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.0.1:6443"), "a"))
    assert yaml.safe_load(path.read_text()) == FOREIGN
    (tmp_path / "config.lock").unlink()
    kubeconfig.merge(path, kubeconfig.named(admin("https://172.31.0.1:6443"), "a"))
    assert not (tmp_path / "config.lock").exists()


WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kubesvc.cluster import kubeconfig

    path, i = Path(sys.argv[1]), int(sys.argv[2])
    name = f"c{i}"
    cfg = {
        "clusters": [{"name": "x", "cluster": {"server": f"https://10.0.0.{i}:6443"}}],
        "users": [{"name": "x-admin", "user": {"token": f"token-{i}"}}],
    }
    for _ in range(3):
        kubeconfig.merge(path, kubeconfig.named(cfg, name))
        if i % 2:
            kubeconfig.remove(path, name)
    """
)


def test_concurrent_merges_and_removals_keep_exactly_the_live_contexts(tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(FOREIGN))
    n = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(n)
    ]
    errors = []
    for p in procs:
        _out, err = p.communicate(timeout=120)
        if p.returncode != 0:
            errors.append(err.decode())
    assert errors == []
    cfg = yaml.safe_load(path.read_text())
    live = {f"kubesvc-c{i}" for i in range(n) if i % 2 == 0}
    assert set(names(cfg, "contexts")) == live | {"prod"}
    assert len(names(cfg, "contexts")) == len(live) + 1
    assert set(names(cfg, "clusters")) == live | {"prod"}
    assert set(names(cfg, "users")) == {f"{c}-admin" for c in live} | {"prod-admin"}
    for c in cfg["clusters"]:
        if c["name"] != "prod":
            i = int(c["name"].removeprefix("kubesvc-c"))
            assert c["cluster"]["server"] == f"https://10.0.0.{i}:6443"
    assert cfg["current-context"] in live | {""}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == [".config.kubesvc-lock", "config"]
