"""ProxyState -> `iptables-restore --noflush` input in upstream kube-proxy's iptables layout.

Pure functions only: state in, text out. The layout, chain names, comments and rule order
follow pkg/proxy/iptables/proxier.go (syncProxyRules, writeServiceToEndpointRules), so that
`iptables-save` on a node reads like a real kube-proxy node and chain names can be compared
with upstream's.

Deliberate differences from upstream: services are written in key order (upstream walks a
Go map), localhost NodePorts are off (no route_localnet, so NodePorts match `! -d
127.0.0.0/8` and no KUBE-FIREWALL chain), and no nfacct counters.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Set
from dataclasses import dataclass

from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort, usable_endpoints

# -- names (pkg/proxy/iptables/proxier.go) -----------------------------------------------
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"

SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
FW_PREFIX = "KUBE-FW-"
EXT_PREFIX = "KUBE-EXT-"
SEP_PREFIX = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, FW_PREFIX, EXT_PREFIX, SEP_PREFIX)

FILTER_CHAINS = (
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
)
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)

MASQ_MARK = "0x4000"  # 1 << masqueradeBit (14), upstream's default
# Upstream drops per-endpoint comments above this many endpoints: the restore input
# shrinks by ~40% and restore time with it.
LARGE_CLUSTER_ENDPOINTS = 1000


@dataclass(frozen=True)
class JumpRule:
    """A rule in a built-in chain that sends packets into one of our chains."""

    table: str
    chain: str
    target: str
    comment: str
    extra: tuple[str, ...] = ()

    def spec(self) -> str:
        return " ".join((*self.extra, "-m comment --comment", _q(self.comment), "-j", self.target))


_NEW = ("-m conntrack --ctstate NEW",)
# upstream's iptablesJumpChains, in its order (each is inserted at the top of its chain)
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule(
        "filter",
        "INPUT",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule(
        "filter",
        "FORWARD",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    JumpRule("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)


# -- chain names -------------------------------------------------------------------------
def port_name_string(sp: ServicePort) -> str:
    """upstream ServicePortName.String(): `ns/name:port`, or `ns/name` for an unnamed port."""
    base = f"{sp.namespace}/{sp.name}"
    return f"{base}:{sp.port_name}" if sp.port_name else base


def _hash16(text: str) -> str:
    """sha256 -> base32 (RFC 4648 alphabet, as Go's StdEncoding) -> first 16 characters."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


@dataclass(frozen=True)
class ChainNames:
    svc: str  # Cluster policy endpoints
    svl: str  # Local policy endpoints
    ext: str  # entry point for NodePort / external IP / load balancer traffic
    fw: str  # loadBalancerSourceRanges


def chain_names(sp: ServicePort) -> ChainNames:
    """upstream servicePortPolicyClusterChain & co: prefix + portProtoHash(name, proto)."""
    h = _hash16(port_name_string(sp) + sp.protocol.lower())
    return ChainNames(SVC_PREFIX + h, SVL_PREFIX + h, EXT_PREFIX + h, FW_PREFIX + h)


def endpoint_string(ep: Endpoint) -> str:
    return f"{ep.ip}:{ep.port}"


def endpoint_chain_name(sp: ServicePort, ep: Endpoint) -> str:
    """upstream servicePortEndpointChainName: hash of name + protocol + `ip:port`."""
    return SEP_PREFIX + _hash16(port_name_string(sp) + sp.protocol.lower() + endpoint_string(ep))


def probability(n: int) -> str:
    """upstream computeProbability: fmt.Sprintf("%0.10f", 1.0/float64(n))."""
    return f"{1.0 / n:.10f}"


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def _q(text: str) -> str:
    return f'"{text}"'


# -- endpoint categorisation (upstream proxy.CategorizeEndpoints) ------------------------
def externally_accessible(sp: ServicePort) -> bool:
    return bool(sp.node_port or sp.external_ips or sp.load_balancer_ips)


def uses_cluster_endpoints(sp: ServicePort) -> bool:
    return not sp.internal_local or (externally_accessible(sp) and not sp.external_local)


def uses_local_endpoints(sp: ServicePort) -> bool:
    return sp.internal_local or (externally_accessible(sp) and sp.external_local)


@dataclass(frozen=True)
class Categorized:
    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]  # every endpoint that gets a KUBE-SEP chain
    has_any: bool  # any usable endpoint anywhere in the cluster


def categorize(state: ProxyState, sp: ServicePort) -> Categorized:
    eps = state.endpoints.get(sp.key, ())
    anywhere = usable_endpoints(sp, eps, state.node, local_only=False)
    cluster = anywhere if uses_cluster_endpoints(sp) else ()
    local = (
        usable_endpoints(sp, eps, state.node, local_only=True) if uses_local_endpoints(sp) else ()
    )
    reachable = cluster + tuple(e for e in local if e not in cluster)
    return Categorized(cluster, local, reachable, bool(anywhere))


# -- rendering ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Ruleset:
    text: str
    active_chains: frozenset[str]  # every per-service nat chain the ruleset keeps
    written_chains: frozenset[str]  # per-service nat chains (re)written by this text
    deleted_chains: frozenset[str]


class _Writer:
    """Upstream's four line buffers (filter/nat x chains/rules)."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.filter_chains = [f":{c} - [0:0]" for c in FILTER_CHAINS]
        self.filter_rules: list[str] = []
        self.nat_chains = [f":{c} - [0:0]" for c in NAT_CHAINS]
        self.nat_rules: list[str] = []
        self.active: set[str] = set()
        self.written: set[str] = set()
        total = sum(len(state.endpoints.get(k, ())) for k in state.services)
        self.large = total > LARGE_CLUSTER_ENDPOINTS
        cidr = state.cluster_cidr
        self.if_local = f"-s {cidr}" if cidr else ""
        self.if_not_local = f"! -s {cidr}" if cidr else ""

    def comment(self, text: str) -> str:
        """appendServiceCommentLocked: dropped in large clusters."""
        return "" if self.large else f" -m comment --comment {text}"


def _proto(sp: ServicePort) -> str:
    p = sp.protocol.lower()
    return f"-m {p} -p {p}"


def _write_service(w: _Writer, sp: ServicePort, *, write_chains: bool, node_ip: str | None) -> None:
    name = port_name_string(sp)
    names = chain_names(sp)
    cat = categorize(w.state, sp)
    proto = _proto(sp)
    port = str(sp.port)

    uses_cluster_chain = bool(cat.cluster) and uses_cluster_endpoints(sp)
    uses_local_chain = bool(cat.local) and uses_local_endpoints(sp)

    internal_chain = names.svc
    has_internal = cat.has_any
    if sp.internal_local:
        internal_chain = names.svl
        has_internal = has_internal and bool(cat.local)
    external_policy_chain = names.svc
    has_external = cat.has_any
    if sp.external_local:
        external_policy_chain = names.svl
        has_external = has_external and bool(cat.local)
    uses_ext_chain = cat.has_any and externally_accessible(sp)
    lb_chain = names.ext
    uses_fw = cat.has_any and bool(sp.load_balancer_ips) and bool(sp.load_balancer_source_ranges)
    if uses_fw:
        lb_chain = names.fw

    internal_target = external_target = ""
    internal_comment = external_comment = ""
    if not cat.has_any:
        internal_target = external_target = "REJECT"
        internal_comment = external_comment = _q(f"{name} has no endpoints")
    else:
        if not has_internal:
            internal_target, internal_comment = "DROP", _q(f"{name} has no local endpoints")
        if not has_external:
            external_target, external_comment = "DROP", _q(f"{name} has no local endpoints")

    nat, flt = w.nat_rules, w.filter_rules
    # cluster IP
    if has_internal:
        nat.append(
            f"-A {KUBE_SERVICES} -m comment --comment {_q(name + ' cluster IP')} {proto}"
            f" -d {sp.cluster_ip} --dport {port} -j {internal_chain}"
        )
    else:
        flt.append(
            f"-A {KUBE_SERVICES} -m comment --comment {internal_comment} {proto}"
            f" -d {sp.cluster_ip} --dport {port} -j {internal_target}"
        )
    # external IPs
    for ip in sp.external_ips:
        if cat.has_any:
            nat.append(
                f"-A {KUBE_SERVICES} -m comment --comment {_q(name + ' external IP')} {proto}"
                f" -d {ip} --dport {port} -j {names.ext}"
            )
        if not has_external:
            flt.append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {proto}"
                f" -d {ip} --dport {port} -j {external_target}"
            )
    # load balancer IPs
    for ip in sp.load_balancer_ips:
        if cat.has_any:
            nat.append(
                f"-A {KUBE_SERVICES} -m comment --comment {_q(name + ' loadbalancer IP')}"
                f" {proto} -d {ip} --dport {port} -j {lb_chain}"
            )
        if uses_fw:
            note = _q(f"{name} traffic not accepted by {names.fw}")
            flt.append(
                f"-A {KUBE_PROXY_FIREWALL} -m comment --comment {note} {proto}"
                f" -d {ip} --dport {port} -j DROP"
            )
    if not has_external:
        for ip in sp.load_balancer_ips:
            flt.append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {proto}"
                f" -d {ip} --dport {port} -j {external_target}"
            )
    # node port
    if sp.node_port:
        if cat.has_any:
            nat.append(
                f"-A {KUBE_NODEPORTS} -m comment --comment {name} {proto}"
                f" --dport {sp.node_port} -j {names.ext}"
            )
        if not has_external:
            flt.append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment}"
                f" -m addrtype --dst-type LOCAL {proto} --dport {sp.node_port}"
                f" -j {external_target}"
            )
    if sp.health_check_node_port and sp.external_local:
        note = _q(f"{name} health check node port")
        flt.append(
            f"-A {KUBE_NODEPORTS} -m comment --comment {note} -m tcp -p tcp"
            f" --dport {sp.health_check_node_port} -j ACCEPT"
        )

    # Per-service chains: always counted as active, written only when asked to (partial
    # sync leaves unchanged services' chains as they are in the kernel).
    chains: list[str] = []
    rules: list[str] = []
    if has_internal and w.if_not_local:
        # off-cluster sources reaching a cluster IP (e.g. the node itself) are masqueraded
        rules.append(
            f"-A {internal_chain} -m comment --comment {_q(name + ' cluster IP')} {proto}"
            f" -d {sp.cluster_ip} --dport {port} {w.if_not_local} -j {KUBE_MARK_MASQ}"
        )
    if uses_ext_chain:
        chains.append(names.ext)
        ext = names.ext
        if not sp.external_local:
            note = _q(f"masquerade traffic for {name} external destinations")
            rules.append(f"-A {ext} -m comment --comment {note} -j {KUBE_MARK_MASQ}")
        else:
            if w.if_local:
                note = _q(f"pod traffic for {name} external destinations")
                rules.append(f"-A {ext} -m comment --comment {note} {w.if_local} -j {names.svc}")
            note = _q(f"masquerade LOCAL traffic for {name} external destinations")
            rules.append(
                f"-A {ext} -m comment --comment {note} -m addrtype --src-type LOCAL"
                f" -j {KUBE_MARK_MASQ}"
            )
            note = _q(f"route LOCAL traffic for {name} external destinations")
            rules.append(
                f"-A {ext} -m comment --comment {note} -m addrtype --src-type LOCAL -j {names.svc}"
            )
        if has_external:
            rules.append(f"-A {ext} -j {external_policy_chain}")
    if uses_fw:
        chains.append(names.fw)
        head = f"-A {names.fw} -m comment --comment {_q(name + ' loadbalancer IP')}"
        allow_from_node = False
        for cidr in sp.load_balancer_source_ranges:
            cidr = cidr.strip()
            rules.append(f"{head} -s {cidr} -j {names.ext}")
            if node_ip and _contains(cidr, node_ip):
                allow_from_node = True
        if allow_from_node:
            rules.extend(f"{head} -s {ip} -j {names.ext}" for ip in sp.load_balancer_ips)
        note = _q(f"other traffic to {name} will be dropped by {KUBE_PROXY_FIREWALL}")
        rules.append(f"-A {names.fw} -m comment --comment {note}")
    if uses_cluster_chain:
        chains.append(names.svc)
        _write_endpoint_jumps(w, rules, sp, names.svc, cat.cluster)
    if uses_local_chain:
        chains.append(names.svl)
        _write_endpoint_jumps(w, rules, sp, names.svl, cat.local)
    comment = w.comment(name)
    for ep in cat.reachable:
        sep = endpoint_chain_name(sp, ep)
        chains.append(sep)
        head = f"-A {sep}{comment}"
        # hairpin: an endpoint reaching itself through the service must be masqueraded
        rules.append(f"{head} -s {ep.ip} -j {KUBE_MARK_MASQ}")
        recent = f" -m recent --name {sep} --set" if sp.affinity_timeout else ""
        rules.append(f"{head}{recent} {proto} -j DNAT --to-destination {endpoint_string(ep)}")

    w.active.update(chains)
    if write_chains:
        w.written.update(chains)
        w.nat_chains.extend(f":{c} - [0:0]" for c in chains)
        w.nat_rules.extend(rules)


def _write_endpoint_jumps(
    w: _Writer, rules: list[str], sp: ServicePort, chain: str, eps: tuple[Endpoint, ...]
) -> None:
    """writeServiceToEndpointRules: affinity checks first, then 1/n, 1/(n-1), ... picks."""
    name = port_name_string(sp)
    if sp.affinity_timeout:
        for ep in eps:
            sep = endpoint_chain_name(sp, ep)
            rules.append(
                f"-A {chain}{w.comment(_q(f'{name} -> {endpoint_string(ep)}'))}"
                f" -m recent --name {sep} --rcheck --seconds {sp.affinity_timeout} --reap"
                f" -j {sep}"
            )
    n = len(eps)
    for i, ep in enumerate(eps):
        sep = endpoint_chain_name(sp, ep)
        stat = (
            f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        )
        rules.append(
            f"-A {chain}{w.comment(_q(f'{name} -> {endpoint_string(ep)}'))}{stat} -j {sep}"
        )


def _contains(cidr: str, ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _jump_line(j: JumpRule) -> str:
    return f"-I {j.chain} {j.spec()}"


def build(
    state: ProxyState,
    changed: Set[str] | None = None,
    *,
    existing_chains: Iterable[str] = (),
    missing_jumps: Iterable[JumpRule] = (),
) -> Ruleset:
    """The restore input for `state`.

    changed: service keys (`ns/name`) whose per-service chains are (re)written; None writes
    every chain (full sync). The top-level chains and the whole filter table are always
    rewritten. existing_chains: nat chains believed to be in the kernel; those with a
    per-service prefix that the new state no longer uses are flushed and deleted (`-X`).
    missing_jumps: jump rules from built-in chains to insert (first sync of a node).
    """
    w = _Writer(state)
    # KUBE-POSTROUTING: masquerade what KUBE-MARK-MASQ marked, clearing the mark so a
    # packet that re-traverses the stack is not masqueraded twice.
    w.nat_rules += [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {MASQ_MARK}",
        f"-A {KUBE_POSTROUTING} -m comment --comment"
        f' "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {MASQ_MARK}",
    ]
    node_ip = state.node_ips[0] if state.node_ips else None
    for key in sorted(state.services):
        sp = state.services[key]
        write = changed is None or sp.service in changed
        _write_service(w, sp, write_chains=write, node_ip=node_ip)

    deleted = sorted(c for c in set(existing_chains) - w.active if is_service_chain(c))
    w.nat_chains.extend(f":{c} - [0:0]" for c in deleted)
    w.nat_rules.extend(f"-X {c}" for c in deleted)

    w.nat_rules.append(
        f"-A {KUBE_SERVICES} -m comment --comment"
        ' "kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
        f" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {KUBE_NODEPORTS}"
    )
    w.filter_rules += [
        f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules"'
        f" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule"'
        " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    jumps = list(missing_jumps)
    filter_jumps = [_jump_line(j) for j in jumps if j.table == "filter"]
    nat_jumps = [_jump_line(j) for j in jumps if j.table == "nat"]
    text = "\n".join(
        [
            "*filter",
            *w.filter_chains,
            *w.filter_rules,
            *filter_jumps,
            "COMMIT",
            "*nat",
            *w.nat_chains,
            *w.nat_rules,
            *nat_jumps,
            "COMMIT",
            "",
        ]
    )
    return Ruleset(text, frozenset(w.active), frozenset(w.written), frozenset(deleted))


def render(state: ProxyState, changed: set[str] | None = None) -> str:
    """`iptables-restore --noflush` input; `changed` = services to rewrite (None = all)."""
    return build(state, changed).text


def active_chains(state: ProxyState) -> frozenset[str]:
    """Per-service nat chains that `state` uses."""
    return build(state, set()).active_chains


# -- reading back ------------------------------------------------------------------------
_CHAIN_LINE = re.compile(r"^:(\S+)")
_RULE_LINE = re.compile(r"^-A (\S+) ")
_JUMP = re.compile(r" -j (\S+)")


def parse_save(text: str) -> dict[str, list[str]]:
    """iptables-save output -> table name -> its lines (without `*table` and COMMIT)."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), [])
        elif line == "COMMIT" or line.startswith("#"):
            current = None if line == "COMMIT" else current
        elif current is not None and line:
            current.append(line)
    return tables


def chains_in(lines: Iterable[str]) -> set[str]:
    return {m.group(1) for line in lines if (m := _CHAIN_LINE.match(line))}


def present_jumps(save: dict[str, list[str]]) -> set[tuple[str, str, str]]:
    """(table, built-in chain, our chain) of jump rules already in the kernel."""
    ours = set(FILTER_CHAINS) | set(NAT_CHAINS)
    found = set()
    for table, lines in save.items():
        for line in lines:
            m, j = _RULE_LINE.match(line), _JUMP.search(line)
            if m and j and j.group(1) in ours and not m.group(1).startswith("KUBE-"):
                found.add((table, m.group(1), j.group(1)))
    return found


def render_cleanup(save_text: str) -> str:
    """Restore input removing everything we created: jump rules, then our chains."""
    save = parse_save(save_text)
    out: list[str] = []
    ours = {"filter": set(FILTER_CHAINS), "nat": set(NAT_CHAINS)}
    for table in ("filter", "nat"):
        lines = save.get(table, [])
        existing = chains_in(lines)
        mine = sorted(
            c for c in existing if c in ours[table] or (table == "nat" and is_service_chain(c))
        )
        unlink = [
            "-D" + line[2:]
            for line in lines
            if (m := _RULE_LINE.match(line))
            and not is_service_chain(m.group(1))
            and m.group(1) not in ours[table]
            and (j := _JUMP.search(line))
            and j.group(1) in mine
        ]
        if not mine and not unlink:
            continue
        out += [f"*{table}", *(f":{c} - [0:0]" for c in mine), *unlink]
        out += [f"-X {c}" for c in mine]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def filter_service(save_text: str, service: str) -> str:
    """iptables-save output reduced to one service's (`ns/name`) rules and chains."""
    mention = re.compile(r'--comment "?' + re.escape(service) + r'[: "]')
    tables = parse_save(save_text)
    out: list[str] = []
    for table, lines in tables.items():
        by_chain: dict[str, list[str]] = {}
        for line in lines:
            if m := _RULE_LINE.match(line):
                by_chain.setdefault(m.group(1), []).append(line)
        keep: list[str] = []
        todo: list[str] = []
        for chain, rules in by_chain.items():
            if is_service_chain(chain):
                continue
            for line in rules:
                if mention.search(line):
                    keep.append(line)
                    if (j := _JUMP.search(line)) and is_service_chain(j.group(1)):
                        todo.append(j.group(1))
        seen: list[str] = []
        while todo:
            chain = todo.pop(0)
            if chain in seen:
                continue
            seen.append(chain)
            for line in by_chain.get(chain, []):
                keep.append(line)
                if (j := _JUMP.search(line)) and is_service_chain(j.group(1)):
                    todo.append(j.group(1))
        if keep:
            out += [f"*{table}", *(f":{c} - [0:0]" for c in seen), *keep, "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


def changed_services(old: ProxyState, new: ProxyState) -> set[str] | None:
    """Services whose chains differ between two states; None when everything must be
    rewritten (node identity, node IPs or cluster CIDR changed)."""
    if (old.node, old.node_ips, old.cluster_cidr) != (new.node, new.node_ips, new.cluster_cidr):
        return None
    before, after = _fingerprints(old), _fingerprints(new)
    return {svc for svc in before.keys() | after.keys() if before.get(svc) != after.get(svc)}


def _fingerprints(state: ProxyState) -> dict[str, list[tuple[ServicePort, tuple[Endpoint, ...]]]]:
    out: dict[str, list[tuple[ServicePort, tuple[Endpoint, ...]]]] = {}
    for key in sorted(state.services):
        sp = state.services[key]
        out.setdefault(sp.service, []).append((sp, tuple(state.endpoints.get(key, ()))))
    return out
