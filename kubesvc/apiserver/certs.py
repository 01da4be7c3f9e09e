"""The cluster CA, the serving certificate and admin credentials, kept in the data directory."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubesvc import pki as certs
from kubesvc.auth.component_policy import SPEAKER_USER  # MetalLB's speaker, in node agents


@dataclass(frozen=True)
class Credentials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    token: str
    # kube-proxy's own identity: the user system:kube-proxy, which upstream's bootstrap
    # ClusterRoleBinding system:node-proxier grants what kube-proxy reads
    proxy_cert: Path | None = None
    proxy_key: Path | None = None
    # what the API server sends node agents' kubelet APIs (upstream: its kubelet client
    # certificate); no API request authenticates with it
    kubelet_client_token: str = ""


PROXY_USER = "system:kube-proxy"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
NODES_GROUP = "system:nodes"


def node_user(node: str) -> str:
    """The user a node's credential names (upstream's kubelet client certificates)."""
    return f"system:node:{node}"


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate of the cluster CA: `stem`.crt/.key in the pki directory."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


def component_identities(nodes: list[str]) -> list[ClientIdentity]:
    """Every component's own identity besides kube-proxy's: the controller-manager, the
    scheduler, the speaker, and each node (CN system:node:NAME, O system:nodes)."""
    out = [
        ClientIdentity("kube-controller-manager", CONTROLLER_MANAGER_USER),
        ClientIdentity("kube-scheduler", SCHEDULER_USER),
        ClientIdentity("metallb-speaker", SPEAKER_USER),
    ]
    out += [ClientIdentity(f"kubelet-{n}", node_user(n), (NODES_GROUP,)) for n in nodes]
    return out


def ensure_credentials(
    data_dir: Path, hosts: list[str], identities: list[ClientIdentity] | None = None
) -> Credentials:
    """Create the CA and certificates once; re-issue the serving cert if `hosts` changed.
    Client certificates for `identities` are issued once each, as the admin's."""
    pki = data_dir / "pki"
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.chmod(0o700)  # private keys and the token: the owner's alone
    creds = Credentials(
        pki / "ca.crt",
        pki / "apiserver.crt",
        pki / "apiserver.key",
        pki / "admin.crt",
        pki / "admin.key",
        _token(pki / "token"),
        pki / "kube-proxy.crt",
        pki / "kube-proxy.key",
        _token(pki / "kubelet-client.token"),
    )
    if not creds.ca_cert.exists() or not (pki / "ca.key").exists():
        ca_cert, ca_key = certs.new_ca("kubesvc-ca")
        certs.write_private(pki / "ca.key", certs.key_pem(ca_key))
        creds.ca_cert.write_bytes(certs.cert_pem(ca_cert))
        for stale in pki.glob("*.crt"):  # every certificate the old CA signed
            if stale != creds.ca_cert:
                stale.unlink(missing_ok=True)
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = (x509.load_pem_x509_certificate(creds.ca_cert.read_bytes()), ca_key)
    wanted = sorted(
        set(hosts)
        | {
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        }
    )
    if not creds.server_cert.exists() or _sans(creds.server_cert) != set(wanted):
        sans: list[x509.GeneralName] = []
        for h in wanted:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert, key = certs.issue(ca, "kube-apiserver", sans=sans, server=True)
        certs.write_private(creds.server_key, certs.key_pem(key))
        creds.server_cert.write_bytes(certs.cert_pem(cert))
    clients: list[tuple[Path, Path, str, tuple[str, ...]]] = [
        (creds.admin_cert, creds.admin_key, "kubernetes-admin", ("system:masters",))
    ]
    if creds.proxy_cert is not None and creds.proxy_key is not None:
        clients.append((creds.proxy_cert, creds.proxy_key, PROXY_USER, ()))
    for ident in identities or []:
        cert_path, key_path = client_files(data_dir, ident)
        clients.append((cert_path, key_path, ident.user, ident.groups))
    for cert_path, key_path, user, groups in clients:
        if cert_path.exists() and key_path.exists():
            continue
        cert, key = certs.issue(ca, user, orgs=tuple(groups), client=True)
        certs.write_private(key_path, certs.key_pem(key))
        cert_path.write_bytes(certs.cert_pem(cert))
    return creds


def client_files(data_dir: Path, ident: ClientIdentity) -> tuple[Path, Path]:
    """Where `ident`'s certificate and key are kept."""
    pki = data_dir / "pki"
    return pki / f"{ident.stem}.crt", pki / f"{ident.stem}.key"


def _sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n.value) for n in ext}


def _token(path: Path) -> str:
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
