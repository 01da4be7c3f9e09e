"""A pod's root filesystem and the script that builds it (pure; kubesvc/node/sandbox.py
runs it).

Built-in images use the host's programs, so a pod's root is a tmpfs of its own holding:
the host's /usr bound read-only (Debian's merged /usr: /bin, /lib, /lib64 and /sbin are
links into it, as on the host) and the few other host directories a built-in image runs
from (the Python that runs kubesvc, its virtualenv and package), read-only; a writable
/etc holding copies of the files programs read (users, name service, the dynamic linker's
cache, alternatives, time zone) and the kubelet's hosts, resolv.conf and hostname; the CA
certificates, read-only; a /dev of its own (null, zero, full, random, urandom, tty, a pty
instance and /dev/shm); /proc for the pod's PID namespace with the kernel's knobs read-only
and its debug files masked, as Docker's default; a read-only /sys; writable /tmp, /var/tmp
and /run; the service-account token and the pod's volumes at their mountPaths. Then the
script pivots into it and drops the host's root, so nothing else of the host (kubesvc's
state, /root, kubeconfigs, other pods' files, the host's /etc) is there to be seen.

A privileged pod (one with a privileged container) gets the host's /dev, writable /proc
and /sys, as upstream's privileged containers.

The script runs in the pod's new mount namespace (a copy of the host's) and PID namespace,
whose PID 1, the pod's pause, started first. Pivoting moves the pause's root too. A pod
with `hostPID` has no PID namespace of its own: its /proc is the host's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

# what a program may read in /etc: copied into the pod's own (writable) /etc
ETC_FILES = (
    "passwd",
    "group",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "services",
    "protocols",
    "networks",
    "ethertypes",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "mime.types",
    "os-release",
    "debian_version",
    "bash.bashrc",
    "profile",
    "inputrc",
    "environment",
    "shells",
    "login.defs",
    "terminfo",
    "magic",
    "magic.mime",
    "ca-certificates.conf",
    "mtab",
)
# read-only binds of host directories under /etc (too big to copy per pod)
ETC_DIRS = ("ssl/certs",)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
STDIO = ("stdin", "stdout", "stderr")
# Docker's masked and read-only /proc paths (those the running kernel has)
PROC_MASKED = (
    "acpi",
    "asound",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "sched_debug",
    "scsi",
    "timer_list",
    "timer_stats",
)
PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
TOP_LINKS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
OLD_ROOT = ".kubesvc-old-root"
# set in a pod's network namespace when the pod has a user namespace
USERNS_SYSCTLS = (
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "'0 2147483647'"),
)


@dataclass(frozen=True)
class HostFacts:
    """What the script needs to know of the host: the top-level links into /usr
    (name -> target), which /etc entries and /proc paths exist."""

    top_links: dict[str, str] = field(default_factory=dict)
    etc_entries: frozenset[str] = frozenset()
    proc_entries: frozenset[str] = frozenset()
    proc_dirs: frozenset[str] = frozenset()  # those of proc_entries that are directories


@dataclass(frozen=True)
class PodRoot:
    root: str  # the (empty) directory the pod's tmpfs root is mounted on, on the host
    files_dir: str  # the kubelet's hosts, resolv.conf and hostname
    ro_dirs: tuple[str, ...] = ()  # host directories bound read-only at the same path
    binds: tuple[tuple[str, str], ...] = ()  # (host file, path in the pod), read-only
    service_account: str | None = None  # the token volume, bound at SA_DIR read-only
    work_dirs: tuple[str, ...] = ()  # containers' workingDirs, made if missing
    privileged: bool = False
    host_pid: bool = False
    volume_script: str = ""  # mounts at paths under $R (kubesvc/node/mounts.py)
    id_base: int = 0  # a pod in a user namespace: the host id its root maps to


SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def fstab_path(path: str) -> str:
    """A path as an fstab field: whitespace and backslashes octal-escaped (libmount reads
    them back)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def relative(path: str) -> str:
    """`path` (absolute, in the pod) relative to the root; `..` cannot climb out."""
    parts: list[str] = []
    for part in PurePosixPath("/", path).parts[1:]:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def inside(root: str, path: str) -> str:
    """`path` (absolute, in the pod) as a host path under `root`."""
    rel = relative(path)
    return f"{root.rstrip('/')}/{rel}" if rel else root


def fstab(pod: PodRoot, host: HostFacts) -> str:
    """Every mount of the root but the volumes, in order, for one `mount -a`."""
    r = pod.root
    rows: list[tuple[str, str, str, str]] = [("/usr", f"{r}/usr", "none", "bind,ro")]
    for d in pod.ro_dirs:
        rows.append((d, inside(r, d), "none", "bind,ro"))
    for d in ETC_DIRS:
        if d in host.etc_entries:
            rows.append((f"/etc/{d}", f"{r}/etc/{d}", "none", "bind,ro"))
    for src, target in pod.binds:
        rows.append((src, inside(r, target), "none", "bind,ro"))
    if pod.service_account is not None:
        rows.append((pod.service_account, inside(r, SA_DIR), "none", "bind,ro"))
    rows.append(("proc", f"{r}/proc", "proc", "nosuid,nodev,noexec"))
    if pod.privileged:
        rows.append(("/dev", f"{r}/dev", "none", "rbind"))
        rows.append(("sysfs", f"{r}/sys", "sysfs", "nosuid,nodev,noexec"))
    else:
        for p in PROC_READ_ONLY:
            if p in host.proc_entries:
                rows.append((f"{r}/proc/{p}", f"{r}/proc/{p}", "none", "bind,ro"))
        for p in PROC_MASKED:
            if p in host.proc_dirs:  # an empty, read-only directory over it
                rows.append(("tmpfs", f"{r}/proc/{p}", "tmpfs", "ro,nosuid,nodev,noexec,size=0"))
            elif p in host.proc_entries:
                rows.append(("/dev/null", f"{r}/proc/{p}", "none", "bind,ro"))
        rows.append(("sysfs", f"{r}/sys", "sysfs", "ro,nosuid,nodev,noexec"))
        rows.append(
            ("devpts", f"{r}/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,nosuid")
        )
    rows.append(("shm", f"{r}/dev/shm", "tmpfs", "nosuid,nodev,mode=1777"))
    return "".join(f"{fstab_path(a)} {fstab_path(b)} {c} {d} 0 0\n" for a, b, c, d in rows)


@dataclass(frozen=True)
class Skeleton:
    """What every pod's root starts as, made once per node agent on the host and copied
    into each new root with one `cp -a`: directories (with modes), links, the device nodes
    (copies of the host's) and the /etc files."""

    dirs: tuple[tuple[str, int], ...]
    links: tuple[tuple[str, str], ...]  # (path, target)
    devices: tuple[str, ...]
    etc: tuple[str, ...]


def skeleton(host: HostFacts) -> Skeleton:
    dirs = [("usr", 0o755), ("etc", 0o755), ("dev", 0o755), ("dev/pts", 0o755)]
    dirs += [("dev/shm", 0o1777), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777)]
    dirs += [("var", 0o755), ("var/tmp", 0o1777), ("run", 0o755), ("root", 0o700)]
    dirs += [(OLD_ROOT, 0o700)]
    dirs += [(f"etc/{d}", 0o755) for d in ETC_DIRS if d in host.etc_entries]
    links = [*sorted(host.top_links.items()), ("var/run", "../run")]
    links += [("dev/fd", "/proc/self/fd"), ("dev/ptmx", "pts/ptmx")]
    links += [(f"dev/{n}", f"/proc/self/fd/{i}") for i, n in enumerate(STDIO)]
    etc = tuple(e for e in ETC_FILES if e in host.etc_entries)
    return Skeleton(tuple(dirs), tuple(links), DEVICES, etc)


def script(pod: PodRoot, skeleton_dir: str, fstab_file: str) -> str:
    """The shell script that builds the root from the skeleton and pivots into it: nine
    processes (the shell, two `mount`, two `cp`, `mkdir`, `pivot_root`, `umount`, `rmdir`)
    whatever the pod holds, plus the volumes' own lines."""
    r = q(pod.root)
    dirs = [relative(d) for d in pod.ro_dirs]
    if pod.service_account is not None:
        dirs.append(relative(SA_DIR))
    dirs += [relative(w) for w in pod.work_dirs]
    dirs = [d for d in dirs if d]
    lines = [
        "set -e",
        f"mount -t tmpfs -o mode=0755 tmpfs {r}",
        f"cp -a {q(skeleton_dir.rstrip('/') + '/.')} {r}/",
        f"cd {r}",
    ]
    if dirs:
        # made after the skeleton's links, so a path through /var/run or /bin follows them
        lines.append("mkdir -p " + " ".join(q(d) for d in dirs))
    for _src, target in pod.binds:
        t = q(inside(pod.root, target))
        lines.append(f'[ -e {t} ] || {{ mkdir -p "$(dirname {t})"; : >> {t}; }}')
    lines.append(
        "cp "
        + " ".join(q(f"{pod.files_dir}/{f}") for f in ("hosts", "resolv.conf", "hostname"))
        + " etc/"
    )
    if pod.id_base:
        # the root's own files belong to the pod's root user (before any mount: nothing
        # bound into it changes owner)
        lines.append(f"chown -R {pod.id_base}:{pod.id_base} .")
        # the pod's network namespace is the host users' (the node made it): a port below
        # 1024 and ICMP echo sockets (ping) need no capability there, as containerd sets
        for key, value in USERNS_SYSCTLS:
            lines.append(f"echo {value} > /proc/sys/{key.replace('.', '/')}")
    lines.append(f"mount -a -T {q(fstab_file)}")
    if pod.volume_script:
        lines.append(pod.volume_script.rstrip("\n"))
    lines += [
        f"cd {r}",
        f"pivot_root . {OLD_ROOT}",
        "cd /",
        f"umount -l /{OLD_ROOT}",
        f"rmdir /{OLD_ROOT}",
    ]
    return "\n".join(lines) + "\n"


def runtime_dirs(paths: Sequence[str]) -> tuple[str, ...]:
    """The host directories a built-in image runs from (the Python installation, the
    virtualenv, kubesvc's package), less those /usr or another of them holds already."""
    out: list[str] = []
    for p in sorted({str(PurePosixPath(p)) for p in paths if p.startswith("/")}, key=len):
        if not any(p == d or p.startswith(d.rstrip("/") + "/") for d in ["/usr", *out]):
            out.append(p)
    return tuple(out)


def work_dirs(containers: Sequence[object]) -> tuple[str, ...]:
    """The absolute workingDirs of the pod's containers (made in the root if missing)."""
    out: list[str] = []
    for c in containers:
        wd = c.get("workingDir") if isinstance(c, dict) else None
        if isinstance(wd, str) and wd.startswith("/") and "\x00" not in wd and wd not in out:
            out.append(wd)
    return tuple(out)
