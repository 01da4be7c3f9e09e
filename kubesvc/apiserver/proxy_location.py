"""Where a `pods/proxy`, `services/proxy` or `nodes/proxy` request goes, and what of it is
passed on: pure functions, as upstream's ResourceLocation of each registry and the proxy
transport's header and redirect handling.

The object name in the path may carry a scheme and a port: `web`, `web:8080`,
`https:web:8443` (upstream's SplitSchemeNamePort). A pod is reached at its IP and the port
asked for (or its first declared container port, or 80); a Service at a random ready
endpoint address of the asked port (by name, or by number mapped to the port's name) that
is a pod of the same namespace; a node at its kubelet port, or another port asked for.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubesvc.api import errors
from kubesvc.api.errors import ApiError

Obj = Mapping[str, Any]

SCHEMES = ("", "http", "https")
# hop-by-hop headers (RFC 9110 7.6.1) and what the API server keeps for itself: the
# client's credentials are not the backend's business (upstream drops Authorization once
# the request is authenticated)
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "authorization",
        "content-length",
        "expect",
    }
)
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass(frozen=True)
class PodTarget:
    """A port of one pod: reached through its node, inside the pod's network namespace."""

    scheme: str
    namespace: str
    name: str
    ip: str
    port: int


@dataclass(frozen=True)
class NodeTarget:
    scheme: str
    host: str
    port: int
    kubelet: bool  # the node agent's own port: authenticate as the API server


def split_scheme_name_port(id_: str) -> tuple[str, str, str] | None:
    """`name`, `name:port` or `scheme:name:port`; None when it is none of these."""
    parts = id_.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in SCHEMES:
        return None
    return scheme, name, port


def parse_id(id_: str, what: str) -> tuple[str, str, str]:
    parsed = split_scheme_name_port(id_)
    if parsed is None:
        raise errors.bad_request(f"invalid {what} request {json.dumps(id_)}")
    return parsed


def _global_unicast(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (
        addr.is_unspecified
        or addr.is_loopback
        or addr.is_multicast
        or addr.is_link_local
        or (addr.version == 4 and int(addr) == 0xFFFFFFFF)
    )


def pod_ip(pod: Obj) -> str:
    status = pod.get("status") or {}
    ips = status.get("podIPs") or []
    if ips and isinstance(ips[0], Mapping):
        return str(ips[0].get("ip") or "")
    return str(status.get("podIP") or "")


def _port_number(port: str) -> int | None:
    if port.isascii() and port.isdigit() and 0 < int(port) <= 65535:
        return int(port)
    return None


def pod_target(pod: Obj, scheme: str, port: str) -> PodTarget:
    """Upstream's pod ResourceLocation: the port asked for, else the first declared container
    port, else HTTP's default."""
    meta = pod.get("metadata") or {}
    if not port:
        for c in (pod.get("spec") or {}).get("containers") or []:
            ports = c.get("ports") or []
            if ports:
                port = str(ports[0].get("containerPort", ""))
                break
    ip = pod_ip(pod)
    if not _global_unicast(ip):
        raise errors.bad_request("address not allowed")
    number = _port_number(port) if port else (443 if scheme == "https" else 80)
    if number is None:
        # upstream dials "ip:name" and fails the same way
        raise unreachable(f"dial tcp: address {port}: unknown port")
    return PodTarget(scheme or "http", meta.get("namespace", ""), meta.get("name", ""), ip, number)


def service_port_name(service: Obj, port: str) -> str:
    """A port number in the path stands for the Service port's name."""
    number = _port_number(port)
    if number is None:
        return port
    for p in (service.get("spec") or {}).get("ports") or []:
        if p.get("port") == number:
            return str(p.get("name") or "")
    name = (service.get("metadata") or {}).get("name", "")
    raise ApiError(
        503,
        "ServiceUnavailable",
        f'no service port {number} found for service "{name}"',
        {},
    )


def service_endpoints(
    endpoints: Obj | None, port_name: str, pods: Mapping[str, Obj]
) -> list[tuple[str, str, int]]:
    """(pod name, IP, port) of every ready address that serves `port_name` and is a pod of
    the namespace with that IP (upstream checks each address against its pod the same way).
    `pods` maps pod names to pods."""
    out = []
    for subset in (endpoints or {}).get("subsets") or []:
        number = next(
            (
                p.get("port")
                for p in subset.get("ports") or []
                if (p.get("name") or "") == port_name
            ),
            None,
        )
        if not isinstance(number, int):
            continue
        for addr in subset.get("addresses") or []:
            ref = addr.get("targetRef") or {}
            pod = pods.get(ref.get("name", "")) if ref.get("kind") == "Pod" else None
            if pod is None or pod_ip(pod) != addr.get("ip"):
                continue
            out.append((ref["name"], addr["ip"], number))
    return out


def service_target(
    service: Obj,
    endpoints: Obj | None,
    pods: Mapping[str, Obj],
    scheme: str,
    port: str,
    rng: random.Random | None = None,
) -> PodTarget:
    meta = service.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    port_name = service_port_name(service, port)
    if not (endpoints or {}).get("subsets"):
        raise _no_endpoints(name)
    choices = service_endpoints(endpoints, port_name, pods)
    if not choices:
        raise _no_endpoints(name)
    pod, ip, number = (rng or random).choice(choices)
    return PodTarget(scheme or "http", namespace, pod, ip, number)


def _no_endpoints(name: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"', {})


def node_target(kubelet: tuple[str, int], scheme: str, port: str) -> NodeTarget:
    """The kubelet's own port unless another one is asked for (upstream's node
    ResourceLocation); the kubelet serves HTTPS."""
    host, kubelet_port = kubelet
    if not port or port == str(kubelet_port):
        return NodeTarget("https", host, kubelet_port, True)
    number = _port_number(port)
    if number is None:
        raise unreachable(f"dial tcp: address {port}: unknown port")
    return NodeTarget(scheme or "http", host, number, False)


def unreachable(why: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", f"error trying to reach service: {why}", {})


def split_proxy_path(raw_path: str) -> tuple[str, str] | None:
    """(`/api/v1/namespaces/NS/pods/NAME/proxy`, what follows it) for a proxy subresource
    path, taken from the raw (still percent-encoded) path, a trailing slash kept."""
    segments = raw_path.split("?", 1)[0].split("/")
    if len(segments) < 4 or segments[0] or segments[1] != "api":
        return None
    rest = 3  # "", "api", "v1"
    at = rest + 4 if segments[rest : rest + 1] == ["namespaces"] else rest + 2
    if len(segments) <= at or segments[at] != "proxy":
        return None
    return "/".join(segments[: at + 1]), "/".join(segments[at + 1 :])


def join_path(tail: str) -> str:
    """The backend path: the part after `/proxy`, rooted, a trailing slash kept."""
    return "/" + tail.lstrip("/")


def request_headers(
    headers: Iterable[tuple[str, str]],
    *,
    forwarded_uri: str,
    forwarded_host: str,
    client_ip: str,
) -> list[tuple[str, str]]:
    """What the backend is sent: the client's headers without hop-by-hop ones and
    credentials, plus the X-Forwarded-* headers upstream's proxy adds."""
    out = []
    forwarded_for = ""
    for name, value in headers:
        lower = name.lower()
        if lower in DROPPED_REQUEST_HEADERS or lower.startswith("x-forwarded-"):
            if lower == "x-forwarded-for":
                forwarded_for = value
            continue
        out.append((name, value))
    out.append(("X-Forwarded-For", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip))
    out.append(("X-Forwarded-Uri", forwarded_uri))
    out.append(("X-Forwarded-Host", forwarded_host))
    out.append(("X-Forwarded-Proto", "https"))
    return out


def response_headers(
    headers: Iterable[tuple[str, str]], *, backend_host: str, prefix: str, host: str
) -> list[tuple[str, str]]:
    """The backend's headers without hop-by-hop ones; a redirect within the backend points
    back through the proxy."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in DROPPED_RESPONSE_HEADERS:
            continue
        if lower == "location":
            value = rewrite_location(value, backend_host=backend_host, prefix=prefix, host=host)
        out.append((name, value))
    return out


def rewrite_location(value: str, *, backend_host: str, prefix: str, host: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.netloc and parts.netloc != backend_host:
        return value  # somewhere else entirely
    if not parts.netloc and not parts.path.startswith("/"):
        return value  # relative: still right behind the proxy
    path = posixpath.join(prefix, parts.path.lstrip("/"))
    if parts.path.endswith("/") and not path.endswith("/"):
        path += "/"
    return urlunsplit(("https", host, path, parts.query, parts.fragment))


__all__ = [
    "NodeTarget",
    "PodTarget",
    "join_path",
    "node_target",
    "parse_id",
    "pod_target",
    "request_headers",
    "response_headers",
    "rewrite_location",
    "service_target",
    "split_proxy_path",
    "split_scheme_name_port",
    "unreachable",
]
