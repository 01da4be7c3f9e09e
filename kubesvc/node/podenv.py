"""A container's environment, as the kubelet builds it (pkg/kubelet/kubelet_pods.go
makeEnvironmentVariables, pkg/kubelet/envvars, third_party/forked/golang/expansion).

Pure: ConfigMaps and Secrets come through an `EnvLookup`, pod and node facts are arguments.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections import ChainMap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

Obj = dict[str, Any]

MASTER_SERVICES = frozenset({"kubernetes"})


class EnvLookup(Protocol):
    """Read access to the pod's ConfigMaps and Secrets (the whole API object, or None)."""

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


@dataclass
class DictLookup:
    """An `EnvLookup` over in-memory objects keyed by (namespace, name)."""

    config_maps: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.config_maps.get((namespace, name))

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.secrets.get((namespace, name))


# --- $(VAR) expansion -------------------------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$(VAR)` is replaced when VAR is in env, otherwise
    left as written; `$$` is an escaped `$`; an unterminated `$(` stays literal."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text, cursor + 1)
            if is_var:
                value = env.get(read)
                out.append(value if value is not None else f"$({read})")
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _read_variable(text: str, start: int) -> tuple[str, bool, int]:
    """(content, is a variable reference, characters consumed after the `$`)."""
    first = text[start]
    if first == "$":
        return "$", False, 1
    if first == "(":
        close = text.find(")", start + 1)
        if close != -1:
            return text[start + 1 : close], True, close - start + 1
        return "$(", False, 1
    return "$" + first, False, 1


# --- service links ----------------------------------------------------------------------


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _service_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def _from_service(svc: Obj) -> list[tuple[str, str]]:
    """envvars.FromServices for one Service."""
    spec = svc.get("spec") or {}
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    if not ports:
        return []
    ip = str(spec["clusterIP"])
    prefix = _env_name(str((svc.get("metadata") or {}).get("name", "")))
    out = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(ports[0].get("port")))]
    for p in ports:
        if p.get("name"):
            out.append((f"{prefix}_SERVICE_PORT_{_env_name(str(p['name']))}", str(p.get("port"))))
    for i, p in enumerate(ports):
        proto = str(p.get("protocol") or "TCP")
        url = f"{proto.lower()}://{ip}:{p.get('port')}"
        if i == 0:
            out.append((f"{prefix}_PORT", url))
        pp = f"{prefix}_PORT_{p.get('port')}_{proto.upper()}"
        out += [
            (pp, url),
            (f"{pp}_PROTO", proto.lower()),
            (f"{pp}_PORT", str(p.get("port"))),
            (f"{pp}_ADDR", ip),
        ]
    return out


def service_env(
    services: list[Obj],
    namespace: str,
    enable_service_links: bool,
    master_service_namespace: str = "default",
) -> list[tuple[str, str]]:
    """The service-link variables a pod in `namespace` sees (kubelet getServiceEnvVarMap).

    The `kubernetes` Service of the master namespace is always included; other Services
    only from the pod's own namespace and only with enableServiceLinks. A pod-namespace
    Service shadows a same-named master Service. Upstream's order is map order (random);
    here it is by Service name, then upstream's per-Service order. A variable produced twice
    keeps the last value."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        if not _service_ip_set(svc) or spec.get("type") == "ExternalName":
            continue
        name = str(meta.get("name", ""))
        ns = meta.get("namespace")
        if ns == master_service_namespace and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    merged: dict[str, str] = {}
    for name in sorted(chosen):
        merged.update(_from_service(chosen[name]))
    return list(merged.items())


# --- downward API -----------------------------------------------------------------------


def _go_quote(s: str) -> str:
    """Go's %q for the characters env values realistically hold."""
    special = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
    special |= {"\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}
    out = []
    for ch in s:
        if ch in special:
            out.append(special[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _format_map(m: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}={_go_quote(str(m[k]))}" for k in sorted(m))


def _split_subscript(path: str) -> tuple[str, str] | None:
    if not path.endswith("']"):
        return None
    parts = path[:-2].split("['", 1)
    if len(parts) < 2 or not parts[0]:
        return None
    return parts[0], parts[1]


def _join(ips: Sequence[str]) -> str:
    return ",".join(ips)


def field_ref_value(
    pod: Obj, path: str, pod_ips: Sequence[str], host_ips: Sequence[str], node_name: str
) -> str:
    """podFieldSelectorRuntimeValue + fieldpath.ExtractFieldPathAsString; ValueError if
    the path is not one a container env may use."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    sub = _split_subscript(path)
    if sub is not None:
        base, key = sub
        if base in ("metadata.labels", "metadata.annotations"):
            return str((meta.get(base.split(".")[1]) or {}).get(key, ""))
        raise ValueError(f"fieldPath {path!r} does not support subscript")
    simple = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace", ""),
        "metadata.uid": lambda: meta.get("uid", ""),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
        "spec.nodeName": lambda: node_name,
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName", ""),
        "status.hostIP": lambda: host_ips[0] if host_ips else "",
        "status.hostIPs": lambda: _join(host_ips),
        "status.podIP": lambda: pod_ips[0] if pod_ips else "",
        "status.podIPs": lambda: _join(pod_ips),
    }
    getter = simple.get(path)
    if getter is None:
        raise ValueError(f"field label not supported: {path}")
    return str(getter() or "")


# --- resource quantities ----------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}


def parse_quantity(text: str | int | float) -> Fraction:
    """A resource.Quantity string ("500m", "1Gi", "1e3", "2") as an exact number."""
    s = str(text).strip()
    if not s:
        raise ValueError("empty quantity")
    for suffix, mult in _BINARY.items():
        if s.endswith(suffix):
            return Fraction(s[: -len(suffix)]) * mult
    lowered = s.lower()
    if "e" in lowered and lowered[-1].isdigit():
        mantissa, _, exp = lowered.partition("e")
        return Fraction(mantissa) * Fraction(10) ** int(exp)
    if s[-1].isdigit() or s[-1] == ".":
        return Fraction(s)
    suffix = s[-1]
    if suffix not in _DECIMAL:
        raise ValueError(f"unable to parse quantity's suffix: {s!r}")
    return Fraction(s[:-1]) * _DECIMAL[suffix]


def _default_allocatable() -> dict[str, str]:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        memory = 2**32
    return {"cpu": str(os.cpu_count() or 1), "memory": str(memory)}


def resource_field_value(
    ref: Mapping[str, Any], pod: Obj, container: Obj, allocatable: Mapping[str, str]
) -> str:
    """containerResourceRuntimeValue with limits defaulted to node allocatable."""
    target = container
    wanted = ref.get("containerName")
    if wanted:
        matches = [
            c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == wanted
        ]
        if not matches:
            raise ValueError(f"container {wanted} not found")
        target = matches[0]
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not (
        name in ("cpu", "memory", "ephemeral-storage") or name.startswith("hugepages-")
    ):
        raise ValueError(f"unsupported container resource : {resource}")
    values = dict(((target.get("resources") or {}).get(kind)) or {})
    if kind == "limits" and name in allocatable and parse_quantity(values.get(name, 0)) == 0:
        values[name] = allocatable[name]
    amount = parse_quantity(values.get(name, 0))
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Fraction(1)
    if name == "cpu":
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(divisor)))


# --- the environment --------------------------------------------------------------------


def _secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            raw = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raw = str(value).encode()
        out[key] = raw.decode("utf-8", "surrogateescape")
    for key, value in (secret.get("stringData") or {}).items():
        out[key] = str(value)
    return out


class _Sources:
    """Per-call cache of fetched ConfigMaps/Secrets, as upstream keeps one per container."""

    def __init__(self, lookup: EnvLookup, namespace: str) -> None:
        self.lookup = lookup
        self.namespace = namespace
        self.cache: dict[tuple[str, str], dict[str, str]] = {}

    def get(self, kind: str, name: str) -> dict[str, str] | None:
        if (kind, name) in self.cache:
            return self.cache[(kind, name)]
        if kind == "configmap":
            obj = self.lookup.config_map(self.namespace, name)
            data = None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}
        else:
            obj = self.lookup.secret(self.namespace, name)
            data = None if obj is None else _secret_data(obj)
        if data is not None:
            self.cache[(kind, name)] = data
        return data


_KEY_REFS = (("configMapKeyRef", "configmap", "ConfigMap"), ("secretKeyRef", "secret", "Secret"))


def _key_ref(source: Mapping[str, Any], sources: _Sources, errors: list[str]) -> str | None:
    """Value of a configMapKeyRef/secretKeyRef; None when skipped (optional) or failed."""
    for field_name, kind, title in _KEY_REFS:
        ref = source.get(field_name)
        if not isinstance(ref, dict):
            continue
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        optional = bool(ref.get("optional"))
        data = sources.get(kind, name)
        if data is None:
            if not optional:
                errors.append(f'{kind} "{name}" not found')
            return None
        if key not in data:
            if not optional:
                errors.append(f"couldn't find key {key} in {title} {sources.namespace}/{name}")
            return None
        return data[key]
    return None


def _env_from(container: Obj, sources: _Sources, errors: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in container.get("envFrom") or []:
        prefix = str(item.get("prefix") or "")
        for field_name, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            ref = item.get(field_name)
            if not isinstance(ref, dict):
                continue
            name = str(ref.get("name", ""))
            data = sources.get(kind, name)
            if data is None:
                if not ref.get("optional"):
                    errors.append(f'{kind} "{name}" not found')
                break
            for key, value in data.items():
                out[prefix + key] = value
            break
    return out


def container_env(
    pod: Obj,
    container: Obj,
    services_env: list[tuple[str, str]],
    lookup: EnvLookup,
    *,
    pod_ips: Sequence[str] = (),
    host_ips: Sequence[str] = (),
    node_name: str | None = None,
    allocatable: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """The container's environment and the errors that prevent starting it.

    envFrom is applied first, then env in order (each `value` expanded against the
    variables defined so far and the service variables); explicit variables override
    service ones. Upstream's order is unspecified; here the service variables left come
    first, then the container's own in declaration order. pod_ips,
    host_ips and node_name default to the pod's status/spec; allocatable (node resources
    that unset limits default to) to this machine's. The first error is the one upstream
    reports (CreateContainerConfigError)."""
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    status = pod.get("status") or {}
    pod_ips = list(pod_ips) or _status_ips(status, "podIPs", "podIP")
    host_ips = list(host_ips) or _status_ips(status, "hostIPs", "hostIP")
    node = node_name if node_name is not None else str((pod.get("spec") or {}).get("nodeName", ""))
    errors: list[str] = []
    sources = _Sources(lookup, namespace)
    services = dict(services_env)
    tmp = _env_from(container, sources, errors)
    mapping = ChainMap(tmp, services)
    for var in container.get("env") or []:
        name = str(var.get("name", ""))
        value = var.get("value")
        source = var.get("valueFrom")
        if value:
            tmp[name] = expand(str(value), mapping)
            continue
        if not isinstance(source, dict):
            tmp[name] = ""
            continue
        try:
            resolved = _value_from(
                source, pod, container, sources, errors, pod_ips, host_ips, node, allocatable
            )
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if resolved is not None:
            tmp[name] = resolved
    errors += [
        f"invalid value for environment variable {k}: NUL byte" for k, v in tmp.items() if "\0" in v
    ]
    env = {k: v for k, v in services.items() if k not in tmp}
    env.update(tmp)
    return env, errors


def _value_from(
    source: Mapping[str, Any],
    pod: Obj,
    container: Obj,
    sources: _Sources,
    errors: list[str],
    pod_ips: Sequence[str],
    host_ips: Sequence[str],
    node_name: str,
    allocatable: Mapping[str, str] | None,
) -> str | None:
    field_ref = source.get("fieldRef")
    if isinstance(field_ref, dict):
        return field_ref_value(
            pod, str(field_ref.get("fieldPath", "")), pod_ips, host_ips, node_name
        )
    res_ref = source.get("resourceFieldRef")
    if isinstance(res_ref, dict):
        return resource_field_value(res_ref, pod, container, allocatable or _default_allocatable())
    return _key_ref(source, sources, errors)


def _status_ips(status: Mapping[str, Any], plural: str, single: str) -> list[str]:
    ips = [
        str(e.get("ip")) for e in status.get(plural) or [] if isinstance(e, dict) and e.get("ip")
    ]
    if not ips and status.get(single):
        ips = [str(status[single])]
    return ips
