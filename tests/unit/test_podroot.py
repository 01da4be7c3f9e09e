"""A pod's root: the mount table libmount reads back is the paths it was given, whatever
characters they hold; the script builds the root from the host's read-only parts, pivots
into it and leaves nothing of the host behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesvc.node import podroot

SEGMENT = st.text(
    st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
HOST = podroot.HostFacts(
    top_links={"bin": "usr/bin", "lib": "usr/lib"},
    etc_entries=frozenset({"passwd", "group", "ssl/certs"}),
    proc_entries=frozenset({"sys", "kcore", "acpi"}),
    proc_dirs=frozenset({"acpi"}),
)


def read_back(fstab: Path) -> list[tuple[str, str, str]]:
    out = subprocess.run(
        ["findmnt", "--fstab", "-F", str(fstab), "-J", "-o", "SOURCE,TARGET,OPTIONS"],
        capture_output=True,
        check=True,
    ).stdout
    return [(f["source"], f["target"], f["options"]) for f in json.loads(out)["filesystems"]]


def test_fstab_binds_the_host_read_only_and_covers_proc(tmp_path: Path) -> None:
    pod = podroot.PodRoot(
        "/s/root", "/s/files", ro_dirs=("/opt/py",), service_account="/s/volumes/token"
    )
    fstab = tmp_path / "fstab"
    fstab.write_text(podroot.fstab(pod, HOST))
    rows = read_back(fstab)
    assert rows[0] == ("/usr", "/s/root/usr", "bind,ro")
    assert ("/opt/py", "/s/root/opt/py", "bind,ro") in rows
    assert ("/etc/ssl/certs", "/s/root/etc/ssl/certs", "bind,ro") in rows
    assert ("/s/volumes/token", f"/s/root{podroot.SA_DIR}", "bind,ro") in rows
    # /proc/sys read-only, kcore masked by /dev/null, acpi (a directory) by an empty tmpfs
    assert ("/s/root/proc/sys", "/s/root/proc/sys", "bind,ro") in rows
    assert ("/dev/null", "/s/root/proc/kcore", "bind,ro") in rows
    assert next(r for r in rows if r[1] == "/s/root/proc/acpi")[0] == "tmpfs"
    targets = [t for _s, t, _o in rows]
    assert targets.index("/s/root/proc") < targets.index("/s/root/proc/sys")
    assert "/s/root/dev/pts" in targets and not any(s == "/dev" for s, _t, _o in rows)


def test_a_privileged_pod_gets_the_hosts_dev_and_writable_proc(tmp_path: Path) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text(podroot.fstab(podroot.PodRoot("/r", "/f", privileged=True), HOST))
    rows = read_back(fstab)
    assert ("/dev", "/r/dev", "rbind") in rows
    assert not any(t.startswith("/r/proc/") for _s, t, _o in rows)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segments=st.lists(SEGMENT, min_size=1, max_size=4))
def test_any_path_reads_back_unchanged(tmp_path: Path, segments: list[str]) -> None:
    root = str(Path("/", *segments))
    pod = podroot.PodRoot(root, "/f", ro_dirs=(root + "/x",), binds=((root, "/a b"),))
    fstab = tmp_path / "fstab"
    fstab.write_text(podroot.fstab(pod, HOST))
    rows = read_back(fstab)
    assert rows[0][1] == f"{root}/usr"
    assert (root + "/x", podroot.inside(root, root + "/x"), "bind,ro") in rows
    assert (root, f"{root}/a b", "bind,ro") in rows


@given(path=st.text(max_size=60))
def test_paths_never_leave_the_root(path: str) -> None:
    inside = podroot.inside("/pods/u/root", "/" + path)
    assert inside == "/pods/u/root" or inside.startswith("/pods/u/root/")
    assert ".." not in podroot.relative(path).split("/")


def test_the_script_copies_the_skeleton_pivots_and_drops_the_host() -> None:
    pod = podroot.PodRoot(
        "/s/it's root",
        "/s/files",
        ro_dirs=("/opt/py",),
        service_account="/s/t",
        work_dirs=("/srv/app",),
        volume_script="mount --bind '/s/v' '/s/it'\\''s root/data'\n",
    )
    script = podroot.script(pod, "/n/rootfs", "/s/fstab")
    lines = script.splitlines()
    assert lines[:4] == [
        "set -e",
        "mount -t tmpfs -o mode=0755 tmpfs '/s/it'\\''s root'",
        "cp -a '/n/rootfs/.' '/s/it'\\''s root'/",
        "cd '/s/it'\\''s root'",
    ]
    sa = podroot.relative(podroot.SA_DIR)
    assert lines[4] == f"mkdir -p 'opt/py' '{sa}' 'srv/app'"
    assert "cp '/s/files/hosts' '/s/files/resolv.conf' '/s/files/hostname' etc/" in lines
    volume = "mount --bind '/s/v' '/s/it'\\''s root/data'"
    assert lines.index("mount -a -T '/s/fstab'") < lines.index(volume)
    assert lines[-4:] == [
        f"pivot_root . {podroot.OLD_ROOT}",
        "cd /",
        f"umount -l /{podroot.OLD_ROOT}",
        f"rmdir /{podroot.OLD_ROOT}",
    ]
    # nine processes, whatever the pod holds (the volumes' lines aside)
    skip = ("set", "cd", "[")
    commands = [ln.split()[0] for ln in lines if ln != volume and not ln.startswith(skip)]
    assert len(commands) + 1 == 9  # and the shell


def test_the_skeleton_holds_the_links_devices_and_etc_files() -> None:
    sk = podroot.skeleton(HOST)
    assert ("bin", "usr/bin") in sk.links and ("var/run", "../run") in sk.links
    assert ("dev/stdout", "/proc/self/fd/1") in sk.links
    assert ("tmp", 0o1777) in sk.dirs and ("etc/ssl/certs", 0o755) in sk.dirs
    assert sk.etc == ("passwd", "group")
    assert "null" in sk.devices


def test_runtime_dirs_drop_what_usr_or_another_holds() -> None:
    got = podroot.runtime_dirs(
        ["/usr/lib/python3", "/opt/venv", "/opt/venv/lib/site-packages/kubesvc", "/src/kubesvc"]
    )
    assert got == ("/opt/venv", "/src/kubesvc")


def test_work_dirs_keep_absolute_strings_only() -> None:
    containers = [{"workingDir": "/a"}, {"workingDir": 3}, {"workingDir": "rel"}, "junk", {}]
    assert podroot.work_dirs(containers) == ("/a",)


def test_a_pod_in_a_user_namespace_owns_its_roots_files() -> None:
    pod = podroot.PodRoot("/r", "/f", id_base=131072)
    lines = podroot.script(pod, "/n/rootfs", "/s/fstab").splitlines()
    # before anything is bound into the root, so no host file changes owner
    assert lines.index("chown -R 131072:131072 .") < lines.index("mount -a -T '/s/fstab'")
    assert not any(
        "chown" in line for line in podroot.script(podroot.PodRoot("/r", "/f"), "/n", "/s")
    )


def test_nsenter_enters_the_user_namespace_except_to_build_the_root() -> None:
    from kubesvc.node.view import Sandbox

    p = Path("/run/x")
    sb = Sandbox("ns", "n", "u", p, p, p, "10.0.0.1", "n", False, p, p, Path("/run/u"), 65536)
    assert "--user=/run/u" in sb.nsenter()
    assert "--user=/run/u" not in sb.nsenter(user=False)
    assert "--pid=/run/x" not in sb.nsenter(pid=False)
