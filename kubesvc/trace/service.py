"""`kubesvc explain svc`: one Service's whole state in one place, with its problems
flagged (pure). The caller gathers the objects, the DNS answers, each node's rules and the
ports each selected pod listens on; this module only reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)


@dataclass
class ServiceReport:
    service: str
    sections: list[Section]
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "problems": self.problems,
            "sections": [{"title": s.title, "lines": s.lines} for s in self.sections],
        }

    def text(self) -> str:
        out = [f"Service {self.service}"]
        for s in self.sections:
            out.append(f"{s.title}:")
            out += [f"  {line}" for line in s.lines] or ["  -"]
        out.append("Problems:" if self.problems else "Problems: none found")
        out += [f"  ! {p}" for p in self.problems]
        return "\n".join(out) + "\n"


def _d(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def selects(selector: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    labels = _d(_d(pod.get("metadata")).get("labels"))
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def why_not_ready(pod: Mapping[str, Any]) -> str:
    """The pod's readiness in a few words, from its status as the node agent wrote it."""
    status = _d(pod.get("status"))
    if _d(pod.get("metadata")).get("deletionTimestamp"):
        return "terminating"
    if status.get("phase") not in ("Running", None):
        return f"phase {status.get('phase')}"
    ready = next(
        (_d(c) for c in _l(status.get("conditions")) if _d(c).get("type") == "Ready"), None
    )
    if ready is not None and ready.get("status") == "True":
        return "ready"
    reasons = []
    for cs in _l(status.get("containerStatuses")):
        cs = _d(cs)
        state = _d(cs.get("state"))
        waiting = _d(state.get("waiting"))
        if waiting:
            reasons.append(f"{cs.get('name')}: {waiting.get('reason')}")
        elif not cs.get("ready"):
            reasons.append(f"{cs.get('name')}: running, not ready (readiness probe)")
    if not reasons and ready is not None:
        reasons.append(str(ready.get("reason") or ready.get("message") or "not ready"))
    return "NOT ready: " + ("; ".join(reasons) or "no status yet")


def container_port(pod: Mapping[str, Any], name: str) -> int | None:
    for c in _l(_d(pod.get("spec")).get("containers")):
        for p in _l(_d(c).get("ports")):
            if _d(p).get("name") == name and isinstance(_d(p).get("containerPort"), int):
                return int(_d(p)["containerPort"])
    return None


def service_report(
    svc: Mapping[str, Any],
    pods: list[Mapping[str, Any]],
    slices: list[Mapping[str, Any]],
    dns: Mapping[str, list[str]],
    rules: Mapping[str, str],
    listening: Mapping[str, set[int] | None],
) -> ServiceReport:
    """`dns`: name -> the answers the cluster DNS gave now; `rules`: node -> its proxy's
    rules for the Service; `listening`: pod ns/name -> the TCP ports it listens on (None:
    unknown, the pod runs elsewhere or is gone)."""
    meta, spec, status = _d(svc.get("metadata")), _d(svc.get("spec")), _d(svc.get("status"))
    ns, name = str(meta.get("namespace")), str(meta.get("name"))
    selector = {str(k): v for k, v in _d(spec.get("selector")).items()}
    problems: list[str] = []
    kind = spec.get("type") or "ClusterIP"
    addr = [f"type {kind}, ClusterIP {spec.get('clusterIP') or '-'}"]
    if kind == "ExternalName":
        addr.append(f"externalName {spec.get('externalName')}")
    lb = [
        str(_d(i).get("ip") or _d(i).get("hostname"))
        for i in _l(_d(status.get("loadBalancer")).get("ingress"))
    ]
    if kind == "LoadBalancer":
        addr.append(f"LoadBalancer IP {', '.join(lb) or '<pending>'}")
    if _l(spec.get("externalIPs")):
        addr.append(f"externalIPs {', '.join(map(str, _l(spec.get('externalIPs'))))}")
    addr.append(
        f"sessionAffinity {spec.get('sessionAffinity', 'None')}, internalTrafficPolicy "
        f"{spec.get('internalTrafficPolicy', 'Cluster')}"
        + (
            f", externalTrafficPolicy {spec['externalTrafficPolicy']}"
            if spec.get("externalTrafficPolicy")
            else ""
        )
    )
    ports = Section("Ports")
    for p in _l(spec.get("ports")):
        p = _d(p)
        proto = p.get("protocol", "TCP")
        line = f"{p.get('name') or '-'} {p.get('port')}/{proto} -> targetPort {p.get('targetPort')}"
        if p.get("nodePort"):
            line += f", nodePort {p.get('nodePort')}"
        ports.lines.append(line)
    selected = [
        p for p in pods if selects(selector, p) and _d(p.get("metadata")).get("namespace") == ns
    ]
    pod_sec = Section(f"Pods its selector {_fmt(selector)} matches")
    for pod in selected:
        pm, pstatus = _d(pod.get("metadata")), _d(pod.get("status"))
        ref = f"{pm.get('namespace')}/{pm.get('name')}"
        pod_sec.lines.append(
            f"{pm.get('name')} {pstatus.get('podIP') or '-'} on "
            f"{_d(pod.get('spec')).get('nodeName') or '-'}: {why_not_ready(pod)}"
        )
        for p in _l(spec.get("ports")):
            target = _d(p).get("targetPort", _d(p).get("port"))
            if _d(p).get("protocol", "TCP") != "TCP":
                continue
            number = container_port(pod, target) if isinstance(target, str) else target
            if isinstance(target, str) and number is None:
                problems.append(
                    f"targetPort {target!r}: pod {pm.get('name')} defines no port of that name"
                )
                continue
            heard = listening.get(ref)
            if isinstance(number, int) and heard is not None and number not in heard:
                problems.append(f"port {number}: no process in pod {pm.get('name')} listens on it")
    if selector and not selected:
        problems.append(f"the selector {_fmt(selector)} matches no pod in {ns}")
    if not selector and kind != "ExternalName":
        pod_sec.lines.append("no selector: its EndpointSlices are managed by hand")
    eps = Section("EndpointSlices")
    for sl in slices:
        sm = _d(sl.get("metadata"))
        if (
            sm.get("namespace") != ns
            or _d(sm.get("labels")).get("kubernetes.io/service-name") != name
        ):
            continue
        for e in _l(sl.get("endpoints")):
            e = _d(e)
            cond = _d(e.get("conditions"))
            flags = [k for k in ("ready", "serving", "terminating") if cond.get(k)]
            eps.lines.append(
                f"{sm.get('name')}: {', '.join(map(str, _l(e.get('addresses'))))} "
                f"({_d(e.get('targetRef')).get('name', '-')} on {e.get('nodeName', '-')}) "
                f"{'/'.join(flags) or 'not ready'}"
            )
    dns_sec = Section("DNS, as the cluster DNS answers now")
    for q, answers in dns.items():
        dns_sec.lines.append(f"{q} -> {'; '.join(answers) or 'no answer'}")
    rule_secs = [
        Section(f"Rules on {node}", [line for line in text.splitlines() if line.strip()])
        for node, text in rules.items()
    ]
    sections = [Section("Addresses", addr), ports, pod_sec, eps, dns_sec, *rule_secs]
    return ServiceReport(f"{ns}/{name}", sections, problems)


def _fmt(selector: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "(none)"
