"""What `kubesvc web` draws (pure): the cluster as graph elements, and connections from
conntrack events placed on that graph.

Elements are cytoscape.js's: nodes (`node:NAME`, `pod:NS/NAME`, `svc:NS/NAME`) and edges
(`sel:` a Service's selector matching a pod, `ep:` an EndpointSlice endpoint, `on:` a pod on
its node). Stored objects are read defensively: a field of the wrong type counts as unset,
so any object the API server holds can be drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesvc.trace.evidence import parse_conntrack

Obj = Mapping[str, Any]


def _d(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def ref(obj: Obj) -> str:
    meta = _d(obj.get("metadata"))
    return f"{_s(meta.get('namespace'))}/{_s(meta.get('name'))}"


def short(name: str, width: int = 16) -> str:
    """A name that fits its shape on the picture: its head and tail around an ellipsis."""
    if len(name) <= width:
        return name
    half = (width - 1) // 2
    return f"{name[:half]}…{name[-half:]}"


def pod_summary(pod: Obj) -> dict[str, Any]:
    spec, status = _d(pod.get("spec")), _d(pod.get("status"))
    conds = [_d(c) for c in _l(status.get("conditions"))]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
    restarts = sum(
        int(_d(c).get("restartCount") or 0)
        for c in _l(status.get("containerStatuses"))
        if isinstance(_d(c).get("restartCount"), int)
    )
    deleting = bool(_d(pod.get("metadata")).get("deletionTimestamp"))
    return {
        "ip": _s(status.get("podIP")),
        "node": _s(spec.get("nodeName")),
        "ready": ready,
        "restarts": restarts,
        "phase": "Terminating" if deleting else _s(status.get("phase")) or "Pending",
        "hostNetwork": spec.get("hostNetwork") is True,
    }


def service_summary(svc: Obj) -> dict[str, Any]:
    spec, status = _d(svc.get("spec")), _d(svc.get("status"))
    ports = [_d(p) for p in _l(spec.get("ports"))]
    lb = [_s(_d(i).get("ip")) for i in _l(_d(status.get("loadBalancer")).get("ingress"))]
    return {
        "type": _s(spec.get("type")) or "ClusterIP",
        "clusterIP": _s(spec.get("clusterIP")),
        "ports": [f"{p.get('port')}/{_s(p.get('protocol')) or 'TCP'}" for p in ports],
        "nodePorts": [p.get("nodePort") for p in ports if isinstance(p.get("nodePort"), int)],
        "lbIPs": [ip for ip in lb if ip],
        "externalName": _s(spec.get("externalName")),
    }


def _selects(selector: Mapping[str, Any], pod: Obj) -> bool:
    labels = _d(_d(pod.get("metadata")).get("labels"))
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def graph(
    nodes: Iterable[Obj], pods: Iterable[Obj], services: Iterable[Obj], slices: Iterable[Obj]
) -> list[dict[str, Any]]:
    """Every element to draw, sorted by id so equal states give equal lists."""
    out: list[dict[str, Any]] = []
    ids: set[str] = set()

    def add(data: dict[str, Any]) -> None:
        if data["id"] not in ids:
            ids.add(data["id"])
            out.append({"data": data})

    node_names = set()
    for n in nodes:
        name = _s(_d(n.get("metadata")).get("name"))
        if not name:
            continue
        conds = [_d(c) for c in _l(_d(n.get("status")).get("conditions"))]
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        addrs = [_d(a) for a in _l(_d(n.get("status")).get("addresses"))]
        ip = next((_s(a.get("address")) for a in addrs if a.get("type") == "InternalIP"), "")
        node_names.add(name)
        add({"id": f"node:{name}", "kind": "node", "label": name, "ready": ready, "ip": ip})
    pod_list = [p for p in pods if _s(_d(p.get("metadata")).get("name"))]
    pod_by_ip: dict[str, str] = {}
    for p in pod_list:
        info = pod_summary(p)
        pid = f"pod:{ref(p)}"
        label = f"{short(_s(_d(p.get('metadata')).get('name')))}\n{info['ip'] or '-'}"
        add({"id": pid, "kind": "pod", "label": label, "ref": ref(p), **info})
        if info["ip"] and not info["hostNetwork"]:
            pod_by_ip[info["ip"]] = pid
        if info["node"] in node_names:
            add({"id": f"on:{pid}", "kind": "on", "source": pid, "target": f"node:{info['node']}"})
    for s in services:
        if not _s(_d(s.get("metadata")).get("name")):
            continue
        info = service_summary(s)
        sid = f"svc:{ref(s)}"
        name = short(_s(_d(s.get("metadata")).get("name")))
        label = f"{name}\n{info['clusterIP'] or info['externalName']}"
        add({"id": sid, "kind": "service", "label": label, "ref": ref(s), **info})
        selector = {str(k): v for k, v in _d(_d(s.get("spec")).get("selector")).items()}
        ns = _s(_d(s.get("metadata")).get("namespace"))
        for p in pod_list:
            if _s(_d(p.get("metadata")).get("namespace")) == ns and _selects(selector, p):
                pid = f"pod:{ref(p)}"
                add({"id": f"sel:{sid}>{pid}", "kind": "selects", "source": sid, "target": pid})
    svc_ids = {e["data"]["id"] for e in out if e["data"]["kind"] == "service"}
    for sl in slices:
        meta = _d(sl.get("metadata"))
        owner = _s(_d(meta.get("labels")).get("kubernetes.io/service-name"))
        sid = f"svc:{_s(meta.get('namespace'))}/{owner}"
        if sid not in svc_ids:
            continue
        for e in _l(sl.get("endpoints")):
            e = _d(e)
            ready = _d(e.get("conditions")).get("ready") is not False
            for addr in _l(e.get("addresses")):
                pid = pod_by_ip.get(_s(addr))
                if pid is not None:
                    add({"id": f"ep:{sid}>{pid}", "kind": "endpoint", "source": sid,
                         "target": pid, "ready": ready})  # fmt: skip
    return sorted(out, key=lambda e: str(e["data"]["id"]))


@dataclass(frozen=True)
class Connection:
    node: str  # whose conntrack saw it
    protocol: str
    client: str  # ip:port as it left the client
    destination: str  # the address it was sent to (a Service's)
    endpoint: str  # where DNAT sent it
    seen_by_endpoint: str  # the source the endpoint saw (masquerade, if any)

    def as_dict(self, elements: Mapping[str, str]) -> dict[str, Any]:
        """With the graph ids of the client, Service and endpoint, where known."""
        host = self.destination.rpartition(":")[0]
        return {
            "node": self.node,
            "protocol": self.protocol,
            "client": self.client,
            "destination": self.destination,
            "endpoint": self.endpoint,
            "seenByEndpoint": self.seen_by_endpoint,
            "clientId": elements.get(self.client.rpartition(":")[0]),
            "serviceId": elements.get(self.destination) or elements.get(host),
            "endpointId": elements.get(self.endpoint.rpartition(":")[0]),
        }


def connection(node: str, line: str) -> Connection | None:
    """A new connection from a `conntrack -E` line (`[NEW] tcp 6 120 SYN_SENT src=...`),
    when its destination was rewritten (a Service's address); None for anything else."""
    text = line.strip()
    if not text.startswith("[NEW]"):
        return None
    entry = parse_conntrack(text[len("[NEW]") :].strip())
    if entry is None or entry.dnat is None:
        return None
    o, r = entry.original, entry.reply
    return Connection(
        node,
        entry.protocol,
        f"{o.src}:{o.sport}",
        f"{o.dst}:{o.dport}",
        f"{r.src}:{r.sport}",
        f"{r.dst}:{r.dport}",
    )


def address_index(elements: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Addresses -> graph ids: pod IPs, Service ClusterIPs and LB IPs, node IPs, and
    `NODE_IP:NODEPORT` for each Service's node ports."""
    out: dict[str, str] = {}
    node_ips = []
    for e in elements:
        d = e["data"]
        if d["kind"] == "pod" and d.get("ip") and not d.get("hostNetwork"):
            out[d["ip"]] = d["id"]
        elif d["kind"] == "node" and d.get("ip"):
            out[d["ip"]] = d["id"]
            node_ips.append(d["ip"])
    for e in elements:
        d = e["data"]
        if d["kind"] != "service":
            continue
        for ip in [d.get("clusterIP"), *d.get("lbIPs", [])]:
            if ip and ip != "None":
                out[ip] = d["id"]
        for port in d.get("nodePorts", []):
            for ip in node_ips:
                out[f"{ip}:{port}"] = d["id"]
    return out
