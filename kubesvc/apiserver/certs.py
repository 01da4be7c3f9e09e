"""The cluster CA, the serving certificate and admin credentials, kept in the data directory."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(cn: str, *orgs: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    return x509.Name(attrs)


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650 if ca else 825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


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
        ca_key = _key()
        ca = _sign(_name("kubesvc-ca"), ca_key.public_key(), _name("kubesvc-ca"), ca_key, ca=True)
        _write_key(pki / "ca.key", ca_key)
        creds.ca_cert.write_bytes(_pem(ca))
        for stale in pki.glob("*.crt"):  # every certificate the old CA signed
            if stale != creds.ca_cert:
                stale.unlink(missing_ok=True)
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_name = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes()).subject
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
        key = _key()
        sans: list[x509.GeneralName] = []
        for h in wanted:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = _sign(
            _name("kube-apiserver"),
            key.public_key(),
            ca_name,
            ca_key,
            sans=sans,
            usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        )
        _write_key(creds.server_key, key)
        creds.server_cert.write_bytes(_pem(cert))
    clients = [(creds.admin_cert, creds.admin_key, _name("kubernetes-admin", "system:masters"))]
    if creds.proxy_cert is not None and creds.proxy_key is not None:
        clients.append((creds.proxy_cert, creds.proxy_key, _name(PROXY_USER)))
    for ident in identities or []:
        cert_path, key_path = client_files(data_dir, ident)
        clients.append((cert_path, key_path, _name(ident.user, *ident.groups)))
    for cert_path, key_path, subject in clients:
        if cert_path.exists() and key_path.exists():
            continue
        key = _key()
        cert = _sign(
            subject, key.public_key(), ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        _write_key(key_path, key)
        cert_path.write_bytes(_pem(cert))
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
