"""What `kubesvc trace` is asked to reach: a URL, `host:port` or `ip:port` (pure)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80}


class BadTarget(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    host: str  # a name or an IPv4 address
    port: int
    path: str = "/"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            return False
        return True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


def parse(text: str) -> Target:
    """`http://host[:port][/path]`, `host:port` or `ip:port`; every request is an HTTP GET."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise BadTarget(f"not a URL or host:port: {e}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise BadTarget(f"scheme {parts.scheme!r} is not traced: use http:// or host:port")
    host = parts.hostname or ""
    if not host or len(host) > 253 or any(c.isspace() for c in host):
        raise BadTarget(f"no host in {text!r}")
    if ":" in host:
        raise BadTarget("IPv6 targets are not traced: the cluster is IPv4")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(host, port or DEFAULT_PORTS[parts.scheme], path)


def resolve_override(text: str, target: Target) -> str:
    """The address of curl's `--resolve HOST:PORT:ADDR` for this target (IPv4)."""
    host, port, addr = [*text.split(":"), "", ""][:3]
    if not host or not port.isdigit() or text.count(":") != 2:
        raise BadTarget(f"--resolve wants HOST:PORT:ADDR, not {text!r}")
    if (host.lower(), int(port)) != (target.host.lower(), target.port):
        raise BadTarget(f"--resolve {text} is not for {target.host}:{target.port}")
    try:
        ipaddress.IPv4Address(addr)
    except ValueError:
        raise BadTarget(f"--resolve: {addr!r} is not an IPv4 address") from None
    return addr
