"""The etcd members `kubesvc up --store etcd` runs: Debian's etcd-server, one or three
members on loopback, each in the cluster's directory, with mutual TLS for clients and
peers (a CA of their own, as kubeadm's etcd/ca), so only the API server (and the admin
through `kubesvc etcdctl`) can read what is stored.

`member_argv` is pure: what each member runs, from the cluster's plan.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from kubesvc import pki

HOST = "127.0.0.1"
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # the API server takes bodies up to 3 MiB


@dataclass(frozen=True)
class EtcdFiles:
    """The etcd PKI under <cluster>/etcd/pki."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def member_cert(self) -> Path:
        return self.dir / "member.crt"

    @property
    def member_key(self) -> Path:
        return self.dir / "member.key"

    @property
    def client_cert(self) -> Path:
        return self.dir / "apiserver-etcd-client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "apiserver-etcd-client.key"


def ensure_pki(dir: Path) -> EtcdFiles:
    """Create the CA, the members' certificate (serving and peer) and the API server's
    client certificate once."""
    files = EtcdFiles(dir)
    if files.client_key.exists():
        return files
    dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = pki.new_ca("etcd-ca")
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address(HOST)),
    ]
    member = pki.issue(ca, "kubesvc-etcd", sans=sans, server=True, client=True)
    client = pki.issue(ca, "kube-apiserver-etcd-client", client=True)
    files.ca.write_bytes(pki.cert_pem(ca[0]))
    files.member_cert.write_bytes(pki.cert_pem(member[0]))
    pki.write_private(files.member_key, pki.key_pem(member[1]))
    files.client_cert.write_bytes(pki.cert_pem(client[0]))
    pki.write_private(files.client_key, pki.key_pem(client[1]))
    return files


def free_ports(count: int) -> list[int]:
    """Ports free on loopback now (held open together, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class EtcdPlan:
    """Members i = 0..n-1: client port client_ports[i], peer port peer_ports[i]."""

    cluster: str
    client_ports: tuple[int, ...]
    peer_ports: tuple[int, ...]

    @staticmethod
    def new(cluster: str, members: int) -> EtcdPlan:
        ports = free_ports(2 * members)
        return EtcdPlan(cluster, tuple(ports[:members]), tuple(ports[members:]))

    @staticmethod
    def load(cluster: str, state: Any) -> EtcdPlan | None:
        """The plan in cluster.json (None when the cluster has no members of its own)."""
        if not isinstance(state, dict):
            return None
        clients, peers = state.get("client_ports"), state.get("peer_ports")
        ok = (
            isinstance(clients, list)
            and isinstance(peers, list)
            and len(clients) == len(peers) >= 1
            and all(isinstance(p, int) and 0 < p < 65536 for p in clients + peers)
        )
        return EtcdPlan(cluster, tuple(clients), tuple(peers)) if ok else None  # type: ignore[arg-type]

    def state(self) -> dict[str, Any]:
        return {"client_ports": list(self.client_ports), "peer_ports": list(self.peer_ports)}

    @property
    def members(self) -> int:
        return len(self.client_ports)

    def name(self, i: int) -> str:
        return f"etcd-{i + 1}"

    def client_url(self, i: int) -> str:
        return f"https://{HOST}:{self.client_ports[i]}"

    def peer_url(self, i: int) -> str:
        return f"https://{HOST}:{self.peer_ports[i]}"

    @property
    def servers(self) -> str:
        """What --etcd-servers gets: every member."""
        return ",".join(self.client_url(i) for i in range(self.members))

    def member_argv(self, i: int, data_dir: Path, files: EtcdFiles) -> list[str]:
        initial = ",".join(f"{self.name(j)}={self.peer_url(j)}" for j in range(self.members))
        return [
            "etcd",
            "--name",
            self.name(i),
            "--data-dir",
            str(data_dir),
            "--listen-client-urls",
            self.client_url(i),
            "--advertise-client-urls",
            self.client_url(i),
            "--listen-peer-urls",
            self.peer_url(i),
            "--initial-advertise-peer-urls",
            self.peer_url(i),
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            f"kubesvc-{self.cluster}",
            "--initial-cluster-state",
            "new",
            "--client-cert-auth",
            "--trusted-ca-file",
            str(files.ca),
            "--cert-file",
            str(files.member_cert),
            "--key-file",
            str(files.member_key),
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file",
            str(files.ca),
            "--peer-cert-file",
            str(files.member_cert),
            "--peer-key-file",
            str(files.member_key),
            "--max-request-bytes",
            str(MAX_REQUEST_BYTES),
            # the API server pings each connection every 5 s to find a member that hangs
            "--grpc-keepalive-min-time",
            "1s",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]

    def apiserver_flags(self, files: EtcdFiles) -> list[str]:
        return [
            "--etcd-servers",
            self.servers,
            "--etcd-cafile",
            str(files.ca),
            "--etcd-certfile",
            str(files.client_cert),
            "--etcd-keyfile",
            str(files.client_key),
        ]

    def etcdctl_argv(self, files: EtcdFiles) -> list[str]:
        return [
            "etcdctl",
            "--endpoints",
            self.servers,
            "--cacert",
            str(files.ca),
            "--cert",
            str(files.client_cert),
            "--key",
            str(files.client_key),
        ]
