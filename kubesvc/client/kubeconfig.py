"""Read a kubeconfig file into what an HTTPS client needs."""

from __future__ import annotations

import base64
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None = None


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
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


def load(path: str | Path, context: str | None = None) -> ClusterAccess:
    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    context_name = context or config.get("current-context")
    if not context_name:
        raise ValueError(f"{path}: no current-context; pass a context name")
    ctx = _named(config.get("contexts", []), context_name, "context")
    cluster = _named(config.get("clusters", []), ctx["cluster"], "cluster")
    user = _named(config.get("users", []), ctx["user"], "user")
    base = path.parent
    sslctx = ssl.create_default_context()
    ca = _material(cluster, "certificate-authority", base)
    if ca:
        sslctx.load_verify_locations(cadata=ca.decode())
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
    return ClusterAccess(cluster["server"].rstrip("/"), sslctx, user.get("token"))
