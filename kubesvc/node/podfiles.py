"""The files the kubelet (and the container runtime) manages inside a pod: /etc/hosts
(pkg/kubelet/kubelet_pods.go), /etc/resolv.conf (pkg/kubelet/network/dns/dns.go, written in
containerd's layout) and /etc/hostname. Pure text generation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Obj = Mapping[str, Any]

MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
HOSTNAME_MAX_LEN = 63
FQDN_MAX_LEN = 64

# pkg/apis/core/validation: MaxDNSNameservers, MaxDNSSearchPathsExpanded,
# MaxDNSSearchListCharsExpanded (ExpandedDNSConfig is GA); a search path longer than a
# DNS-1123 subdomain (253) is dropped because some resolvers abort on it.
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_SEARCH_PATH_LEN = 253
DEFAULT_DNS_OPTIONS = ("ndots:5",)


# --- hostname ---------------------------------------------------------------------------


def _truncate_hostname(hostname: str) -> str:
    if len(hostname) <= HOSTNAME_MAX_LEN:
        return hostname
    truncated = hostname[:HOSTNAME_MAX_LEN].rstrip("-.")
    if not truncated:
        raise ValueError(f"hostname for pod was invalid: {hostname!r}")
    return truncated


def short_hostname(pod: Obj) -> str:
    """spec.hostname or metadata.name, capped at 63 characters (GeneratePodHostNameAndDomain)."""
    spec = pod.get("spec") or {}
    name = str(spec.get("hostname") or (pod.get("metadata") or {}).get("name") or "")
    return _truncate_hostname(name)


def host_domain(pod: Obj, cluster_domain: str = "cluster.local") -> str:
    """`<subdomain>.<ns>.svc.<domain>` when spec.subdomain is set, else ""."""
    sub = (pod.get("spec") or {}).get("subdomain")
    if not sub:
        return ""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    return f"{sub}.{ns}.svc.{cluster_domain}"


def pod_hostname(pod: Obj, cluster_domain: str = "cluster.local") -> str:
    """The kernel hostname of the pod: the short hostname, or its FQDN when
    setHostnameAsFQDN and a subdomain are set (GetNodenameForKernel). ValueError if that
    FQDN does not fit the kernel's 64 characters."""
    hostname = short_hostname(pod)
    domain = host_domain(pod, cluster_domain)
    if domain and (pod.get("spec") or {}).get("setHostnameAsFQDN"):
        fqdn = f"{hostname}.{domain}"
        if len(fqdn) > FQDN_MAX_LEN:
            raise ValueError(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN "
                f"{fqdn} is too long ({FQDN_MAX_LEN} characters is the max, "
                f"{len(fqdn)} characters requested)"
            )
        return fqdn
    return hostname


def hostname_file(pod: Obj, cluster_domain: str = "cluster.local") -> str:
    """/etc/hostname content."""
    return pod_hostname(pod, cluster_domain) + "\n"


# --- /etc/hosts -------------------------------------------------------------------------


def _host_aliases(pod: Obj) -> str:
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if not aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    for alias in aliases:
        lines.append(f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or []))
    return "\n".join(lines) + "\n"


def hosts_file(
    pod: Obj,
    pod_ip: str | Sequence[str],
    cluster_domain: str = "cluster.local",
    node_hosts: str = "",
) -> str:
    """/etc/hosts content (managedHostsFileContent); hostNetwork pods get the node's
    hosts file (`node_hosts`) under the host-network header instead."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return MANAGED_HOSTS_HEADER_HOST_NETWORK + node_hosts + _host_aliases(pod)
    ips = [pod_ip] if isinstance(pod_ip, str) else list(pod_ip)
    hostname = short_hostname(pod)
    domain = host_domain(pod, cluster_domain)
    out = [
        MANAGED_HOSTS_HEADER,
        "127.0.0.1\tlocalhost\n",
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
        "fe00::0\tip6-localnet\n",
        "fe00::0\tip6-mcastprefix\n",
        "fe00::1\tip6-allnodes\n",
        "fe00::2\tip6-allrouters\n",
    ]
    for ip in ips:
        if not ip:
            continue
        out.append(f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n")
    out.append(_host_aliases(pod))
    return "".join(out)


# --- /etc/resolv.conf -------------------------------------------------------------------


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options): nameservers accumulate, the last search and
    options lines win, trailing dots of search domains are dropped."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        fields = trimmed.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return servers, searches, options


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def dns_type(pod: Obj) -> str:
    """ "cluster", "host" or "none" (getPodDNSType); unknown policies count as cluster."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst":
        return "host" if spec.get("hostNetwork") else "cluster"
    if policy == "Default":
        return "host"
    return "cluster"


def _merge_options(existing: Sequence[str], extra: Sequence[Obj]) -> list[str]:
    """mergeDNSOptions: by name, later values win (kept in first-seen order)."""
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for op in extra:
        value = op.get("value")
        merged[str(op.get("name", ""))] = "" if value is None else str(value)
    return [f"{k}:{v}" if v else k for k, v in merged.items()]


def _fit_searches(searches: list[str]) -> list[str]:
    kept = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_SEARCH_PATH_LEN]
    while kept and len(" ".join(kept)) > MAX_SEARCH_CHARS:
        kept.pop()
    return kept


def pod_dns(
    pod: Obj,
    dns_ip: str | Sequence[str] = "10.96.0.10",
    cluster_domain: str = "cluster.local",
    host_resolv: str = "",
) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) for the pod (Configurer.GetPodDNS)."""
    servers, searches, options = parse_resolv_conf(host_resolv)
    cluster_dns = [dns_ip] if isinstance(dns_ip, str) else list(dns_ip)
    cluster_dns = [ip for ip in cluster_dns if ip]
    kind = dns_type(pod)
    if kind == "none":
        servers, searches, options = [], [], []
    elif kind == "cluster" and cluster_dns:
        servers = cluster_dns
        if cluster_domain:
            ns = (pod.get("metadata") or {}).get("namespace") or "default"
            cluster = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
            searches = _unique(cluster + searches)
        options = list(DEFAULT_DNS_OPTIONS)
    config = (pod.get("spec") or {}).get("dnsConfig")
    if isinstance(config, dict):
        servers = _unique(servers + [str(s) for s in config.get("nameservers") or []])
        searches = _unique(searches + [str(s) for s in config.get("searches") or []])
        options = _merge_options(
            options, [o for o in config.get("options") or [] if isinstance(o, dict)]
        )
    return servers[:MAX_NAMESERVERS], _fit_searches(searches), options


def resolv_conf(
    pod: Obj,
    dns_ip: str | Sequence[str] = "10.96.0.10",
    cluster_domain: str = "cluster.local",
    host_resolv: str = "",
) -> str:
    """/etc/resolv.conf content for the pod, in the container runtime's layout
    (search, nameservers, options)."""
    servers, searches, options = pod_dns(pod, dns_ip, cluster_domain, host_resolv)
    lines = []
    if searches:
        lines.append("search " + " ".join(searches))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)
