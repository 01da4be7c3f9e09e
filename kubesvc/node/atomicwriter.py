"""Upstream's atomic writer (pkg/volume/util/atomic_writer.go) for configMap, secret,
downwardAPI and projected volumes: a reader in the pod sees the whole old content or the
whole new content, never a mix.

Layout of a volume directory:

    ..2026_12_06_17_14_37.123456789/   the content, one timestamped directory per version
    ..data -> ..2026_12_06_...         swapped by rename(2) of `..data_tmp`
    key -> ..data/key                  what the pod sees: one symlink per top-level name

The names are pure functions below; `write_payload` applies them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from kubesvc.node.volumes import FileEntry

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"


def ts_dir_name(now: datetime, suffix: str) -> str:
    """`..2006_01_02_15_04_05.<suffix>` as os.MkdirTemp names it from upstream's pattern."""
    return now.astimezone(UTC).strftime("..%Y_%m_%d_%H_%M_%S.") + suffix


def user_visible_names(files: Sequence[FileEntry]) -> list[str]:
    """The top-level names the pod sees, each a symlink into `..data`."""
    return sorted({f.path.split("/", 1)[0] for f in files})


def is_internal(name: str) -> bool:
    """Names the writer owns (timestamped dirs, `..data`, `..data_tmp`)."""
    return name.startswith("..")


def _current(target: Path) -> dict[str, tuple[bytes, int]] | None:
    """The content `..data` points at, or None when there is none or it cannot be read."""
    data = target / DATA_DIR
    if not data.is_symlink():
        return None
    out: dict[str, tuple[bytes, int]] = {}
    try:
        for root, _dirs, names in os.walk(data, followlinks=False):
            for n in names:
                p = Path(root) / n
                rel = str(p.relative_to(data))
                out[rel] = (p.read_bytes(), p.stat().st_mode & 0o7777)
    except OSError:
        return None
    return out


def write_payload(target: Path, files: Sequence[FileEntry]) -> bool:
    """Make `target` hold exactly `files` (paths already validated); False when it already
    did. Safe to call again after a crash half way: `..data` always names a whole version."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {f.path: (f.data, f.mode) for f in files}
    visible = user_visible_names(files)
    have_visible = {n for n in os.listdir(target) if not is_internal(n)}
    if _current(target) == wanted and have_visible == set(visible):
        return False
    ts = target / ts_dir_name(datetime.now(UTC), f"{secrets.randbelow(10**9):09d}")
    ts.mkdir(mode=0o755)
    for f in files:
        p = ts / f.path
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(f.data)
        if f.uid or f.gid:
            os.chown(p, f.uid, f.gid)
        os.chmod(p, f.mode)
    tmp = target / DATA_DIR_TMP
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(ts.name, tmp)
    os.rename(tmp, target / DATA_DIR)
    for name in visible:
        link = target / name
        if link.is_symlink() and os.readlink(link) == f"{DATA_DIR}/{name}":
            continue
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(f"{DATA_DIR}/{name}", link)
    for name in have_visible - set(visible):
        p = target / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    # the previous version, and any left by a crash half way through an earlier write
    for name in os.listdir(target):
        if is_internal(name) and name not in (DATA_DIR, ts.name):
            shutil.rmtree(target / name, ignore_errors=True)
    return True
