"""ProxyState -> nftables text for `table ip kubesvc-proxy`, in the "flat" layout.

Pure: no I/O. The layout (see README.md next to this file) has no per-service or
per-endpoint chains. Every service destination is one element of a verdict map that jumps
to a shared "pick" chain named after its parameters (how the destination is keyed, traffic
class, endpoint count, affinity timeout); the pick chain draws `numgen random mod N` into
the packet mark and DNATs through one big map keyed by destination and mark. A one-service
change is therefore a handful of element adds/deletes.

`render(state)` builds the whole desired `Ruleset` and its `nft -f` text; `NftTracker`
remembers what the kernel was given and turns the next state into the minimal transaction.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from kubesvc.proxy.model import Endpoint, ProxyState, ServicePort, usable_endpoints

FAMILY = "ip"
TABLE = "kubesvc-proxy"

# conntrack mark bit: "masquerade this connection in postrouting" (the packet mark is busy
# carrying the endpoint slot while DNAT looks it up)
MASQ_BIT = 0x4000
# slot offset of the Cluster-policy endpoints of an externalTrafficPolicy=Local destination
# (used by pods and the node itself, which upstream short-circuits to all endpoints)
SHORTCUT_OFFSET = 0x8000
MAX_SLOTS = SHORTCUT_OFFSET  # endpoints per destination that fit below the offset

# chains attached to hooks: name -> (type, hook, priority), priorities as upstream
# (filter before DNAT so it sees service addresses; dstnat = -100, srcnat = 100)
BASE_CHAINS: dict[str, tuple[str, str, int]] = {
    "filter-prerouting": ("filter", "prerouting", -110),
    "filter-input": ("filter", "input", -110),
    "filter-forward": ("filter", "forward", -110),
    "filter-output": ("filter", "output", -110),
    "filter-output-post-dnat": ("filter", "output", -90),
    "nat-prerouting": ("nat", "prerouting", -100),
    "nat-output": ("nat", "output", -100),
    "nat-postrouting": ("nat", "postrouting", 100),
}

SERVICES = "services"
MASQUERADING = "masquerading"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_CHECK = "firewall-check"
REJECT_CHAIN = "reject-chain"
DNAT_PREFIX = "dnat-"  # dnat-ip, dnat-np: the one rule that looks up the endpoint maps

SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
SHORTCUT_IPS = "shortcut-ips"
SHORTCUT_NODEPORTS = "shortcut-nodeports"
SERVICE_ENDPOINTS = "service-endpoints"
NODEPORT_ENDPOINTS = "nodeport-endpoints"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
CLUSTER_IPS = "cluster-ips"
HAIRPIN = "hairpin"
FIREWALL_IPS = "firewall-ips"
FIREWALL_ALLOW = "firewall-allow"

PICK_PREFIX = "pick-"
AFFINITY_HIT_PREFIX = "affinity-hit-"
AFFINITY_PREFIX = "affinity-"

IP_KEY = "ip daddr . meta l4proto . th dport"
NP_KEY = "meta l4proto . th dport"
NOT_LOOPBACK = "ip daddr != 127.0.0.0/8"
SET_MASQ = f"ct mark set ct mark | {MASQ_BIT:#x}"

_V_IP = "ipv4_addr . inet_proto . inet_service : verdict"
_V_NP = "inet_proto . inet_service : verdict"

# static containers: name -> declaration body; their elements are recorded and diffed
CONTAINERS: dict[str, tuple[str, str]] = {
    SERVICE_IPS: ("map", f"type {_V_IP} ;"),
    SERVICE_NODEPORTS: ("map", f"type {_V_NP} ;"),
    SHORTCUT_IPS: ("map", f"type {_V_IP} ;"),
    SHORTCUT_NODEPORTS: ("map", f"type {_V_NP} ;"),
    SERVICE_ENDPOINTS: (
        "map",
        "type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service ;",
    ),
    NODEPORT_ENDPOINTS: (
        "map",
        "type inet_proto . inet_service . mark : ipv4_addr . inet_service ;",
    ),
    NO_ENDPOINT_SERVICES: ("map", f"type {_V_IP} ;"),
    NO_ENDPOINT_NODEPORTS: ("map", f"type {_V_NP} ;"),
    CLUSTER_IPS: ("set", "type ipv4_addr ;"),
    HAIRPIN: ("set", "type ipv4_addr . ipv4_addr ;"),
    FIREWALL_IPS: ("set", "type ipv4_addr . inet_proto . inet_service ;"),
    FIREWALL_ALLOW: (
        "set",
        "type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ;",
    ),
}
AFFINITY_MAX = 262144  # remembered clients per affinity map


# -- the desired ruleset as values -----------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    rules: tuple[str, ...]
    base: tuple[str, str, int] | None = None  # (type, hook, priority) for hooked chains


# An endpoint group: the endpoints DNAT picks from for one destination key.
# (endpoint map, destination key, slot offset) -> endpoints ("ip . port") in slot order
GroupKey = tuple[str, str, int]


# An element: key (without comment) -> (comment, value); value "" for sets
Elements = dict[str, tuple[str, str]]


@dataclass
class Ruleset:
    """Objects in (or meant for) the table. Also what one service contributes (a "part")."""

    chains: dict[str, Chain] = field(default_factory=dict)
    # maps/sets: name -> (kind, declaration body); the affinity maps are among them
    containers: dict[str, tuple[str, str]] = field(default_factory=dict)
    # elements of the static containers (never of the dynamic affinity maps)
    elements: dict[str, Elements] = field(default_factory=dict)
    slots: dict[GroupKey, tuple[str, ...]] = field(default_factory=dict)

    def merge(self, part: Ruleset) -> None:
        self.chains.update(part.chains)
        self.containers.update(part.containers)
        for name, elems in part.elements.items():
            self.elements.setdefault(name, {}).update(elems)
        self.slots.update(part.slots)


@dataclass(frozen=True)
class Rendered:
    full: str  # complete `nft -f` transaction creating/refreshing everything
    ruleset: Ruleset


# -- pick chains ------------------------------------------------------------------------------
# keyed by: "ip" (destination address . proto . port) or "np" (proto . node port)
# class: "int" ClusterIP, "ext" external with Cluster policy, "loc" external with Local
# policy, "sc" the all-endpoints short-circuit of a Local destination
def pick_chain_name(keyed: str, cls: str, count: int, affinity: int) -> str:
    name = f"{PICK_PREFIX}{keyed}-{cls}-{count}"
    return f"{name}-a{affinity}" if affinity else name


def affinity_map_name(keyed: str, timeout: int) -> str:
    return f"{AFFINITY_PREFIX}{keyed}-{timeout}"


def _affinity_key(keyed: str) -> str:
    return f"ip saddr . {IP_KEY}" if keyed == "ip" else f"ip saddr . {NP_KEY}"


def _dnat(keyed: str) -> str:
    if keyed == "ip":
        return f"dnat ip to {IP_KEY} . meta mark map @{SERVICE_ENDPOINTS}"
    return f"dnat ip to {NP_KEY} . meta mark map @{NODEPORT_ENDPOINTS}"


def _pick_rules(keyed: str, count: int, offset: int, affinity: int) -> list[str]:
    # The DNAT itself is in a shared chain: a rule naming a big endpoint map makes nft
    # fetch all its elements (5-8 ms at 10,000 services), and pick chains are created
    # whenever a service gets an endpoint count no other service has.
    if count == 0:
        return []
    draw = f"meta mark set numgen random mod {count}" + (f" offset {offset:#x}" if offset else "")
    dnat = f"goto {DNAT_PREFIX}{keyed}"
    if not affinity:
        return [draw, dnat]
    amap, key = affinity_map_name(keyed, affinity), _affinity_key(keyed)
    return [
        # a remembered client: refresh and reuse its slot (the hit chain returns here only
        # when that slot no longer exists)
        f"meta mark set {key} map @{amap} jump {AFFINITY_HIT_PREFIX}{keyed}-{affinity}",
        draw,
        f"update @{amap} {{ {key} : meta mark }}",
        dnat,
    ]


def affinity_hit_rules(keyed: str, affinity: int) -> list[str]:
    amap, key = affinity_map_name(keyed, affinity), _affinity_key(keyed)
    return [
        f"update @{amap} {{ {key} : meta mark }}",
        _dnat(keyed),
        # stale slot (its endpoint went away): forget it so the caller picks afresh
        f"delete @{amap} {{ {key} : meta mark }}",
    ]


def pick_chain_rules(
    keyed: str, cls: str, count: int, affinity: int, cluster_cidr: str
) -> list[str]:
    key = IP_KEY if keyed == "ip" else NP_KEY
    shortcut = SHORTCUT_IPS if keyed == "ip" else SHORTCUT_NODEPORTS
    pre: list[str] = []
    offset = 0
    if cls == "int" and cluster_cidr:
        # off-cluster sources (the node itself, other hosts) reach ClusterIPs masqueraded
        pre.append(f"ip saddr != {cluster_cidr} {SET_MASQ}")
    elif cls == "ext":
        pre.append(SET_MASQ)
    elif cls == "loc":
        pre.append(f"fib saddr type local {SET_MASQ}")
        pre.append(f"fib saddr type local {key} vmap @{shortcut}")
        if cluster_cidr:
            pre.append(f"ip saddr {cluster_cidr} {key} vmap @{shortcut}")
    elif cls == "sc":
        offset = SHORTCUT_OFFSET
    return pre + _pick_rules(keyed, count, offset, affinity)


def skeleton_chains() -> dict[str, Chain]:
    chains = {name: Chain((), base) for name, base in BASE_CHAINS.items()}
    jumps = {
        "filter-prerouting": [f"ct state new jump {FIREWALL_CHECK}"],
        "filter-input": [
            f"ct state new jump {NODEPORT_ENDPOINTS_CHECK}",
            f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",
        ],
        "filter-forward": [
            f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",
            f"ct state new jump {CLUSTER_IPS_CHECK}",
        ],
        "filter-output": [
            f"ct state new jump {SERVICE_ENDPOINTS_CHECK}",
            f"ct state new jump {FIREWALL_CHECK}",
        ],
        "filter-output-post-dnat": [f"ct state new jump {CLUSTER_IPS_CHECK}"],
        "nat-prerouting": [f"jump {SERVICES}"],
        "nat-output": [f"jump {SERVICES}"],
        "nat-postrouting": [f"jump {MASQUERADING}"],
    }
    for name, rules in jumps.items():
        chains[name] = Chain(tuple(rules), BASE_CHAINS[name])
    chains[SERVICES] = Chain(
        (
            f"{IP_KEY} vmap @{SERVICE_IPS}",
            f"fib daddr type local {NOT_LOOPBACK} {NP_KEY} vmap @{SERVICE_NODEPORTS}",
        )
    )
    chains[SERVICE_ENDPOINTS_CHECK] = Chain((f"{IP_KEY} vmap @{NO_ENDPOINT_SERVICES}",))
    chains[NODEPORT_ENDPOINTS_CHECK] = Chain(
        (f"{NOT_LOOPBACK} {NP_KEY} vmap @{NO_ENDPOINT_NODEPORTS}",)
    )
    # ports of a ClusterIP that no service declares: refuse at once (post-DNAT, so only
    # packets that were not rewritten still carry a ClusterIP)
    chains[CLUSTER_IPS_CHECK] = Chain((f"ip daddr @{CLUSTER_IPS} reject",))
    chains[FIREWALL_CHECK] = Chain(
        (f"{IP_KEY} @{FIREWALL_IPS} {IP_KEY} . ip saddr != @{FIREWALL_ALLOW} drop",)
    )
    chains[REJECT_CHAIN] = Chain(("reject",))
    for keyed in ("ip", "np"):
        chains[f"{DNAT_PREFIX}{keyed}"] = Chain((_dnat(keyed),))
    chains[MASQUERADING] = Chain(
        (
            f"ct mark & {MASQ_BIT:#x} == {MASQ_BIT:#x} masquerade fully-random",
            # hairpin: an endpoint reached itself through a service
            f"ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade fully-random",
        )
    )
    return chains


# -- slots ------------------------------------------------------------------------------------
def assign_slots(wanted: Iterable[str], previous: tuple[str, ...] | None) -> tuple[str, ...]:
    """Slot order for a group: every surviving endpoint keeps its slot (affinity entries
    remember slots), newcomers take freed slots first, then the last slots move into any
    remaining holes so that slots stay 0..N-1 for `numgen mod N`."""
    want = sorted(set(wanted))
    if not previous:
        return tuple(want)
    keep = set(want)
    slots: list[str | None] = [ep if ep in keep else None for ep in previous]
    placed = set(slots)
    newcomers = [ep for ep in want if ep not in placed]
    for i, ep in enumerate(slots):
        if ep is None and newcomers:
            slots[i] = newcomers.pop(0)
    slots.extend(newcomers)
    while None in slots:
        last = slots.pop()
        if last is not None:
            slots[slots.index(None)] = last
    return tuple(ep for ep in slots if ep is not None)


# -- building ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeContext:
    """The node-wide inputs every part depends on (a change means a whole-table compare)."""

    node: str
    node_ips: tuple[str, ...]
    cluster_cidr: str

    @classmethod
    def of(cls, state: ProxyState) -> NodeContext:
        return cls(state.node, tuple(state.node_ips), state.cluster_cidr)


def _ep(e: Endpoint) -> str:
    return f"{e.ip} . {e.port}"


def _in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


class _PartBuilder:
    """What one ServicePort contributes: its elements, the pick chains and affinity maps it
    uses, and its endpoint slots."""

    def __init__(
        self,
        ctx: NodeContext,
        sp: ServicePort,
        previous_slots: Mapping[GroupKey, tuple[str, ...]],
    ) -> None:
        self.ctx, self.sp, self.previous = ctx, sp, previous_slots
        self.part = Ruleset()
        self.proto = sp.protocol.lower()

    def elem(self, container: str, key: str, value: str = "", comment: str = "") -> None:
        self.part.elements.setdefault(container, {})[key] = (comment, value)

    def group(self, emap: str, key: str, offset: int, eps: tuple[Endpoint, ...]) -> int:
        gk = (emap, key, offset)
        slots = assign_slots((_ep(e) for e in eps), self.previous.get(gk))[:MAX_SLOTS]
        if slots:
            self.part.slots[gk] = slots
        for i, ep in enumerate(slots):
            self.elem(emap, f"{key} . {i + offset:#010x}", ep)
        return len(slots)

    def pick(self, keyed: str, cls: str, count: int) -> str:
        affinity = self.sp.affinity_timeout if count else 0
        name = pick_chain_name(keyed, cls, count, affinity)
        rules = pick_chain_rules(keyed, cls, count, affinity, self.ctx.cluster_cidr)
        self.part.chains[name] = Chain(tuple(rules))
        if affinity:
            keytype = "ipv4_addr . ipv4_addr" if keyed == "ip" else "ipv4_addr"
            self.part.containers[affinity_map_name(keyed, affinity)] = (
                "map",
                f"type {keytype} . inet_proto . inet_service : mark ; "
                f"flags dynamic,timeout ; timeout {affinity}s ; size {AFFINITY_MAX} ;",
            )
            self.part.chains[f"{AFFINITY_HIT_PREFIX}{keyed}-{affinity}"] = Chain(
                tuple(affinity_hit_rules(keyed, affinity))
            )
        return name

    def build(self, allowed: tuple[Endpoint, ...]) -> Ruleset:
        sp, ctx = self.sp, self.ctx
        every = usable_endpoints(sp, allowed, ctx.node, local_only=False)
        local = usable_endpoints(sp, allowed, ctx.node, local_only=True)
        internal = local if sp.internal_local else every
        external = local if sp.external_local else every
        comment = sp.key

        cip_key = f"{sp.cluster_ip} . {self.proto} . {sp.port}"
        self.elem(CLUSTER_IPS, sp.cluster_ip)
        if internal:
            n = self.group(SERVICE_ENDPOINTS, cip_key, 0, internal)
            self.elem(SERVICE_IPS, cip_key, f"goto {self.pick('ip', 'int', n)}", comment)
        else:
            # no endpoints at all: refuse; only no local ones (internalTrafficPolicy): drop
            verdict = f"goto {REJECT_CHAIN}" if not every else "drop"
            self.elem(NO_ENDPOINT_SERVICES, cip_key, verdict, comment)

        dests = [("ip", f"{ip} . {self.proto} . {sp.port}") for ip in sp.external_ips]
        dests += [("ip", f"{ip} . {self.proto} . {sp.port}") for ip in sp.load_balancer_ips]
        if sp.node_port:
            dests.append(("np", f"{self.proto} . {sp.node_port}"))
        for keyed, key in dests:
            self.external(keyed, key, every, external)
        self.firewall()
        for e in every:
            # only endpoints on this node (or of unknown node) can hairpin through it
            if e.node in ("", ctx.node):
                self.elem(HAIRPIN, f"{e.ip} . {e.ip}")
        return self.part

    def external(
        self, keyed: str, key: str, every: tuple[Endpoint, ...], external: tuple[Endpoint, ...]
    ) -> None:
        ip = keyed == "ip"
        emap = SERVICE_ENDPOINTS if ip else NODEPORT_ENDPOINTS
        dispatch = SERVICE_IPS if ip else SERVICE_NODEPORTS
        comment = self.sp.key
        if every and self.sp.external_local:
            n = self.group(emap, key, 0, external)
            c = self.group(emap, key, SHORTCUT_OFFSET, every)
            self.elem(dispatch, key, f"goto {self.pick(keyed, 'loc', n)}", comment)
            shortcut = SHORTCUT_IPS if ip else SHORTCUT_NODEPORTS
            self.elem(shortcut, key, f"goto {self.pick(keyed, 'sc', c)}", comment)
        elif every:
            n = self.group(emap, key, 0, external)
            self.elem(dispatch, key, f"goto {self.pick(keyed, 'ext', n)}", comment)
        if not external:
            verdict = f"goto {REJECT_CHAIN}" if not every else "drop"
            no_eps = NO_ENDPOINT_SERVICES if ip else NO_ENDPOINT_NODEPORTS
            self.elem(no_eps, key, verdict, comment)

    def firewall(self) -> None:
        sp = self.sp
        if not (sp.load_balancer_ips and sp.load_balancer_source_ranges):
            return
        sources = list(sp.load_balancer_source_ranges)
        if any(_in_cidr(ip, cidr) for ip in self.ctx.node_ips for cidr in sources):
            # a VIP bound on the node loops back with itself as the source
            sources += list(sp.load_balancer_ips)
        for ip in sp.load_balancer_ips:
            key = f"{ip} . {self.proto} . {sp.port}"
            self.elem(FIREWALL_IPS, key)
            for src in sources:
                self.elem(FIREWALL_ALLOW, f"{key} . {src}")


def build_part(
    ctx: NodeContext,
    sp: ServicePort,
    endpoints: tuple[Endpoint, ...],
    previous_slots: Mapping[GroupKey, tuple[str, ...]] | None = None,
) -> Ruleset:
    return _PartBuilder(ctx, sp, previous_slots or {}).build(endpoints)


def skeleton() -> Ruleset:
    return Ruleset(
        chains=skeleton_chains(),
        containers=dict(CONTAINERS),
        elements={name: {} for name in CONTAINERS},
    )


def build_ruleset(
    state: ProxyState, previous_slots: Mapping[GroupKey, tuple[str, ...]] | None = None
) -> Ruleset:
    """The whole table for `state`. Where two services claim one element, the later key
    (sorted) wins, as in the tracker."""
    ctx = NodeContext.of(state)
    rs = skeleton()
    for key in sorted(state.services):
        sp = state.services[key]
        rs.merge(build_part(ctx, sp, state.endpoints.get(key, ()), previous_slots))
    return rs


# -- text -------------------------------------------------------------------------------------
_CHUNK = 1000  # elements per `add element` line


def _chain_decl(name: str, chain: Chain) -> str:
    if chain.base is None:
        return f"add chain {FAMILY} {TABLE} {name}"
    ctype, hook, prio = chain.base
    return f"add chain {FAMILY} {TABLE} {name} {{ type {ctype} hook {hook} priority {prio} ; }}"


def _container_decl(name: str, spec: tuple[str, str]) -> str:
    kind, body = spec
    return f"add {kind} {FAMILY} {TABLE} {name} {{ {body} }}"


def _element_lines(verb: str, name: str, items: list[str]) -> list[str]:
    return [
        f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(items[i : i + _CHUNK])} }}"
        for i in range(0, len(items), _CHUNK)
    ]


def _item(key: str, comment: str, value: str) -> str:
    text = f'{key} comment "{comment}"' if comment else key
    return f"{text} : {value}" if value else text


def _rules(name: str, chain: Chain) -> list[str]:
    return [f"add rule {FAMILY} {TABLE} {name} {rule}" for rule in chain.rules]


def _delete_rank(name: str) -> int:
    # referrers before what they refer to: pick chains jump to affinity-hit chains
    return 0 if name.startswith(PICK_PREFIX) else 1


def _deletes(chains: Iterable[str], containers: Mapping[str, str]) -> list[str]:
    out = [
        f"delete chain {FAMILY} {TABLE} {name}"
        for name in sorted(chains, key=lambda n: (_delete_rank(n), n))
    ]
    out += [f"delete {kind} {FAMILY} {TABLE} {name}" for name, kind in sorted(containers.items())]
    return out


def full_text(
    rs: Ruleset,
    stale_chains: Iterable[str] = (),
    stale_containers: Mapping[str, str] | None = None,
) -> str:
    """Everything, idempotently: declare table, containers and chains (`add` of an existing
    object is a no-op), flush our chains and static containers, refill them. The dynamic
    affinity maps are declared but never flushed and the table is never deleted, so
    affinity state and established connections survive. `stale_*` (objects seen in the
    kernel that the ruleset does not have) are deleted last, once nothing refers to them."""
    lines = [f"add table {FAMILY} {TABLE}"]
    lines += [_container_decl(n, spec) for n, spec in rs.containers.items()]
    lines += [_chain_decl(n, c) for n, c in rs.chains.items()]
    lines += [f"flush chain {FAMILY} {TABLE} {n}" for n in rs.chains]
    lines += [f"flush {rs.containers[n][0]} {FAMILY} {TABLE} {n}" for n in rs.elements]
    for name, chain in rs.chains.items():
        lines += _rules(name, chain)
    for name, elems in rs.elements.items():
        lines += _element_lines("add", name, [_item(k, c, v) for k, (c, v) in elems.items()])
    stale = [c for c in stale_chains if c not in rs.chains]
    gone = {n: k for n, k in (stale_containers or {}).items() if n not in rs.containers}
    lines += _deletes(stale, gone)
    return "\n".join(lines) + "\n"


@dataclass
class Delta:
    """Changes between two rulesets, in the order a transaction must make them."""

    new_containers: dict[str, tuple[str, str]] = field(default_factory=dict)
    new_chains: dict[str, Chain] = field(default_factory=dict)
    changed_chains: dict[str, Chain] = field(default_factory=dict)
    element_deletes: dict[str, list[str]] = field(default_factory=dict)
    element_adds: dict[str, list[str]] = field(default_factory=dict)
    gone_chains: list[str] = field(default_factory=list)
    gone_containers: dict[str, str] = field(default_factory=dict)

    def element(
        self, name: str, key: str, before: tuple[str, str] | None, after: tuple[str, str] | None
    ) -> None:
        if before == after:
            return
        if before is not None:
            self.element_deletes.setdefault(name, []).append(key)
        if after is not None:
            self.element_adds.setdefault(name, []).append(_item(key, *after))

    def text(self) -> str:
        lines = [_container_decl(n, s) for n, s in self.new_containers.items()]
        lines += [_chain_decl(n, c) for n, c in self.new_chains.items()]
        lines += [f"flush chain {FAMILY} {TABLE} {n}" for n in self.changed_chains]
        for name, chain in [*self.new_chains.items(), *self.changed_chains.items()]:
            lines += _rules(name, chain)
        for name, keys in self.element_deletes.items():
            lines += _element_lines("delete", name, keys)
        for name, items in self.element_adds.items():
            lines += _element_lines("add", name, items)
        lines += _deletes(self.gone_chains, self.gone_containers)
        return "\n".join(lines) + "\n" if lines else ""


def diff_rulesets(old: Ruleset, new: Ruleset) -> Delta:
    d = Delta()
    d.new_containers = {n: s for n, s in new.containers.items() if n not in old.containers}
    d.new_chains = {n: c for n, c in new.chains.items() if n not in old.chains}
    d.changed_chains = {
        n: c for n, c in new.chains.items() if n in old.chains and old.chains[n] != c
    }
    for name in new.elements.keys() | old.elements.keys():
        before, after = old.elements.get(name, {}), new.elements.get(name, {})
        for key in before.keys() | after.keys():
            d.element(name, key, before.get(key), after.get(key))
    d.gone_chains = [n for n in old.chains if n not in new.chains]
    d.gone_containers = {n: s[0] for n, s in old.containers.items() if n not in new.containers}
    return d


def diff_text(old: Ruleset, new: Ruleset) -> str:
    """The minimal transaction from `old` (what the kernel has) to `new`."""
    return diff_rulesets(old, new).text()


def render(state: ProxyState) -> Rendered:
    rs = build_ruleset(state)
    return Rendered(full=full_text(rs), ruleset=rs)


def render_full(state: ProxyState) -> str:
    return render(state).full


# -- what the kernel has ----------------------------------------------------------------------
_Input = tuple[ServicePort, tuple[Endpoint, ...]]


def _same(a: _Input | None, b: _Input) -> bool:
    return a is not None and (a[0] is b[0] or a[0] == b[0]) and (a[1] is b[1] or a[1] == b[1])


@dataclass
class _Plan:
    """A computed but not yet applied sync."""

    state: ProxyState
    text: str
    full: bool
    parts: dict[str, Ruleset]  # service key -> its new part (changed or all)
    removed: list[str]


class NftTracker:
    """Remembers what the kernel was given, per service, so the next sync is a diff.

    Per service port it keeps the inputs (ServicePort, endpoints) and the part they
    rendered to; for every element, chain and affinity map it keeps which services use
    it. A sync compares inputs (identity first, so unchanged objects cost nothing),
    re-renders only changed services and emits only what their parts changed, taking
    shared objects (pick chains, affinity maps, hairpin and ClusterIP elements) into
    account. Until `applied()` has recorded a success, and after `reset()`, `diff()` is a
    full sync. Endpoint slots survive `reset()`, so a full sync leaves endpoints where
    remembered affinity entries expect them."""

    def __init__(self) -> None:
        self._synced = False
        self._ctx: NodeContext | None = None
        self._inputs: dict[str, _Input] = {}
        self._parts: dict[str, Ruleset] = {}
        # (container, key) -> {service key: (comment, value)}
        self._owners: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
        self._chain_users: dict[str, set[str]] = {}
        self._container_users: dict[str, set[str]] = {}
        self._slots: dict[GroupKey, tuple[str, ...]] = {}
        self._plan: _Plan | None = None
        self._stale_chains: set[str] = set()
        self._stale_containers: dict[str, str] = {}

    @property
    def needs_full(self) -> bool:
        return not self._synced

    def note_kernel_objects(self, chains: Iterable[str], containers: Mapping[str, str]) -> None:
        """Chains and maps/sets (name -> "map"/"set") found in the kernel table; the next
        full sync deletes the ones the desired ruleset does not have."""
        self._stale_chains = set(chains)
        self._stale_containers = dict(containers)

    def ruleset(self) -> Ruleset:
        """What the kernel has, as one ruleset (from the recorded parts)."""
        rs = skeleton()
        for key in sorted(self._parts):
            rs.merge(self._parts[key])
        return rs

    # -- computing ----------------------------------------------------------------------
    def _plan_for(self, state: ProxyState, changed: Iterable[str] | None = None) -> _Plan:
        if self._plan is not None and self._plan.state is state:
            return self._plan
        ctx = NodeContext.of(state)
        if not self._synced or ctx != self._ctx:
            plan = self._plan_full(state, ctx)
        else:
            plan = self._plan_partial(state, ctx, changed)
        self._plan = plan
        return plan

    def _part(self, ctx: NodeContext, key: str, state: ProxyState) -> Ruleset:
        sp = state.services[key]
        return build_part(ctx, sp, state.endpoints.get(key, ()), self._slots)

    def _plan_full(self, state: ProxyState, ctx: NodeContext) -> _Plan:
        with gc_paused():
            parts = {key: self._part(ctx, key, state) for key in sorted(state.services)}
        rs = skeleton()
        for part in parts.values():
            rs.merge(part)
        if self._synced:  # node-wide inputs changed: compare whole tables
            text = diff_text(self.ruleset(), rs)
        else:
            text = full_text(rs, self._stale_chains, self._stale_containers)
        removed = [k for k in self._parts if k not in parts]
        return _Plan(state, text, not self._synced, parts, removed)

    def _plan_partial(
        self, state: ProxyState, ctx: NodeContext, changed: Iterable[str] | None
    ) -> _Plan:
        """Re-render the services whose inputs changed: all of them are compared unless
        the caller knows which keys can have changed (the proxier's change tracker)."""
        parts: dict[str, Ruleset] = {}
        if changed is None:
            candidates: Iterable[str] = state.services
            removed = [k for k in self._inputs if k not in state.services]
        else:
            candidates = sorted(k for k in changed if k in state.services)
            removed = sorted(k for k in changed if k in self._inputs and k not in state.services)
        for key in candidates:
            sp = state.services[key]
            if not _same(self._inputs.get(key), (sp, state.endpoints.get(key, ()))):
                parts[key] = self._part(ctx, key, state)
        if not parts and not removed:
            return _Plan(state, "", False, {}, [])
        return _Plan(state, self._delta(parts, removed).text(), False, parts, removed)

    def _delta(self, parts: Mapping[str, Ruleset], removed: Iterable[str]) -> Delta:
        touched = {**dict.fromkeys(removed, None), **parts}
        d = Delta()
        # elements: effective value before and after, for every key a touched service uses
        keys: set[tuple[str, str]] = set()
        for svc in touched:
            for p in (self._parts.get(svc), parts.get(svc)):
                for name, elems in (p.elements if p else {}).items():
                    keys.update((name, k) for k in elems)
        for name, key in sorted(keys):
            owners = self._owners.get((name, key), {})
            after = {s: v for s, v in owners.items() if s not in touched}
            for svc, part in parts.items():
                if key in part.elements.get(name, {}):
                    after[svc] = part.elements[name][key]
            d.element(name, key, _winner(owners), _winner(after))
        # chains and containers: used by anyone before / after
        for users, attr, added, gone in (
            (self._chain_users, "chains", d.new_chains, None),
            (self._container_users, "containers", d.new_containers, d.gone_containers),
        ):
            names: set[str] = set()
            for svc in touched:
                for p in (self._parts.get(svc), parts.get(svc)):
                    names.update(getattr(p, attr) if p else ())
            for name in sorted(names):
                before = users.get(name, set())
                # shared chains have thousands of users: count, don't copy
                untouched = len(before) - sum(1 for s in touched if s in before)
                providers = [p for p in parts.values() if name in getattr(p, attr)]
                if providers and not before:
                    added[name] = getattr(providers[0], attr)[name]
                elif before and not untouched and not providers:
                    if gone is None:
                        d.gone_chains.append(name)
                    else:
                        gone[name] = self._kind(name)
        return d

    def _kind(self, container: str) -> str:
        for part in self._parts.values():
            if container in part.containers:
                return part.containers[container][0]
        return "map"

    # -- API ----------------------------------------------------------------------------
    def diff(self, state: ProxyState, changed: Iterable[str] | None = None) -> str:
        """The transaction from what the kernel has to `state`. `changed`: the service port
        keys that may differ from the last applied state (None: compare every service)."""
        return self._plan_for(state, changed).text

    def applied(self, state: ProxyState) -> None:
        with gc_paused():
            self._record(state)

    def _record(self, state: ProxyState) -> None:
        plan = self._plan_for(state)
        if plan.full or NodeContext.of(state) != self._ctx:
            self._inputs, self._parts, self._owners = {}, {}, {}
            self._chain_users, self._container_users = {}, {}
            self._ctx = NodeContext.of(state)
            self._slots = {}
            removed: list[str] = []
        else:
            removed = plan.removed
        for key in removed:
            self._forget(key)
            del self._inputs[key]
        for key, part in plan.parts.items():
            self._forget(key)
            self._remember(key, part)
            self._inputs[key] = (state.services[key], state.endpoints.get(key, ()))
        self._synced = True
        self._plan = None
        self._stale_chains, self._stale_containers = set(), {}

    def reset(self) -> None:
        self._synced = False
        self._plan = None

    # -- bookkeeping --------------------------------------------------------------------
    def _remember(self, svc: str, part: Ruleset) -> None:
        self._parts[svc] = part
        for name, elems in part.elements.items():
            for key, value in elems.items():
                self._owners.setdefault((name, key), {})[svc] = value
        for name in part.chains:
            self._chain_users.setdefault(name, set()).add(svc)
        for name in part.containers:
            self._container_users.setdefault(name, set()).add(svc)
        self._slots.update(part.slots)

    def _forget(self, svc: str) -> None:
        part = self._parts.pop(svc, None)
        if part is None:
            return
        for name, elems in part.elements.items():
            for key in elems:
                owners = self._owners.get((name, key), {})
                owners.pop(svc, None)
                if not owners:
                    self._owners.pop((name, key), None)
        for users, names in (
            (self._chain_users, part.chains),
            (self._container_users, part.containers),
        ):
            for name in names:
                users.get(name, set()).discard(svc)
                if not users.get(name):
                    users.pop(name, None)
        for gk in part.slots:
            self._slots.pop(gk, None)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a full table's worth of objects is created:
    collections triggered by the allocations (which hold no cycles) took half the time of
    a 10,000-service render."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _winner(owners: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The element value in force: the one of the last service key, as in build_ruleset."""
    return owners[max(owners)] if owners else None
