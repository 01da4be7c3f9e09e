"""Which tool makes kubesvc's pod sandbox: util-linux's unshare (+ setpriv), bubblewrap or
crun, measured side by side in one run.

    python bench/sandbox_bench.py [--starts 40] [--json FILE]

Runs as root. Each tool makes the same sandbox around one command: new PID, mount, IPC and
UTS namespaces with their own /proc; a root of its own (a tmpfs) in which the host's /usr
is bound read-only (merged-/usr Debian: /bin, /lib, /lib64 and /sbin are symlinks into
it) with /etc's few files a program needs, a minimal /dev and private writable /tmp and
/var/tmp, so the host's state (/root, /run, /var/lib, other pods' files) is not there; no
new privileges; the container runtimes' default capability set (Docker's 14). It then
measures, for each tool and for the command started with no sandbox (the floor):

1. **Start**: the wall time from spawning the tool until `true` inside the sandbox has
   exited (--starts times, median and p90), what a pod start pays per container.
2. **What stays resident**: for a sandbox running `sleep`, the RSS of the tool's own
   processes that stay (a pid-1 reaper, a waiting parent), beside the container's.
3. **Mounts**: the lines of /proc/self/mountinfo inside the sandbox (the host has its
   own; the kernel's mount lock makes every mount namespace's table cost at pod start).

The table says which tools are missing (`apt-get install -y bubblewrap crun`); everything
the benchmark makes is under one temporary directory, removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common

# Docker's (and containerd's) default capabilities
DEFAULT_CAPS = (
    *("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID"),
    *("SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"),
)
ETC_FILES = ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "ld.so.cache")
USR_LINKS = ("bin", "lib", "lib64", "sbin")

Argv = Callable[[list[str]], list[str]]


def unshare_argv(root: Path) -> Argv:
    """util-linux: unshare makes the namespaces; a shell makes the tmpfs root, its links
    and /etc files, one `mount -a` (an fstab) the mounts in it; chroot enters it and setpriv
    drops privileges."""
    fstab = root.parent / "unshare.fstab"
    fstab.write_text(
        f"/usr {root}/usr none bind,ro 0 0\n"
        f"proc {root}/proc proc nosuid,nodev,noexec 0 0\n"
        f"tmpfs {root}/dev tmpfs mode=0755,nosuid 0 0\n"
        f"tmpfs {root}/tmp tmpfs mode=1777,nosuid,nodev 0 0\n"
        f"tmpfs {root}/var/tmp tmpfs mode=1777,nosuid,nodev 0 0\n"
    )
    caps = ",".join(f"+{c.lower()}" for c in DEFAULT_CAPS)
    script = (
        f"mount -t tmpfs -o mode=0755 tmpfs {root} && cd {root} && "
        "mkdir -p usr proc dev tmp var/tmp etc && "
        + " && ".join(f"ln -s usr/{d} {d}" for d in USR_LINKS)
        + " && { cp "
        + " ".join(f"/etc/{f}" for f in ETC_FILES)
        + f" etc/ 2>/dev/null; true; }} && mount -a -T {fstab} && "
        f"exec chroot {root} /usr/bin/setpriv --no-new-privs --bounding-set=-all,{caps} "
        '--inh-caps=-all "$@"'
    )

    def argv(command: list[str]) -> list[str]:
        return [
            "unshare", "--pid", "--fork", "--mount", "--ipc", "--uts", "--propagation",
            "private", "sh", "-c", script, "sandbox", *command,
        ]  # fmt: skip

    return argv


def bwrap_argv(_root: Path) -> Argv:
    """bubblewrap: one process builds the whole root from its options."""
    opts = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    opts += ["--ro-bind", "/usr", "/usr"]
    for d in USR_LINKS:
        opts += ["--symlink", f"usr/{d}", f"/{d}"]
    for f in ETC_FILES:
        if Path(f"/etc/{f}").exists():
            opts += ["--ro-bind", f"/etc/{f}", f"/etc/{f}"]
    opts += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
    opts += ["--cap-drop", "ALL"]
    for c in DEFAULT_CAPS:
        opts += ["--cap-add", f"CAP_{c}"]

    def argv(command: list[str]) -> list[str]:
        return ["bwrap", *opts, "--", *command]

    return argv


def crun_argv(root: Path) -> Argv:
    """crun: an OCI bundle (config.json and an empty rootfs) per run, run in the
    foreground without cgroups (kubesvc has none)."""
    rootfs = root.parent / "crun-rootfs"
    rootfs.mkdir(exist_ok=True)
    caps = [f"CAP_{c}" for c in DEFAULT_CAPS]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
        {"destination": "/var/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
    ]  # fmt: skip
    mounts += [
        {"destination": f"/etc/{f}", "type": "bind", "source": f"/etc/{f}",
         "options": ["bind", "ro"]}
        for f in ETC_FILES if Path(f"/etc/{f}").exists()
    ]  # fmt: skip
    for d in USR_LINKS:  # merged /usr: the symlinks live in the (read-only) rootfs
        link = rootfs / d
        if not link.is_symlink():
            link.symlink_to(f"usr/{d}")
    counter = [0]

    def argv(command: list[str]) -> list[str]:
        counter[0] += 1
        bundle = root.parent / f"crun-{counter[0]}"
        bundle.mkdir()
        config = {
            "ociVersion": "1.0.2",
            "process": {
                "args": command, "cwd": "/", "env": ["PATH=/usr/bin:/bin"],
                "user": {"uid": 0, "gid": 0}, "noNewPrivileges": True,
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            },
            "root": {"path": str(rootfs), "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            },
        }  # fmt: skip
        (bundle / "config.json").write_text(json.dumps(config))
        return [
            "crun", "--cgroup-manager=disabled", "run", "--bundle", str(bundle),
            f"bench-{os.getpid()}-{counter[0]}",
        ]  # fmt: skip

    return argv


def no_sandbox(_root: Path) -> Argv:
    return lambda command: command


CLEANUPS: list[Callable[[], None]] = []


def kubesvc_join_argv(root: Path) -> Argv:
    """kubesvc's own way: the pod's sandbox is built once (pause, root, pivot), and each
    container joins it with nsenter + setpriv. What a container start pays is the join."""
    from kubesvc.node import podroot, sandbox, security

    d = root.parent
    ns = d / "ns"
    ns.mkdir()
    subprocess.run(["mount", "--bind", str(ns), str(ns)], check=True)
    subprocess.run(["mount", "--make-private", str(ns)], check=True)
    mnt, pid = ns / "mnt", ns / "pid"
    mnt.touch()
    pid.touch()
    files = d / "files"
    files.mkdir()
    for f in ("hosts", "resolv.conf", "hostname"):
        (files / f).write_text("")

    def cleanup() -> None:
        for p in sandbox.processes_in_mount_ns([mnt]):
            os.kill(p, 9)
        subprocess.run(["umount", str(mnt), str(pid)], capture_output=True)
        subprocess.run(["umount", str(ns)], capture_output=True)

    CLEANUPS.append(cleanup)
    subprocess.run(
        ["setsid", "-f", "unshare", f"--mount={mnt}", "--propagation", "private",
         f"--pid={pid}", "--fork", "catatonit", "-P"],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 5
    while not (sandbox._bound(mnt) and sandbox._bound(pid)):
        if time.monotonic() > deadline:
            raise RuntimeError("the pause's namespaces did not appear")
        time.sleep(0.001)
    pod = podroot.PodRoot(str(root), str(files))
    (d / "fstab").write_text(podroot.fstab(pod, sandbox.host_facts()))
    sandbox.write_skeleton(d / "skeleton")
    script = podroot.script(pod, str(d / "skeleton"), str(d / "fstab"))
    subprocess.run(
        ["nsenter", f"--mount={mnt}", f"--pid={pid}", "--", "sh", "-c", script], check=True
    )
    # what stays resident is the pod's pause and the unshare waiting for it, once per pod
    # (nsenter's parent, which waits for its child in the PID namespace here, is not kept
    # in kubesvc: the shim enters the PID namespace itself)
    stays = sandbox.processes_in_mount_ns([mnt])  # the pause and unshare (it is in there too)
    POD_RESIDENT_KB.append(sum(common.vm_rss_kb(p) for p in set(stays)))
    common.log(
        "kubesvc: per pod "
        + ", ".join(f"{Path(f'/proc/{p}/comm').read_text().strip()} {p}" for p in set(stays))
    )
    enter = ["nsenter", f"--mount={mnt}", f"--pid={pid}", "--"]
    privileges = security.privileges_argv(security.Security())
    return lambda command: [*enter, *privileges, *command]


POD_RESIDENT_KB: list[float] = []


TOOLS: dict[str, tuple[str, Callable[[Path], Argv]]] = {
    "none": ("", no_sandbox),
    "unshare + setpriv": ("unshare", unshare_argv),
    "bubblewrap": ("bwrap", bwrap_argv),
    "crun": ("crun", crun_argv),
    "kubesvc: join (nsenter + setpriv)": ("catatonit", kubesvc_join_argv),
}


def time_starts(argv: Argv, starts: int) -> list[float]:
    out = []
    for _ in range(starts):
        t0 = time.perf_counter()
        done = subprocess.run(argv(["true"]), capture_output=True, timeout=30)
        out.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{argv(['true'])[0]}: {done.stderr.decode(errors='replace')}")
    return out


def inside(argv: Argv, script: str) -> str:
    done = subprocess.run(argv(["sh", "-c", script]), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


def resident_kb(argv: Argv) -> float:
    """RSS of the tool's processes that stay while `sleep` runs in the sandbox."""
    proc = subprocess.Popen(argv(["sleep", "30"]), start_new_session=True)
    try:
        time.sleep(0.5)
        total = 0.0
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                    continue
                total += common.vm_rss_kb(pid)
            except (OSError, ValueError):
                continue
        return total
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        kids = [int(c) for c in children]
        out += kids
        todo += kids
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=40)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("sandbox_bench: run as root (namespaces, mounts)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-sandbox-bench-"))
    rows: list[list[str]] = []
    missing: list[str] = []
    refused: list[str] = []
    try:
        for name, (binary, make) in TOOLS.items():
            if binary and shutil.which(binary) is None:
                missing.append(binary)
                continue
            d = tmp / "".join(c for c in name if c.isalnum())
            d.mkdir()
            (d / "root").mkdir()
            argv = make(d / "root")
            common.log(f"{name}: {args.starts} starts of `true`")
            try:
                times = time_starts(argv, args.starts)
            except RuntimeError as e:
                refused.append(f"{name} cannot run here: {' '.join(str(e).split())}")
                rows.append([name, "refused", "-", "-", "-"])
                continue
            mounts = "-"
            visible = "-"
            if binary:
                mounts = inside(argv, "wc -l < /proc/self/mountinfo").strip()
                probe = "find /root /run /var/lib -mindepth 1 2>/dev/null | wc -l"
                visible = inside(argv, probe).strip()
            rss = POD_RESIDENT_KB[0] if name.startswith("kubesvc") else resident_kb(argv)
            p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
            rows.append(
                [
                    name,
                    f"{1000 * statistics.median(times):.1f} / {1000 * p90:.1f} ms",
                    f"{rss / 1024:.1f} MB",
                    mounts,
                    visible,
                ]
            )
    finally:
        for cleanup in CLEANUPS:
            cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    header = [
        "sandbox",
        "start of `true`, p50 / p90",
        "resident beside `sleep`",
        "mounts inside",
        "host entries seen",
    ]
    notes = [f"not installed: {m} (apt-get install -y bubblewrap crun)" for m in missing]
    if POD_RESIDENT_KB:
        notes.append(
            "kubesvc: the resident memory is the pod's pause and the unshare that waits "
            "for it, once per pod (not per container)"
        )
    notes += refused
    print(common.render_table(header, rows, [], notes))
    if args.json:
        doc = {"rows": rows, "missing": missing, "refused": refused}
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
