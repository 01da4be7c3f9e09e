"""What a pod's volumes should contain and where they are mounted (pkg/volume/configmap,
secret, downwardapi, projected, emptydir, hostpath; pkg/kubelet/kubelet_pods.go
makeMounts). Pure: ConfigMaps and Secrets come through a `podenv.EnvLookup`, node facts are
arguments; writing and mounting is kubesvc/node/mounts.py's job.

Every field of the pod is read defensively: the spec may be hostile, and a volume that
cannot be planned is a volume with an error (FailedMount), never an exception.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import posixpath
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesvc.node import podenv, security

Obj = Mapping[str, Any]

DEFAULT_MODE = 0o644
MAX_PATH_LEN = 4096  # atomic_writer validatePath
MAX_SEGMENT_LEN = 255
MAX_FILES = 10_000  # per volume: a bound on what one pod can make the agent write
MAX_VOLUMES = 1_000

# the kinds of volume this node can set up; any other source is reported as unsupported
FILE_KINDS = ("configMap", "secret", "downwardAPI", "projected")
HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)


DEFAULT_TOKEN_EXPIRATION = 3600  # ServiceAccountTokenProjection's default
# a projected serviceAccountToken source: (audience, "" for the API server's; lifetime)
TokenSource = tuple[str, int]


class TokenError(str):
    """Why the token of a source could not be had (shown in the FailedMount event)."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the volume's root, validated
    data: bytes
    mode: int
    uid: int = 0  # owner (root unless the file is a token for a pod's own user)
    gid: int = 0


@dataclass(frozen=True)
class VolumePlan:
    """One volume: files to write atomically (configMap, secret, downwardAPI, projected), an
    empty directory, or a host path. `error` is why it cannot be set up now."""

    name: str
    kind: str  # "files", "emptyDir", "hostPath"
    files: tuple[FileEntry, ...] = ()
    error: str | None = None
    memory: bool = False  # emptyDir medium: Memory (a tmpfs)
    size_limit: int | None = None  # bytes, for a tmpfs
    host_path: str = ""
    host_type: str = ""
    owner: int = 0  # host uid and gid of an emptyDir (the pod's root, in a user namespace)
    # the ConfigMaps/Secrets (kind, name) whose changes this volume's content follows
    sources: frozenset[tuple[str, str]] = field(default_factory=frozenset)


@dataclass(frozen=True)
class MountPlan:
    path: str  # mountPath inside the pod, normalised
    volume: str
    sub_path: str = ""
    read_only: bool = False


class _Failed(Exception):
    """A volume that cannot be set up; the message is what FailedMount reports."""


# --- paths --------------------------------------------------------------------------------


def validate_path(target: str) -> str | None:
    """Why `target` may not be a file path inside a volume (atomic_writer validatePath),
    or None when it may."""
    if not isinstance(target, str) or not target:
        return "invalid path: must not be empty"
    if len(target) > MAX_PATH_LEN:
        return f"invalid path: must be less than or equal to {MAX_PATH_LEN} characters"
    if target.startswith("/"):
        return "invalid path: must be relative path"
    if "\0" in target:
        return "invalid path: must not contain NUL"
    segments = target.split("/")
    for s in segments:
        if len(s) > MAX_SEGMENT_LEN:
            return f"invalid path: must not contain segments longer than {MAX_SEGMENT_LEN}"
        if s == "..":
            return "invalid path: must not contain '..'"
    if target.startswith(".."):
        return "invalid path: must not start with '..'"
    return None


def validate_mount_path(path: Any) -> str | None:
    """A mountPath normalised, or None when this node will not mount there (relative,
    NUL, the root itself, or `..` components)."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        return None
    if len(path) > MAX_PATH_LEN or ".." in path.split("/"):
        return None
    norm = posixpath.normpath(path)
    if norm in ("/", "//"):
        return None
    return norm


def validate_sub_path(sub: Any) -> str | None:
    """subPath normalised ("" for none), or None when it is absolute or climbs out."""
    if sub is None or sub == "":
        return ""
    if not isinstance(sub, str) or sub.startswith("/") or "\0" in sub:
        return None
    if len(sub) > MAX_PATH_LEN or ".." in sub.split("/"):
        return None
    norm = posixpath.normpath(sub)
    return "" if norm == "." else norm


# --- hostPath type rules -------------------------------------------------------------------


@dataclass(frozen=True)
class PathFacts:
    """What is at a host path (from lstat/stat), or exists=False."""

    exists: bool
    mode: int = 0  # st_mode

    @property
    def is_dir(self) -> bool:
        return self.exists and stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return self.exists and stat.S_ISREG(self.mode)


def host_path_action(path: str, host_type: str, facts: PathFacts) -> tuple[str, str | None]:
    """(action, error) for a hostPath volume of `host_type` (host_path.go checkType):
    action is "use", "mkdir" (0755) or "touch" (0644). The untyped "" creates a missing
    directory, as the container runtime does."""
    if host_type == "":
        return ("use" if facts.exists else "mkdir"), None
    if host_type == "DirectoryOrCreate" and not facts.exists:
        return "mkdir", None
    if host_type == "FileOrCreate" and not facts.exists:
        return "touch", None
    checks = {
        "DirectoryOrCreate": (facts.is_dir, "is not a directory"),
        "Directory": (facts.is_dir, "is not a directory"),
        "FileOrCreate": (facts.is_file, "is not a file"),
        "File": (facts.is_file, "is not a file"),
        "Socket": (facts.exists and stat.S_ISSOCK(facts.mode), "is not a socket file"),
        "CharDevice": (facts.exists and stat.S_ISCHR(facts.mode), "is not a character device"),
        "BlockDevice": (facts.exists and stat.S_ISBLK(facts.mode), "is not a block device"),
    }
    if host_type not in checks:
        return "use", f"{host_type} is an invalid volume type"
    ok, what = checks[host_type]
    if not ok:
        return "use", f"hostPath type check failed: {path} {what}"
    return "use", None


# --- file payloads -------------------------------------------------------------------------


def _mode(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        return default
    return value


def _secret_bytes(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode("utf-8", "surrogateescape")


def _config_map_data(obj: Obj) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    data = obj.get("data")
    if isinstance(data, dict):
        for k, v in data.items():
            out[str(k)] = str(v).encode("utf-8", "surrogateescape")
    binary = obj.get("binaryData")
    if isinstance(binary, dict):
        for k, v in binary.items():
            out[str(k)] = _secret_bytes(v)
    return out


def _secret_data(obj: Obj) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    data = obj.get("data")
    if isinstance(data, dict):
        for k, v in data.items():
            out[str(k)] = _secret_bytes(v)
    string_data = obj.get("stringData")
    if isinstance(string_data, dict):
        for k, v in string_data.items():
            out[str(k)] = str(v).encode("utf-8", "surrogateescape")
    return out


def _items(value: Any) -> list[Obj]:
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def _keyed_payload(
    kind: str, source: Obj, lookup: podenv.EnvLookup, namespace: str, default_mode: int
) -> tuple[list[FileEntry], tuple[str, str]]:
    """configMap or secret source: all keys, or `items` (key -> path, mode)."""
    name = str(source.get("name") or "")
    optional = source.get("optional") is True
    if kind == "configMap":
        obj = lookup.config_map(namespace, name)
        label, noun = "configmap", "configmap references non-existent config key"
    else:
        obj = lookup.secret(namespace, name)
        label, noun = "secret", "references non-existent secret key"
    if obj is None:
        if optional:
            return [], (kind, name)
        raise _Failed(f'{label} "{name}" not found')
    data = _config_map_data(obj) if kind == "configMap" else _secret_data(obj)
    items = _items(source.get("items"))
    out: list[FileEntry] = []
    if not items:
        for key in sorted(data):
            out.append(FileEntry(key, data[key], default_mode))
        return out, (kind, name)
    for item in items:
        key = str(item.get("key") or "")
        if key not in data:
            if optional:
                continue
            raise _Failed(f"{noun}: {key}")
        out.append(
            FileEntry(str(item.get("path") or ""), data[key], _mode(item.get("mode"), default_mode))
        )
    return out, (kind, name)


def _downward_payload(
    items: list[Obj], pod: Obj, default_mode: int, allocatable: Mapping[str, str]
) -> list[FileEntry]:
    out: list[FileEntry] = []
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    for item in items:
        path = str(item.get("path") or "")
        mode = _mode(item.get("mode"), default_mode)
        field_ref = item.get("fieldRef")
        res_ref = item.get("resourceFieldRef")
        try:
            if isinstance(field_ref, dict):
                fp = str(field_ref.get("fieldPath") or "")
                if not fp.startswith("metadata."):
                    raise ValueError(f"field label not supported: {fp}")
                value = podenv.field_ref_value(pod, fp, (), (), "")
            elif isinstance(res_ref, dict):
                wanted = res_ref.get("containerName")
                target = next((c for c in containers if c.get("name") == wanted), None)
                if target is None:
                    raise ValueError(f"container {wanted} not found")
                value = podenv.resource_field_value(res_ref, pod, target, allocatable)
            else:
                continue
        except (ValueError, ArithmeticError, AttributeError, TypeError) as e:
            # a field of the wrong type in a hostile pod is the volume's error, not a crash
            raise _Failed(str(e)[:256]) from None
        out.append(FileEntry(path, value.encode("utf-8", "surrogateescape"), mode))
    return out


def _projected_payload(
    source: Obj,
    pod: Obj,
    lookup: podenv.EnvLookup,
    namespace: str,
    tokens: Mapping[TokenSource, str],
    allocatable: Mapping[str, str],
    id_base: int = 0,
) -> tuple[list[FileEntry], set[tuple[str, str]]]:
    default_mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
    out: list[FileEntry] = []
    refs: set[tuple[str, str]] = set()
    for src in _items(source.get("sources")):
        for kind in ("configMap", "secret"):
            if isinstance(src.get(kind), dict):
                files, ref = _keyed_payload(kind, src[kind], lookup, namespace, default_mode)
                out += files
                refs.add(ref)
        if isinstance(src.get("downwardAPI"), dict):
            items = _items(src["downwardAPI"].get("items"))
            out += _downward_payload(items, pod, default_mode, allocatable)
        sat = src.get("serviceAccountToken")
        if isinstance(sat, dict):
            token = tokens.get(token_source(sat))
            if token is None or isinstance(token, TokenError):
                raise _Failed(f"failed to fetch token: {token or 'not requested'}")
            # readable by the pod's user only, whatever the volume's mode says
            uid, gid, mode = token_owner(pod)
            entry = FileEntry(str(sat.get("path") or ""), token.encode(), mode)
            out.append(dataclasses.replace(entry, uid=uid + id_base, gid=gid + id_base))
    return out, refs


def token_owner(pod: Obj) -> tuple[int, int, int]:
    """(uid, gid, mode) of a token file: 0600 and owned by the user every container of the
    pod runs as (upstream's FsUser), root's when they differ; with an fsGroup, that group
    may read it too (0640), as upstream's volume ownership gives it."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    users: set[int | None] = set()
    for key in ("initContainers", "containers"):
        for c in _items(spec.get(key)):
            try:
                sec = security.container_security(spec, c)
            except security.ConfigError:
                users.add(None)
                continue
            users.add(sec.uid if sec.run_as_user_set else None)
    uid = next(iter(users)) if len(users) == 1 else None
    psc = spec.get("securityContext") if isinstance(spec.get("securityContext"), dict) else {}
    fs_group = psc.get("fsGroup")
    if isinstance(fs_group, int) and not isinstance(fs_group, bool) and 0 <= fs_group < 2**31:
        return uid or 0, fs_group, 0o640
    return uid or 0, 0, 0o600


def token_source(sat: Obj) -> TokenSource:
    """What a serviceAccountToken projection asks for (the API server fills the default
    lifetime; a stored value of the wrong type gets it too)."""
    audience = sat.get("audience")
    seconds = sat.get("expirationSeconds")
    if type(seconds) is not int or seconds <= 0:
        seconds = DEFAULT_TOKEN_EXPIRATION
    return (audience if isinstance(audience, str) else "", seconds)


def token_sources(pod: Obj) -> set[TokenSource]:
    """The tokens the pod's mounted projected volumes need."""
    spec = pod.get("spec") or {}
    mounted = {m.volume for m in plan_mounts(pod)[0]}
    out: set[TokenSource] = set()
    for v in _items(spec.get("volumes"))[:MAX_VOLUMES]:
        if str(v.get("name") or "") not in mounted or not isinstance(v.get("projected"), dict):
            continue
        for src in _items(v["projected"].get("sources")):
            if isinstance(src.get("serviceAccountToken"), dict):
                out.add(token_source(src["serviceAccountToken"]))
    return out


def _check_files(files: list[FileEntry]) -> tuple[FileEntry, ...]:
    if len(files) > MAX_FILES:
        raise _Failed(f"too many files in the volume: {len(files)} (at most {MAX_FILES})")
    seen: dict[str, FileEntry] = {}
    for f in files:
        problem = validate_path(f.path)
        if problem is not None:
            raise _Failed(f"{problem}: {f.path[:256]!r}")
        seen[posixpath.normpath(f.path)] = dataclasses.replace(f, path=posixpath.normpath(f.path))
    # a path that is also the directory of another cannot be both a file and a directory
    paths = set(seen)
    for p in paths:
        parent = posixpath.dirname(p)
        while parent:
            if parent in paths:
                raise _Failed(f"invalid path: {parent!r} is both a file and a directory")
            parent = posixpath.dirname(parent)
    return tuple(seen[p] for p in sorted(seen))


def _size(value: Any) -> int | None:
    if value is None:
        return None
    try:
        q = podenv.parse_quantity(value)
    except (ValueError, ZeroDivisionError, ArithmeticError, TypeError):
        return None
    return int(q) if q > 0 else None


def plan_volume(
    volume: Obj,
    pod: Obj,
    lookup: podenv.EnvLookup,
    *,
    tokens: Mapping[TokenSource, str] | None = None,
    allocatable: Mapping[str, str] | None = None,
    id_base: int = 0,
) -> VolumePlan:
    """`id_base`: the host id of the pod's uid and gid 0 (a pod in a user namespace), who
    owns its files and empty directories, as upstream's idmapped volumes show them to it."""
    plan = _plan_volume(volume, pod, lookup, tokens, allocatable, id_base)
    if not id_base:
        return plan
    owned = tuple(
        f if f.uid or f.gid else dataclasses.replace(f, uid=id_base, gid=id_base)
        for f in plan.files
    )
    return dataclasses.replace(plan, files=owned, owner=id_base)


def _plan_volume(
    volume: Obj,
    pod: Obj,
    lookup: podenv.EnvLookup,
    tokens: Mapping[TokenSource, str] | None,
    allocatable: Mapping[str, str] | None,
    id_base: int,
) -> VolumePlan:
    name = str(volume.get("name") or "")
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    alloc = allocatable or {"cpu": "1", "memory": str(2**30)}
    refs: set[tuple[str, str]] = set()
    try:
        if isinstance(volume.get("configMap"), dict) or isinstance(volume.get("secret"), dict):
            kind = "configMap" if isinstance(volume.get("configMap"), dict) else "secret"
            source = volume[kind]
            if kind == "secret":
                source = {**source, "name": source.get("secretName")}
            refs.add((kind, str(source.get("name") or "")))
            mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
            files, _ = _keyed_payload(kind, source, lookup, namespace, mode)
            return VolumePlan(name, "files", _check_files(files), sources=frozenset(refs))
        if isinstance(volume.get("downwardAPI"), dict):
            source = volume["downwardAPI"]
            mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
            files = _downward_payload(_items(source.get("items")), pod, mode, alloc)
            return VolumePlan(name, "files", _check_files(files))
        if isinstance(volume.get("projected"), dict):
            source = volume["projected"]
            for src in _items(source.get("sources")):
                for kind in ("configMap", "secret"):
                    if isinstance(src.get(kind), dict):
                        refs.add((kind, str(src[kind].get("name") or "")))
            files, _ = _projected_payload(
                source, pod, lookup, namespace, tokens or {}, alloc, id_base
            )
            return VolumePlan(name, "files", _check_files(files), sources=frozenset(refs))
        if isinstance(volume.get("emptyDir"), dict):
            source = volume["emptyDir"]
            memory = source.get("medium") == "Memory"
            return VolumePlan(
                name, "emptyDir", memory=memory, size_limit=_size(source.get("sizeLimit"))
            )
        if isinstance(volume.get("hostPath"), dict):
            source = volume["hostPath"]
            path = source.get("path")
            host_type = source.get("type") or ""
            if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                raise _Failed(f"invalid hostPath path: {str(path)[:256]!r}")
            if not isinstance(host_type, str) or host_type not in HOST_PATH_TYPES:
                raise _Failed(f"{str(host_type)[:64]} is an invalid volume type")
            return VolumePlan(
                name, "hostPath", host_path=posixpath.normpath(path), host_type=host_type
            )
        kinds = sorted(k for k, v in volume.items() if k != "name" and v is not None)
        raise _Failed(f"volume type {', '.join(kinds)[:128] or 'unknown'} is not supported here")
    except _Failed as e:
        return VolumePlan(name, "files", error=str(e), sources=frozenset(refs))


def plan_volumes(
    pod: Obj,
    lookup: podenv.EnvLookup,
    *,
    tokens: Mapping[TokenSource, str] | None = None,
    allocatable: Mapping[str, str] | None = None,
    id_base: int = 0,
) -> list[VolumePlan]:
    """Every volume of the pod that one of its containers mounts; as upstream's volume
    manager (GetPodVolumeNames), a volume no container mounts is not set up, so it cannot
    hold the pod either."""
    spec = pod.get("spec") or {}
    volumes = _items(spec.get("volumes"))[:MAX_VOLUMES]
    mounted = {m.volume for m in plan_mounts(pod)[0]}
    return [
        plan_volume(v, pod, lookup, tokens=tokens, allocatable=allocatable, id_base=id_base)
        for v in volumes
        if str(v.get("name") or "") in mounted
    ]


SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def service_account_mount(pod: Obj) -> MountPlan | None:
    """The pod's mount of a projected volume at the service-account path (the ServiceAccount
    admission's kube-api-access volume), whole and read-only: the sandbox binds it with the
    kubelet's files, so it costs no mount of its own."""
    spec = pod.get("spec") or {}
    projected = {
        str(v.get("name") or "")
        for v in _items(spec.get("volumes"))[:MAX_VOLUMES]
        if isinstance(v.get("projected"), dict)
    }
    for m in plan_mounts(pod)[0]:
        if m.path == SERVICE_ACCOUNT_PATH:
            if not m.sub_path and m.read_only and m.volume in projected:
                return m
            return None
    return None


def plan_mounts(pod: Obj) -> tuple[list[MountPlan], list[str]]:
    """The pod's mounts (one mount namespace serves all its containers, so the union of
    their volumeMounts; the first mount of a path wins) and why any could not be planned.
    Init containers' mounts are included: they run in the same namespace."""
    spec = pod.get("spec") or {}
    names = {str(v.get("name") or "") for v in _items(spec.get("volumes"))}
    by_path: dict[str, MountPlan] = {}
    errors: list[str] = []
    containers = _items(spec.get("initContainers")) + _items(spec.get("containers"))
    for c in containers:
        for m in _items(c.get("volumeMounts")):
            vol = str(m.get("name") or "")
            path = validate_mount_path(m.get("mountPath"))
            sub = validate_sub_path(m.get("subPath"))
            if vol not in names:
                errors.append(f'volume "{vol[:253]}" is not defined in the pod')
                continue
            if path is None or sub is None:
                errors.append(f'invalid mount of volume "{vol[:253]}"')
                continue
            read_only = m.get("readOnly") is True
            prior = by_path.get(path)
            if prior is None:
                by_path[path] = MountPlan(path, vol, sub, read_only)
            elif (
                prior.read_only
                and not read_only
                and (prior.volume, prior.sub_path)
                == (
                    vol,
                    sub,
                )
            ):
                by_path[path] = MountPlan(path, vol, sub, False)
    # parents before children, so a mount inside another volume lands on top of it
    mounts = sorted(by_path.values(), key=lambda m: (m.path.count("/"), m.path))
    return mounts, errors


def failed_mount_message(volume: str, error: str) -> str:
    return f'MountVolume.SetUp failed for volume "{volume}" : {error}'


def referenced_sources(pod: Obj) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap/Secret the pod's volumes read."""
    out: set[tuple[str, str]] = set()
    for v in _items((pod.get("spec") or {}).get("volumes")):
        if isinstance(v.get("configMap"), dict):
            out.add(("configMap", str(v["configMap"].get("name") or "")))
        if isinstance(v.get("secret"), dict):
            out.add(("secret", str(v["secret"].get("secretName") or "")))
        if isinstance(v.get("projected"), dict):
            for src in _items(v["projected"].get("sources")):
                for kind in ("configMap", "secret"):
                    if isinstance(src.get(kind), dict):
                        out.add((kind, str(src[kind].get("name") or "")))
    return out
