"""The pod sandbox's mount table and script: what libmount reads back from the fstab is the
paths it was given, whatever characters they hold."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.node import sandbox

SEGMENT = st.text(
    st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


def read_back(fstab: Path) -> list[tuple[str, str, str]]:
    out = subprocess.run(
        ["findmnt", "--fstab", "-F", str(fstab), "-J", "-o", "SOURCE,TARGET,OPTIONS"],
        capture_output=True,
        check=True,
    ).stdout
    return [(f["source"], f["target"], f["options"]) for f in json.loads(out)["filesystems"]]


def test_fstab_binds_the_kubelet_files(tmp_path: Path) -> None:
    files = Path("/var/lib/kubesvc/c/nodes/n/pods/u/files")
    fstab = tmp_path / "fstab"
    fstab.write_text(sandbox.sandbox_fstab(files))
    assert read_back(fstab) == [
        (f"{files}/hosts", "/etc/hosts", "bind"),
        (f"{files}/resolv.conf", "/etc/resolv.conf", "bind"),
        (f"{files}/hostname", "/etc/hostname", "bind"),
        (f"{files}/serviceaccount", sandbox.SA_DIR, "bind"),
    ]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segments=st.lists(SEGMENT, min_size=1, max_size=4))
def test_any_path_reads_back_unchanged(tmp_path: Path, segments: list[str]) -> None:
    files = Path("/", *segments)
    fstab = tmp_path / "fstab"
    fstab.write_text(sandbox.sandbox_fstab(files))
    assert [src for src, _t, _o in read_back(fstab)] == [
        str(files / name) for name in ("hosts", "resolv.conf", "hostname", "serviceaccount")
    ]


def test_script_quotes_the_hostname_and_mounts_in_one_process() -> None:
    script = sandbox.sandbox_script("a'b", Path("/x y/sandbox.fstab"))
    assert script.startswith("hostname 'a'\\''b'; ")
    assert script.count("mount -a -T '/x y/sandbox.fstab'") == 1
    # /run/kubesvc is not a mount point: each cluster's namespace directory is
    assert script.endswith("umount -R -l /run/netns /run/kubesvc/*/ns 2>/dev/null; true")


def test_fstab_binds_the_token_volume_read_only(tmp_path: Path) -> None:
    files = Path("/var/lib/kubesvc/c/nodes/n/pods/u/files")
    volume = Path("/var/lib/kubesvc/c/nodes/n/pods/u/volumes/kube-api-access-abcde")
    fstab = tmp_path / "fstab"
    fstab.write_text(sandbox.sandbox_fstab(files, volume))
    assert read_back(fstab)[3] == (str(volume), sandbox.SA_DIR, "bind,ro")
