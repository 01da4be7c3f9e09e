"""The pure parts of pod volumes: the plan (files, modes, errors), mount planning, path
rules, hostPath type rules, the atomic writer's names and layout, hostile pod specs."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.node import atomicwriter, mounts, podroot, volumes
from kubesvc.node.podenv import DictLookup
from kubesvc.node.volumes import FileEntry, PathFacts

NS = "default"


def pod(vols: list[Any], mounts_: list[Any] | None = None, **meta: Any) -> dict[str, Any]:
    if mounts_ is None:
        mounts_ = [
            {"name": v["name"], "mountPath": f"/m/{v['name']}"} for v in vols if isinstance(v, dict)
        ]
    return {
        "metadata": {"name": "p", "namespace": NS, "uid": "u-1", **meta},
        "spec": {
            "containers": [{"name": "c", "volumeMounts": mounts_}],
            "volumes": vols,
        },
    }


LOOKUP = DictLookup(
    {(NS, "cm"): {"data": {"a": "alpha", "b": "beta"}, "binaryData": {"bin": "AAE="}}},
    {(NS, "sec"): {"data": {"p": base64.b64encode(b"hunter2").decode()}}},
)


def plan(vol: dict[str, Any], **meta: Any) -> volumes.VolumePlan:
    return volumes.plan_volume(vol, pod([vol], **meta), LOOKUP, tokens={("", 3600): "tok"})


def files(p: volumes.VolumePlan) -> dict[str, tuple[bytes, int]]:
    return {f.path: (f.data, f.mode) for f in p.files}


@pytest.mark.parametrize(
    ("vol", "want"),
    [
        pytest.param(
            {"name": "v", "configMap": {"name": "cm"}},
            {"a": (b"alpha", 0o644), "b": (b"beta", 0o644), "bin": (b"\0\1", 0o644)},
            id="configmap-all-keys",
        ),
        pytest.param(
            {
                "name": "v",
                "configMap": {
                    "name": "cm",
                    "defaultMode": 0o440,
                    "items": [
                        {"key": "a", "path": "x/y"},
                        {"key": "b", "path": "z", "mode": 0o600},
                    ],
                },
            },
            {"x/y": (b"alpha", 0o440), "z": (b"beta", 0o600)},
            id="configmap-items",
        ),
        pytest.param(
            {"name": "v", "secret": {"secretName": "sec"}},
            {"p": (b"hunter2", 0o644)},
            id="secret-default-mode",
        ),
        pytest.param(
            {"name": "v", "secret": {"secretName": "nope", "optional": True}},
            {},
            id="optional-secret-missing",
        ),
        pytest.param(
            {
                "name": "v",
                "configMap": {
                    "name": "cm",
                    "optional": True,
                    "items": [{"key": "zz", "path": "q"}],
                },
            },
            {},
            id="optional-key-missing",
        ),
        pytest.param(
            {
                "name": "v",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
                        {"path": "one", "fieldRef": {"fieldPath": "metadata.labels['b']"}},
                    ]
                },
            },
            {
                "labels": (b'a="1"\nb="two"', 0o644),
                "uid": (b"u-1", 0o644),
                "one": (b"two", 0o644),
            },
            id="downward",
        ),
        pytest.param(
            {
                "name": "v",
                "projected": {
                    "defaultMode": 0o400,
                    "sources": [
                        {"serviceAccountToken": {"path": "token"}},
                        {"secret": {"name": "sec"}},
                        {
                            "downwardAPI": {
                                "items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]
                            }
                        },
                    ],
                },
            },
            {"token": (b"tok", 0o600), "p": (b"hunter2", 0o400), "n": (b"p", 0o400)},
            id="projected",
        ),
    ],
)
def test_file_volumes(vol: dict[str, Any], want: dict[str, tuple[bytes, int]]) -> None:
    p = plan(vol, labels={"a": "1", "b": "two"})
    assert p.error is None
    assert files(p) == want


@pytest.mark.parametrize(
    ("vol", "error"),
    [
        ({"name": "x", "secret": {"secretName": "y"}}, 'secret "y" not found'),
        ({"name": "x", "configMap": {"name": "y"}}, 'configmap "y" not found'),
        (
            {"name": "x", "configMap": {"name": "cm", "items": [{"key": "nope", "path": "p"}]}},
            "configmap references non-existent config key: nope",
        ),
        (
            {"name": "x", "secret": {"secretName": "sec", "items": [{"key": "q", "path": "p"}]}},
            "references non-existent secret key: q",
        ),
        (
            {"name": "x", "projected": {"sources": [{"secret": {"name": "gone"}}]}},
            'secret "gone" not found',
        ),
        (
            {"name": "x", "configMap": {"name": "cm", "items": [{"key": "a", "path": "../etc"}]}},
            "invalid path: must not contain '..': '../etc'",
        ),
        (
            {"name": "x", "configMap": {"name": "cm", "items": [{"key": "a", "path": "/etc/x"}]}},
            "invalid path: must be relative path: '/etc/x'",
        ),
        (
            {
                "name": "x",
                "configMap": {
                    "name": "cm",
                    "items": [{"key": "a", "path": "d"}, {"key": "b", "path": "d/e"}],
                },
            },
            "invalid path: 'd' is both a file and a directory",
        ),
        ({"name": "x", "nfs": {"server": "s"}}, "volume type nfs is not supported here"),
        (
            {"name": "x", "hostPath": {"path": "/x", "type": "Weird"}},
            "Weird is an invalid volume type",
        ),
    ],
)
def test_volume_errors(vol: dict[str, Any], error: str) -> None:
    assert plan(vol).error == error
    assert volumes.failed_mount_message("x", error).startswith(
        'MountVolume.SetUp failed for volume "x" : '
    )


def test_empty_dir_and_host_path_plans() -> None:
    p = plan({"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    assert (p.kind, p.memory, p.size_limit) == ("emptyDir", True, 16 * 2**20)
    p = plan({"name": "h", "hostPath": {"path": "/srv//data/", "type": "Directory"}})
    assert (p.kind, p.host_path, p.host_type) == ("hostPath", "/srv/data", "Directory")


def test_only_mounted_volumes_are_planned() -> None:
    vols = [{"name": "a", "emptyDir": {}}, {"name": "b", "secret": {"secretName": "gone"}}]
    p = pod(vols, [{"name": "a", "mountPath": "/a"}])
    assert [v.name for v in volumes.plan_volumes(p, LOOKUP)] == ["a"]


def test_mount_plan_union_order_and_rejections() -> None:
    p = pod(
        [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
        [
            {"name": "a", "mountPath": "/data/inner/", "readOnly": True},
            {"name": "b", "mountPath": "/data"},
            {"name": "a", "mountPath": "/x", "subPath": "../../etc"},
            {"name": "a", "mountPath": "/"},
            {"name": "nope", "mountPath": "/n"},
            {"name": "b", "mountPath": "/data", "readOnly": True},  # the first one wins
        ],
    )
    got, errors = volumes.plan_mounts(p)
    assert got == [
        volumes.MountPlan("/data", "b", "", False),
        volumes.MountPlan("/data/inner", "a", "", True),
    ]
    assert errors == [
        'invalid mount of volume "a"',
        'invalid mount of volume "a"',
        'volume "nope" is not defined in the pod',
    ]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a", None),
        ("a/b/c", None),
        ("..a", "invalid path: must not start with '..'"),
        ("a/../b", "invalid path: must not contain '..'"),
        ("/a", "invalid path: must be relative path"),
        ("", "invalid path: must not be empty"),
        ("a" * 256, "invalid path: must not contain segments longer than 255"),
        ("a/" * 2049, "invalid path: must be less than or equal to 4096 characters"),
    ],
)
def test_validate_path(path: str, problem: str | None) -> None:
    assert volumes.validate_path(path) == problem


DIR = PathFacts(True, stat.S_IFDIR | 0o755)
FILE = PathFacts(True, stat.S_IFREG | 0o644)
SOCK = PathFacts(True, stat.S_IFSOCK | 0o755)
CHR = PathFacts(True, stat.S_IFCHR | 0o666)
NONE = PathFacts(False)


@pytest.mark.parametrize(
    ("host_type", "facts", "action", "error"),
    [
        ("", NONE, "mkdir", None),
        ("", FILE, "use", None),
        ("DirectoryOrCreate", NONE, "mkdir", None),
        ("DirectoryOrCreate", DIR, "use", None),
        ("DirectoryOrCreate", FILE, "use", "hostPath type check failed: /p is not a directory"),
        ("Directory", NONE, "use", "hostPath type check failed: /p is not a directory"),
        ("Directory", DIR, "use", None),
        ("FileOrCreate", NONE, "touch", None),
        ("FileOrCreate", DIR, "use", "hostPath type check failed: /p is not a file"),
        ("File", FILE, "use", None),
        ("File", NONE, "use", "hostPath type check failed: /p is not a file"),
        ("Socket", SOCK, "use", None),
        ("Socket", FILE, "use", "hostPath type check failed: /p is not a socket file"),
        ("CharDevice", CHR, "use", None),
        ("CharDevice", DIR, "use", "hostPath type check failed: /p is not a character device"),
        ("BlockDevice", CHR, "use", "hostPath type check failed: /p is not a block device"),
    ],
)
def test_host_path_type_rules(
    host_type: str, facts: PathFacts, action: str, error: str | None
) -> None:
    assert volumes.host_path_action("/p", host_type, facts) == (action, error)


def test_atomic_writer_names() -> None:
    now = datetime(2026, 12, 6, 17, 14, 37, tzinfo=UTC)
    assert atomicwriter.ts_dir_name(now, "123456789") == "..2026_12_06_17_14_37.123456789"
    entries = [FileEntry("a/b", b"", 0o644), FileEntry("a/c", b"", 0o644), FileEntry("z", b"", 0)]
    assert atomicwriter.user_visible_names(entries) == ["a", "z"]


def test_atomic_writer_layout_and_swap(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    first = [FileEntry("k", b"one", 0o600), FileEntry("d/e", b"deep", 0o644)]
    assert atomicwriter.write_payload(target, first)
    assert not atomicwriter.write_payload(target, first)  # nothing changed
    data = os.readlink(target / "..data")
    assert data.startswith("..20")
    assert os.readlink(target / "k") == "..data/k"
    assert os.readlink(target / "d") == "..data/d"
    assert (target / "k").read_bytes() == b"one"
    assert stat.S_IMODE((target / "k").stat().st_mode) == 0o600
    assert atomicwriter.write_payload(target, [FileEntry("k", b"two", 0o644)])
    assert (target / "k").read_bytes() == b"two"
    names = sorted(os.listdir(target))
    assert names == sorted(["..data", os.readlink(target / "..data"), "k"])
    assert os.readlink(target / "..data") != data


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "name", "configMap", "secret", "emptyDir", "hostPath", "downwardAPI", "projected",
        "items", "key", "path", "mode", "defaultMode", "optional", "secretName", "sources",
        "fieldRef", "fieldPath", "resourceFieldRef", "medium", "sizeLimit", "type",
        "serviceAccountToken", "containerName", "resource", "divisor",
    ]
)  # fmt: skip
_volume_like = st.recursive(
    _json,
    lambda children: st.dictionaries(_keys, children, max_size=6) | st.lists(children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(vols=_volume_like, mounts_=_volume_like, meta=_json)
def test_hostile_specs_never_raise(vols: Any, mounts_: Any, meta: Any) -> None:
    p = {
        "metadata": {"namespace": NS, "labels": meta, "annotations": vols},
        "spec": {
            "volumes": vols,
            "containers": [{"name": "c", "volumeMounts": mounts_}, "junk"],
            "initContainers": mounts_,
        },
    }
    for vol in vols if isinstance(vols, list) else [vols]:
        if isinstance(vol, dict):
            got = volumes.plan_volume(vol, p, LOOKUP, tokens={("", 3600): "t"})
            for f in got.files:
                assert volumes.validate_path(f.path) is None
    planned = volumes.plan_volumes(p, LOOKUP)  # type: ignore[arg-type]
    mount_plans, _ = volumes.plan_mounts(p)  # type: ignore[arg-type]
    volumes.referenced_sources(p)  # type: ignore[arg-type]
    for m in mount_plans:
        assert m.path.startswith("/") and m.path != "/" and ".." not in m.path.split("/")
        assert not m.sub_path.startswith("/") and ".." not in m.sub_path.split("/")
    script = mounts.mount_script(Path("/state/volumes"), planned, mount_plans, "/pod/root")
    # every mount point is in the pod's own root
    binds = [line for line in script.splitlines() if line.startswith("mount --bind ")]
    wanted = [m for m in mount_plans if m.volume in {p.name for p in planned}]
    for line, m in zip(binds, wanted, strict=True):
        target = podroot.inside("/pod/root", m.path)
        assert target.startswith("/pod/root/") and line.endswith(" " + podroot.q(target))


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=40))
def test_volume_dirs_stay_under_the_root(name: str) -> None:
    root = Path("/state/volumes")
    d = mounts.volume_dir(root, name)
    assert d.parent == root and d.name not in ("", ".", "..") and "/" not in d.name


def test_agnhost_pods_get_the_launcher_at_slash_agnhost(tmp_path: Path) -> None:
    agn = {"spec": {"containers": [{"image": "registry.k8s.io/e2e-test-images/agnhost:2.47"}]}}
    busy = {"spec": {"containers": [{"image": "busybox"}, {"image": "::bad::"}, "junk"]}}
    assert mounts.image_binds(agn, tmp_path) == [(str(tmp_path / "agnhost"), "/agnhost")]
    assert mounts.image_binds(busy, tmp_path) == []
    root = podroot.PodRoot("/r", "/f", binds=tuple(mounts.image_binds(agn, tmp_path)))
    assert f"{tmp_path}/agnhost /r/agnhost none bind,ro 0 0" in podroot.fstab(
        root, podroot.HostFacts()
    )
    mounts.write_launchers(tmp_path)
    launcher = tmp_path / "agnhost"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\nexec ")
    assert '-m kubesvc.node.images.agnhost --kubesvc-argv0=/agnhost "$@"' in text


def test_projected_tokens_are_the_ones_asked_for() -> None:
    sources = [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"serviceAccountToken": {"path": "vault", "audience": "vault"}},
    ]
    vol = {"name": "v", "projected": {"sources": sources}}
    p = pod([vol])
    assert volumes.token_sources(p) == {("", 3607), ("vault", 3600)}
    tokens = {("", 3607): "api", ("vault", 3600): "v"}
    got = volumes.plan_volume(vol, p, LOOKUP, tokens=tokens)
    assert files(got) == {"token": (b"api", 0o600), "vault": (b"v", 0o600)}
    failed = volumes.plan_volume(
        vol, p, LOOKUP, tokens={("", 3607): "api", ("vault", 3600): volumes.TokenError("boom")}
    )
    assert failed.error == "failed to fetch token: boom"
    assert volumes.plan_volume(vol, p, LOOKUP).error == "failed to fetch token: not requested"
    unmounted = {**p, "spec": {**p["spec"], "containers": [{"name": "c"}]}}
    assert volumes.token_sources(unmounted) == set()


def test_the_token_volume_at_the_service_account_path_is_found() -> None:
    path = "/var/run/secrets/kubernetes.io/serviceaccount"
    vol = {"name": "kube-api-access-abcde", "projected": {"sources": []}}
    mount = {"name": vol["name"], "mountPath": path, "readOnly": True}
    found = volumes.service_account_mount(pod([vol], [mount]))
    assert found is not None and found.volume == vol["name"]
    # writable, a subPath or not a projected volume: mounted as any other volume
    assert volumes.service_account_mount(pod([vol], [{**mount, "readOnly": False}])) is None
    assert volumes.service_account_mount(pod([vol], [{**mount, "subPath": "x"}])) is None
    other = {"name": "kube-api-access-abcde", "emptyDir": {}}
    assert volumes.service_account_mount(pod([other], [mount])) is None
    assert volumes.service_account_mount(pod([vol], [])) is None


def test_a_token_is_owned_by_the_user_every_container_runs_as() -> None:
    def pod(psc: dict[str, Any], *users: int | None) -> dict[str, Any]:
        containers = [
            {"name": f"c{i}", **({"securityContext": {"runAsUser": u}} if u is not None else {})}
            for i, u in enumerate(users)
        ]
        return {"spec": {"securityContext": psc, "containers": containers}}

    assert volumes.token_owner(pod({}, None)) == (0, 0, 0o600)
    assert volumes.token_owner(pod({"runAsUser": 1000}, None, None)) == (1000, 0, 0o600)
    assert volumes.token_owner(pod({}, 1000, 1000)) == (1000, 0, 0o600)
    assert volumes.token_owner(pod({}, 1000, 2000)) == (0, 0, 0o600)  # no one user: root's
    assert volumes.token_owner(pod({"fsGroup": 5}, 1000, 2000)) == (0, 5, 0o640)
    assert volumes.token_owner({"spec": "junk"}) == (0, 0, 0o600)
