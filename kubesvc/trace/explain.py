"""Turn what was observed of one request into steps a person can follow (pure): each step
says what happened, from the evidence, and a failed request says why.

Input is the `Observed` record and the cluster's objects (pods, services, endpointslices,
nodes) read at trace time; output is a list of steps, rendered as text or as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubesvc.trace.evidence import ConntrackEntry, TraceEvent, packet_field
from kubesvc.trace.run import Observed

PROXY_TABLES = ("kubesvc-proxy", "kubesvc-node")


@dataclass
class Step:
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    steps: list[Step]
    ok: bool
    why: list[str]
    answered_by: str | None  # ns/name of the pod that answered

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "why": self.why,
            "answeredBy": self.answered_by,
            "steps": [{"title": s.title, "lines": s.lines, **s.data} for s in self.steps],
        }

    def text(self) -> str:
        out = []
        for i, s in enumerate(self.steps, 1):
            out.append(f"{i}. {s.title}")
            out += [f"   {line}" for line in s.lines]
        out.append("")
        if self.ok:
            out.append(f"OK: answered by {self.answered_by or 'an address outside the pods'}")
        else:
            out.append("FAILED: " + "; ".join(self.why))
        return "\n".join(out) + "\n"


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class _Index:
    """Lookups over the objects read at trace time."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.pods = [p for p in objects.get("pods", []) if isinstance(p, dict)]
        self.services = [s for s in objects.get("services", []) if isinstance(s, dict)]
        self.slices = [s for s in objects.get("endpointslices", []) if isinstance(s, dict)]

    def pod_by_ip(self, ip: str) -> dict[str, Any] | None:
        for p in self.pods:
            spec, status = _d(p.get("spec")), _d(p.get("status"))
            if status.get("podIP") == ip and spec.get("hostNetwork") is not True:
                return p
        return None

    @staticmethod
    def ref(obj: dict[str, Any]) -> str:
        meta = _d(obj.get("metadata"))
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def service_for(self, ip: str, port: int, nodes: dict[str, str]) -> tuple[Any, Any, str]:
        """(service, its port or None, how it matched) for a destination."""
        node_ips = set(nodes.values())
        for s in self.services:
            spec, status = _d(s.get("spec")), _d(s.get("status"))
            ips = set(_l(spec.get("clusterIPs"))) | {spec.get("clusterIP")}
            lb = {_d(i).get("ip") for i in _l(_d(status.get("loadBalancer")).get("ingress"))}
            external = set(_l(spec.get("externalIPs")))
            how = (
                "ClusterIP"
                if ip in ips
                else "LoadBalancer IP"
                if ip in lb
                else "external IP"
                if ip in external
                else None
            )
            ports = [_d(p) for p in _l(spec.get("ports"))]
            if how is not None:
                return s, next((p for p in ports if p.get("port") == port), None), how
            if ip in node_ips:
                match = next((p for p in ports if p.get("nodePort") == port), None)
                if match is not None:
                    return s, match, "NodePort"
        return None, None, ""

    def external_name(self, fqdn: str) -> dict[str, Any] | None:
        """The ExternalName Service whose DNS name is `fqdn` (NAME.NS.svc.DOMAIN.)."""
        labels = fqdn.rstrip(".").split(".")
        if len(labels) < 3 or labels[2] != "svc":
            return None
        for s in self.services:
            meta, spec = _d(s.get("metadata")), _d(s.get("spec"))
            if (meta.get("name"), meta.get("namespace")) == (labels[0], labels[1]):
                return s if spec.get("type") == "ExternalName" else None
        return None

    def slice_endpoints(self, svc: dict[str, Any]) -> list[dict[str, Any]]:
        meta = _d(svc.get("metadata"))
        out = []
        for sl in self.slices:
            m = _d(sl.get("metadata"))
            labels = _d(m.get("labels"))
            if m.get("namespace") == meta.get("namespace") and labels.get(
                "kubernetes.io/service-name"
            ) == meta.get("name"):
                out += [_d(e) for e in _l(sl.get("endpoints"))]
        return out


def _dns_step(obs: Observed, idx: _Index) -> Step | None:
    if obs.target.is_ip:
        return None
    conf = obs.source.resolv
    step = Step(
        f"DNS: {obs.target.host} as {obs.source.name}'s resolver looks it up",
        [
            f"nameserver {', '.join(conf.nameservers) or '-'}, search "
            f"{' '.join(conf.search) or '-'}, ndots {conf.ndots}"
        ],
    )
    if not obs.queries and obs.address:
        step.lines.append(f"not looked up: --resolve sends {obs.target.host} to {obs.address}")
    for q in obs.queries:
        who = ""
        if q.answered_by and q.answered_by != q.server:
            pod = idx.pod_by_ip(q.answered_by)
            who = f", answered by {idx.ref(pod) if pod else q.answered_by}"
        answers = f": {'; '.join(q.answers)}" if q.answers else ""
        step.lines.append(f"{q.name} A? -> {q.rcode}{answers} ({q.ms:.1f} ms via {q.server}{who})")
        for a in q.answers:
            owner, _, rest = a.partition(" CNAME ")
            svc = idx.external_name(owner) if rest else None
            if svc is not None:
                step.lines.append(f"{owner} is the ExternalName Service {idx.ref(svc)}: a CNAME")
    step.data["queries"] = [vars(q) for q in obs.queries]
    step.data["address"] = obs.address
    return step


def _rule_lines(events: list[TraceEvent], dnat: tuple[str, int] | None) -> list[str]:
    """The proxy's rules the packet matched, each map lookup with the element it hit: the
    key from the packet as that hook saw it, the value from the verdict or conntrack."""
    lines = []
    packet = ""
    for e in events:
        if e.kind == "packet":
            packet = e.text
        if e.table not in PROXY_TABLES or e.kind != "rule":
            continue
        line = f"{e.chain}: {e.text} -> {e.verdict}"
        daddr, proto = packet_field(packet, "ip daddr"), packet_field(packet, "ip protocol")
        proto = proto or next((p for p in ("tcp", "udp", "sctp") if f" {p} dport " in packet), "")
        dport = packet_field(packet, f"{proto} dport") if proto else None
        if "vmap @service-ips" in e.text and daddr and dport:
            line += f"  [element {daddr} . {proto} . {dport}]"
        elif "vmap @service-nodeports" in e.text and dport:
            line += f"  [element {proto} . {dport}]"
        elif "-endpoints" in e.text and " dnat " in f" {e.text}" and dnat is not None:
            line += f"  [to {dnat[0]} . {dnat[1]}, as conntrack recorded]"
        lines.append(line)
    return lines


def _verdicts(events: list[TraceEvent]) -> list[str]:
    """Each proxy rule the packet matched, with its verdict (nft reports a reject as a
    drop verdict, so the rule's own text tells them apart)."""
    return [
        f"{e.text} -> {e.verdict}" for e in events if e.kind == "rule" and e.table in PROXY_TABLES
    ]


def _relevant(moved: list[tuple[str, str, int]], svc: str | None) -> list[tuple[str, str, int]]:
    """Of the iptables rules whose counters moved while the request was made (other traffic
    moves some too), those that name the Service in their comment, or (for a destination
    that is no Service's) those that rewrite or stop packets."""
    if svc is not None:
        kept = [m for m in moved if f'--comment "{svc}' in m[1]]
    else:
        kept = [m for m in moved if any(f"-j {t}" in m[1] for t in ("DNAT", "REJECT", "DROP"))]
    return sorted(kept, key=_traversal)


# the order a packet meets kube-proxy's chains in
_CHAIN_ORDER = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXT-", "KUBE-FW-", "KUBE-SVL-",
                "KUBE-SVC-", "KUBE-SEP-", "KUBE-MARK-MASQ")  # fmt: skip


def _traversal(moved: tuple[str, str, int]) -> tuple[int, int]:
    chain = moved[1].split()[1] if len(moved[1].split()) > 1 else ""
    rank = next((i for i, c in enumerate(_CHAIN_ORDER) if chain.startswith(c)), len(_CHAIN_ORDER))
    return (0 if moved[0] == "nat" else 1, rank)


def explain(obs: Observed, objects: dict[str, list[dict[str, Any]]]) -> Report:
    idx = _Index(objects)
    steps: list[Step] = []
    why: list[str] = []
    dns = _dns_step(obs, idx)
    if dns is not None:
        steps.append(dns)
    if obs.address is None:
        tried = ", ".join(q.name for q in obs.queries) or obs.target.host
        last = obs.queries[-1].rcode if obs.queries else "no nameserver"
        why.append(f"{obs.target.host} does not resolve ({last}; names tried: {tried})")
        return Report(steps, False, why, None)
    svc, port, how = idx.service_for(obs.address, obs.target.port, obs.nodes)
    if svc is not None:
        spec = _d(svc.get("spec"))
        lines = [
            f"{obs.address}:{obs.target.port} is the {how} of {idx.ref(svc)} "
            f"(type {spec.get('type', 'ClusterIP')})"
        ]
        if port is not None:
            lines.append(
                f"port {port.get('name') or '-'} {port.get('port')}/{port.get('protocol', 'TCP')}"
                f" -> targetPort {port.get('targetPort')}"
            )
        else:
            lines.append(f"{idx.ref(svc)} has no port {obs.target.port}")
        lines.append(
            f"sessionAffinity {spec.get('sessionAffinity', 'None')}, internalTrafficPolicy "
            f"{spec.get('internalTrafficPolicy', 'Cluster')}, externalTrafficPolicy "
            f"{spec.get('externalTrafficPolicy', '-')}"
        )
        eps = idx.slice_endpoints(svc)
        for e in eps:
            cond = _d(e.get("conditions"))
            target = _d(e.get("targetRef"))
            state = "ready" if cond.get("ready") is not False else "NOT ready"
            lines.append(
                f"endpoint {', '.join(map(str, _l(e.get('addresses'))))} ({target.get('name', '-')}"
                f" on {e.get('nodeName', '-')}): {state}"
            )
        if not eps:
            lines.append("no endpoints: its selector matches no ready pod")
        steps.append(Step("Service", lines, {"service": idx.ref(svc), "match": how}))
    else:
        pod = idx.pod_by_ip(obs.address)
        what = f"pod {idx.ref(pod)}" if pod else "no Service and no pod"
        steps.append(Step("Service", [f"{obs.address}:{obs.target.port} is {what}"]))
    src_node = obs.source.node
    # the node whose kernel rewrote the destination: the source's own, or (for a request
    # from outside the nodes) the one it reached
    nat_node = src_node if src_node and obs.conntrack.get(src_node) else None
    if nat_node is None:
        nat_node = next((n for n, e in obs.conntrack.items() if e and e.dnat), None)
    entry: ConntrackEntry | None = obs.conntrack.get(nat_node) if nat_node else None
    rule_nodes = [src_node] if src_node else []
    rule_nodes += [n for n in obs.rules if n not in rule_nodes]
    rule_nodes += [n for n in obs.moved if n not in rule_nodes]
    verdicts: list[str] = []
    for node in rule_nodes:
        if obs.proxy_mode == "nftables":
            events = obs.rules.get(node, [])
            node_entry = obs.conntrack.get(node)
            lines = _rule_lines(events, node_entry.dnat if node_entry else None)
            verdicts += _verdicts(events)
            data = {"node": node, "events": [e.as_dict() for e in events]}
        else:
            moved = _relevant(obs.moved.get(node, []), idx.ref(svc) if svc is not None else None)
            lines = [f"{t}: {rule} (+{n} packets)" for t, rule, n in moved]
            verdicts += [r for _t, r, _n in moved]
            data = {"node": node, "rules": [list(m) for m in moved]}
        if lines or node == src_node:
            title = f"kube-proxy rules on {node} ({obs.proxy_mode}) the first packet went through"
            steps.append(Step(title, lines or ["none matched"], data))
    endpoint_pod = None
    if entry is not None:
        o, r = entry.original, entry.reply
        lines = [
            f"original {o.src}:{o.sport} -> {o.dst}:{o.dport}, reply {r.src}:{r.sport} -> "
            f"{r.dst}:{r.dport} ({entry.state or entry.protocol})"
        ]
        if entry.dnat is not None:
            endpoint_pod = idx.pod_by_ip(entry.dnat[0])
            owner = idx.ref(endpoint_pod) if endpoint_pod else "no pod"
            node = _d(endpoint_pod.get("spec")).get("nodeName") if endpoint_pod else None
            lines.append(
                f"DNAT to {entry.dnat[0]}:{entry.dnat[1]}: {owner}"
                + (f" on {node}" if node else "")
            )
        if entry.snat is not None:
            lines.append(f"SNAT (masquerade): the endpoint sees {entry.snat[0]}:{entry.snat[1]}")
        if how == "LoadBalancer IP" and nat_node and nat_node != src_node:
            lines.append(
                f"{nat_node} received it: the node that announces {obs.address} on the node "
                "network (it answers ARP for it)"
            )
        steps.append(Step("Endpoint chosen (conntrack)", lines, {"conntrack": entry.as_dict()}))
    if endpoint_pod is not None and nat_node:
        ep_node = _d(endpoint_pod.get("spec")).get("nodeName")
        route = obs.routes.get(nat_node, {})
        if ep_node and ep_node != nat_node:
            via = route.get("gateway")
            via_node = next((n for n, ip in obs.nodes.items() if ip == via), via)
            dev = route.get("dev")
            line = f"{nat_node} routes {route.get('dst')} via {via} ({via_node}) dev {dev}"
            steps.append(Step(f"Hop to {ep_node}", [line], {"route": route}))
        elif ep_node:
            where = "the source's own node" if nat_node == src_node else "the node it reached"
            steps.append(Step("Hop", [f"none: the endpoint is on {nat_node}, {where}"]))
    ingress_pod = _ingress_step(obs, objects, idx, steps)
    if ingress_pod is not None:
        endpoint_pod = ingress_pod
    answer = Step("Answer", [])
    if obs.connect_error is not None:
        answer.lines.append(obs.connect_error)
        why += _failure_reasons(obs, verdicts, svc, idx)
    else:
        answer.lines.append(
            f"{obs.status_line or 'no HTTP status line'} in {obs.total_ms or 0:.1f} ms "
            f"(connect {obs.connect_ms or 0:.1f} ms), {len(obs.body)} bytes of body"
        )
        first = obs.body.decode(errors="replace").strip().splitlines()[:1]
        if first:
            answer.lines.append(f"body: {first[0][:200]}")
        if endpoint_pod is not None:
            answer.lines.append(f"from {idx.ref(endpoint_pod)}")
    answer.data = {
        "body": obs.body[:200].decode(errors="replace"),
        "status": obs.status_line,
        "bytes": len(obs.body),
        "ms": obs.total_ms,
        "error": obs.connect_error,
    }
    steps.append(answer)
    ok = obs.connect_error is None and obs.status_line is not None and not why
    answered = idx.ref(endpoint_pod) if endpoint_pod is not None else None
    if ok and endpoint_pod is None and svc is None:
        answered = idx.ref(p) if (p := idx.pod_by_ip(obs.address)) else None
    return Report(steps, ok, why, answered)


def _ingress_step(
    obs: Observed, objects: dict[str, list[dict[str, Any]]], idx: _Index, steps: list[Step]
) -> dict[str, Any] | None:
    """The ingress controller's part, when one served the request: the rule that matched
    (from the Ingresses, as its data plane matches them) and the endpoint its HAProxy sent
    the request to (its own access log line for this request). The pod it names answered."""
    log = obs.access_log
    if not log:
        return None
    from kubesvc.ingress.model import match_route, routing_table

    table = routing_table(
        objects.get("ingresses", []),
        objects.get("services", []),
        objects.get("endpointslices", []),
        objects.get("ingressclasses", []),
    )
    path = obs.target.path.split("?", 1)[0]
    route = match_route(table, obs.target.host, path)
    lines = []
    if route is not None:
        kind = "Exact" if route.exact else "Prefix"
        lines.append(
            f"Ingress {route.ingress}: host {route.host or '*'} path {route.path} ({kind}) -> "
            f"Service {route.backend.key}"
        )
    else:
        lines.append(f"no Ingress rule matches {obs.target.host}{path}")
    ip = log["endpoint"].rpartition(":")[0]
    pod = idx.pod_by_ip(ip)
    lines.append(
        f'{log["pod"]}\'s access log: "{log["request"]}" {log["status"]} via '
        f"[{log['service']}] to {log['endpoint']}" + (f" ({idx.ref(pod)})" if pod else "")
    )
    lines.append("the controller sent it to the pod itself, not through the Service's ClusterIP")
    data = {"accessLog": log, "route": route.ingress if route else None}
    steps.append(Step("Ingress (the controller's routing and its access log)", lines, data))
    return pod


def _failure_reasons(
    obs: Observed, verdicts: list[str], svc: dict[str, Any] | None, idx: _Index
) -> list[str]:
    out = []
    rejected = any("reject" in v.lower() for v in verdicts)
    dropped = not rejected and any(v.endswith(("-> drop", "-j DROP")) for v in verdicts)
    port = obs.target.port
    ports = _l(_d(svc.get("spec")).get("ports")) if svc is not None else []
    if svc is not None and not any(_d(p).get("port") == port for p in ports):
        what = "the proxy rejected it" if rejected else "no rule of the proxy took it"
        out.append(f"{what}: {idx.ref(svc)} has no port {port}")
    elif svc is not None:
        eps = idx.slice_endpoints(svc)
        ready = [e for e in eps if _d(e.get("conditions")).get("ready") is not False]
        unready = [e for e in eps if _d(e.get("conditions")).get("ready") is False]
        if rejected and not ready:
            detail = (
                "its endpoints are not ready: "
                + ", ".join(str(_d(e.get("targetRef")).get("name")) for e in unready)
                if unready
                else "no pod matches its selector"
            )
            out.append(f"{idx.ref(svc)} has no ready endpoints ({detail}): the proxy rejected")
        elif dropped:
            out.append(
                f"the proxy dropped the packet: {idx.ref(svc)}'s traffic policy is Local and "
                f"no endpoint is on {obs.source.node}"
            )
        elif rejected:
            out.append(f"the proxy rejected the connection to {idx.ref(svc)}")
    elif rejected:
        out.append("the proxy rejected it")
    if not out:
        out.append(obs.connect_error or "no answer")
    return out
