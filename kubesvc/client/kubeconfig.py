"""Read a kubeconfig file into what an HTTPS client needs, and wait for the server it
names."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("kubesvc.client")

SERVER_POLL = 0.02  # seconds between attempts while waiting for the API server


SERVERS_EXTENSION = "kubesvc.io/servers"  # a cluster's every API server, for failover


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None = None
    servers: tuple[str, ...] = ()  # every API server, `server` first (failover order)

    def __post_init__(self) -> None:
        if not self.servers:
            object.__setattr__(self, "servers", (self.server,))


def cluster_servers(cluster: dict[str, Any]) -> tuple[str, ...]:
    """The cluster's `server`, then the other API servers its kubesvc extension lists
    (kubectl keeps the extension and uses `server`)."""
    first = str(cluster.get("server") or "").rstrip("/")
    out = [first] if first else []
    for ext in cluster.get("extensions") or []:
        if not isinstance(ext, dict) or ext.get("name") != SERVERS_EXTENSION:
            continue
        body = ext.get("extension")
        listed = body.get("servers") if isinstance(body, dict) else None
        for url in listed if isinstance(listed, list) else []:
            if isinstance(url, str) and url.startswith("https://") and url.rstrip("/") not in out:
                out.append(url.rstrip("/"))
    return tuple(out)


def _named(items: Any, name: Any, what: str) -> dict[str, Any]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name") == name:
            section = item.get(what) or {}
            if not isinstance(section, dict):
                raise ValueError(f"kubeconfig's {what} {name!r} is not a mapping")
            return section
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


def _material(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    data = section.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = section.get(key)
    if path:
        p = Path(path)
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def _sections(path: Path, context: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user sections of `context` (default: the current context)."""
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a kubeconfig (no mapping at the top)")
    context_name = context or config.get("current-context")
    if not context_name:
        raise ValueError(f"{path}: no current-context; pass a context name")
    ctx = _named(config.get("contexts", []), context_name, "context")
    cluster = _named(config.get("clusters", []), ctx.get("cluster"), "cluster")
    user = _named(config.get("users", []), ctx.get("user"), "user")
    return cluster, user


def load(
    path: str | Path, context: str | None = None, *, credentials: bool = True
) -> ClusterAccess:
    """How to reach the kubeconfig's server; with `credentials=False`, its server and CA
    only (for a client that brings a token of its own)."""
    path = Path(path)
    cluster, user = _sections(path, context)
    if not credentials:
        user = {}
    base = path.parent
    ca = _material(cluster, "certificate-authority", base)
    if ca:
        # the kubeconfig's CA is the only one trusted, as kubectl does; loading the system's
        # CAs as well (create_default_context) would cost 20-50 ms in every process
        sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        sslctx.load_verify_locations(cadata=ca.decode())
    else:
        sslctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    cert, key = _material(user, "client-certificate", base), _material(user, "client-key", base)
    if cert and key:
        # ssl only loads key material from files
        with tempfile.TemporaryDirectory() as tmp:
            cf, kf = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            cf.write_bytes(cert)
            kf.write_bytes(key)
            kf.chmod(0o600)
            sslctx.load_cert_chain(cf, kf)
    servers = cluster_servers(cluster)
    return ClusterAccess(cluster["server"].rstrip("/"), sslctx, user.get("token"), servers)


def cluster_ca(path: str | Path, context: str | None = None) -> str:
    """The CA certificates (PEM) a kubeconfig trusts for its server, or "" when it names none."""
    path = Path(path)
    ca = _material(_sections(path, context)[0], "certificate-authority", path.parent)
    return ca.decode() if ca else ""


def server_address(server: str) -> tuple[str, int]:
    """Host and port of a kubeconfig's `server` URL (https://host[:port])."""
    url = urllib.parse.urlsplit(server)
    if not url.hostname:
        raise ValueError(f"server {server!r} has no host")
    return url.hostname, url.port or (80 if url.scheme == "http" else 443)


async def wait_for_server(
    path: str | Path, context: str | None = None, poll: float = SERVER_POLL
) -> None:
    """Wait until the kubeconfig at `path` exists and its server accepts connections, as
    upstream's kubelet and controller-manager keep trying until the API server is up: a
    cluster starts its components together, so they import while the API server starts.
    A kubeconfig that exists but cannot be read raises."""
    path = Path(path)
    said = False
    while True:
        try:
            cluster = _sections(path, context)[0]
            error = ""
            for server in cluster_servers(cluster) or ("",):
                try:
                    host, port = server_address(server)
                    _reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), 1.0
                    )
                except (OSError, TimeoutError) as e:
                    error = str(e) or type(e).__name__
                    continue
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
        except FileNotFoundError as e:
            error = f"{e.filename}: not written yet"
        if not said:
            log.info("waiting for the API server", extra={"kv": {"error": error}})
            said = True
        await asyncio.sleep(poll)
