"""Mount points the pod root script makes, run for real in a private mount namespace: a
mountPath under a read-only host directory that lacks it gets a layer there, read-only
again once the mounts are made, the host's directory is left as it was, and the layers'
tmpfs leaves the root."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from kubesvc.node import mounts
from kubesvc.node.podroot import q

pytestmark = pytest.mark.e2e


def test_mount_points_under_read_only_host_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    absent = f"kubesvc-absent-{secrets.token_hex(4)}"
    assert not Path("/usr/share", absent).exists()
    r = q(str(root))
    script = f"""set -e
mount -t tmpfs tmpfs {r}
mkdir {r}/usr {r}/data
mount --bind /usr {r}/usr
mount -o remount,bind,ro {r}/usr
{mounts.mount_point_functions(str(root))}
made {r}/usr/share/{absent}/html
touched {r}/usr/lib/{absent}.conf
touched {r}/usr/share/{absent}/html/index.html
made {r}/data/plain
mount -t tmpfs tmpfs {r}/usr/share/{absent}/html  # a volume on the mount point
[ -d {r}/usr/share/{absent}/html ] && [ -f {r}/usr/lib/{absent}.conf ]
[ -e {r}/usr/bin/sh ]  # the host's files are still seen through the layer
{mounts.layers_done(str(root))}
if touch {r}/usr/share/{absent}/other 2>/dev/null; then echo "layer writable"; fi
if touch {r}/usr/lib/{absent}-other 2>/dev/null; then echo "layer writable"; fi
touch {r}/usr/share/{absent}/html/index.html  # the volume is as it was mounted
ls -A {r}
"""
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["data", "usr"]  # no layers left in the root
    for host in (Path("/usr/share", absent), Path("/usr/lib", f"{absent}.conf")):
        assert not host.exists(), host  # made in the pod's root only


def test_a_mount_point_that_cannot_be_made_fails_the_script(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    r = q(str(root))
    script = f"""set -e
mount -t tmpfs tmpfs {r}
: > {r}/file
{mounts.mount_point_functions(str(root))}
made {r}/file/under
echo unreachable
"""
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode != 0 and "unreachable" not in res.stdout
