"""The node's serving certificate."""

from __future__ import annotations

import os
from pathlib import Path


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for the node (as the kubelet makes without
    --tls-cert-file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from kubesvc import pki

    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}@kubesvc")])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert, key = pki.self_signed(name, [san], days=365)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pki.key_pem(key))
    cert_path.write_bytes(pki.cert_pem(cert))
    return cert_path, key_path
