"""Reading what the kernel observed of one connection (pure): `nft monitor trace` lines,
a conntrack entry, and the iptables rules whose packet counters moved."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# trace id 8f6a3b7c ip kubesvc-proxy services rule ip daddr ... (verdict goto pick-ip-int-2)
_TRACE = re.compile(
    r"^trace id (?P<id>[0-9a-f]+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) "
    r"(?:packet: (?P<packet>.*)|rule (?P<rule>.*) \(verdict (?P<rverdict>[^)]*)\)"
    r"|verdict (?P<verdict>.*)|policy (?P<policy>.*))$"
)
_KV = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class TraceEvent:
    trace_id: str
    table: str
    chain: str
    kind: str  # "packet", "rule", "verdict", "policy"
    text: str  # the packet's fields, the rule, or the verdict
    verdict: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_trace(lines: list[str]) -> list[TraceEvent]:
    """Every event of `nft monitor trace` output, in order; other lines are skipped."""
    out: list[TraceEvent] = []
    for line in lines:
        m = _TRACE.match(line.strip())
        if m is None:
            continue
        g = m.groupdict()
        base = (g["id"], g["table"], g["chain"])
        if g["packet"] is not None:
            out.append(TraceEvent(*base, "packet", g["packet"]))
        elif g["rule"] is not None:
            out.append(TraceEvent(*base, "rule", g["rule"], g["rverdict"]))
        elif g["verdict"] is not None:
            out.append(TraceEvent(*base, "verdict", g["verdict"], g["verdict"]))
        else:
            out.append(TraceEvent(*base, "policy", g["policy"], g["policy"]))
    return out


def first_packet(events: list[TraceEvent], trace_table: str) -> list[TraceEvent]:
    """The events of the first traced packet (the connection's first, which NAT sees),
    without the trace table's own. Every packet enters the trace table first, so its
    `packet` event there starts the next one (trace ids can repeat between packets)."""
    out: list[TraceEvent] = []
    starts = 0
    for e in events:
        if e.table == trace_table:
            if e.kind == "packet":
                starts += 1
                if starts > 1:
                    break
            continue
        if starts == 1:
            out.append(e)
    return out


def packet_field(packet: str, name: str) -> str | None:
    """One field of a trace's packet line (`meta mark 0x00000002` -> "0x00000002")."""
    m = re.search(rf"(?:^| ){re.escape(name)} (\S+)", packet)
    return m.group(1).strip('"') if m else None


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    sport: int
    dport: int


@dataclass(frozen=True)
class ConntrackEntry:
    protocol: str
    state: str
    original: Tuple
    reply: Tuple

    @property
    def dnat(self) -> tuple[str, int] | None:
        """Where the destination was rewritten to (the reply's source), if it was."""
        if (self.reply.src, self.reply.sport) == (self.original.dst, self.original.dport):
            return None
        return self.reply.src, self.reply.sport

    @property
    def snat(self) -> tuple[str, int] | None:
        """The source the endpoint saw, if it was rewritten (masquerade)."""
        if (self.reply.dst, self.reply.dport) == (self.original.src, self.original.sport):
            return None
        return self.reply.dst, self.reply.dport

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "state": self.state,
            "original": asdict(self.original),
            "reply": asdict(self.reply),
        }


def parse_conntrack(line: str) -> ConntrackEntry | None:
    """One line of `conntrack -L`: `tcp 6 119 TIME_WAIT src=.. dst=.. sport=.. dport=..
    src=.. dst=.. sport=.. dport=.. [ASSURED] mark=0 use=1` (udp has no state)."""
    fields = line.split()
    if len(fields) < 3:
        return None
    proto = fields[0]
    state = fields[3] if len(fields) > 3 and "=" not in fields[3] else ""
    pairs = _KV.findall(line)
    tuples: list[Tuple] = []
    cur: dict[str, str] = {}
    for key, value in pairs:
        if key in ("src", "dst", "sport", "dport"):
            if key in cur:
                cur = {}
            cur[key] = value
            if len(cur) == 4:
                try:
                    tuples.append(
                        Tuple(cur["src"], cur["dst"], int(cur["sport"]), int(cur["dport"]))
                    )
                except ValueError:
                    return None
                cur = {}
    if len(tuples) < 2:
        return None
    return ConntrackEntry(proto, state, tuples[0], tuples[1])


# [12:720] -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp ... -j KUBE-SVC-...
_SAVE = re.compile(r"^\[(\d+):(\d+)\] (-A (\S+) .*)$")


def save_counters(text: str) -> dict[tuple[str, str, int], int]:
    """Packet counters of `iptables-save -c` rules, keyed by (table, rule, n-th identical)."""
    table = ""
    out: dict[tuple[str, str, int], int] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        m = _SAVE.match(line)
        if m is None:
            continue
        rule = m.group(3)
        n = 0
        while (table, rule, n) in out:
            n += 1
        out[(table, rule, n)] = int(m.group(1))
    return out


def moved_rules(before: str, after: str) -> list[tuple[str, str, int]]:
    """(table, rule, packets) of the rules whose packet counter grew, in `after`'s order."""
    old = save_counters(before)
    return [
        (table, rule, count - old.get((table, rule, n), 0))
        for (table, rule, n), count in save_counters(after).items()
        if count > old.get((table, rule, n), 0)
    ]


# ingress-nginx's log format as kubesvc's HAProxy writes it (docs/ingress.md, Access logs):
# ... "GET /p HTTP/1.1" 200 172 "-" "UA" 84 3 [ns/svc:80] [] 10.244.2.5:8080 172 2 200 ID host
_ACCESS = re.compile(
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) \S+ "[^"]*" "(?P<agent>[^"]*)" \S+ \S+ '
    r"\[(?P<service>[^\]]*)\] \[\] (?P<endpoint>\S+) \S+ \S+ \S+ (?P<id>\S+) (?P<host>\S+)$"
)


def parse_access_log(line: str) -> dict[str, str] | None:
    """The request, status, Service and endpoint of one ingress access log line."""
    m = _ACCESS.search(line.strip())
    return None if m is None else m.groupdict()
