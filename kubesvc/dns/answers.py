"""DNS answers as precomputed wire bytes, and the one place that decides every rcode.

Sans-I/O: `AnswerTable.answer(query_bytes, udp=...)` returns the response bytes, None (drop),
or FORWARD (the server relays the query upstream). The hot path parses only the header, walks
the question's labels and looks up `lower(qname wire) + qtype + qclass` in a dict of ready
responses; the response is the query's ID and RD bit + a precomputed header + the question
copied from the query (so the client's letter case comes back) + a precomputed body whose
names point at the question + an OPT when the query had one.

Decisions (CoreDNS kubernetes plugin):
  name has the type            -> NOERROR + records (SRV: targets' addresses as additional)
  name has a CNAME             -> NOERROR + CNAME (+ the target's records when in the zone)
  name exists, type missing    -> NOERROR + SOA in authority (NODATA)
  name under a zone, missing   -> NXDOMAIN + SOA (a template: no parsing, no building)
  zone name before first sync  -> SERVFAIL
  name outside every zone      -> FORWARD if upstreams are configured, else REFUSED
  unparseable query            -> FORMERR (or dropped when it has no header / is a response)
Bodies are written by a small encoder (fast enough to build 10k Services at start);
dnspython parses the queries the fast path declines.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from kubesvc.dns.records import REVERSE_ZONES, Record, Zone, ZoneView

log = logging.getLogger("kubesvc.dns")

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 41, 255
IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
ADVERTISED_UDP_SIZE = 1232  # the DNS flag day 2020 default
MAX_TCP_SIZE = 65535
CNAME_CHAIN_LIMIT = 8
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"  # qdcount=1 ancount=0 nscount=0
_IN_CLASS = b"\x00\x01"


class _Forward:
    def __repr__(self) -> str:
        return "FORWARD"


FORWARD: Final = _Forward()
Reply = bytes | None | _Forward


@dataclass(frozen=True, slots=True)
class Entry:
    """A response minus ID and question: `headers[rd | edns << 1]` are bytes 2..12 of the
    header (flags and counts; with an OPT the additional count is one higher)."""

    headers: tuple[bytes, bytes, bytes, bytes]
    body: bytes
    rcode: int


def make_entry(rcode: int, counts: tuple[int, int, int], body: bytes, *, aa: bool = True) -> Entry:
    return Entry(_headers(rcode, counts, aa), body, rcode)


@functools.lru_cache(maxsize=4096)
def _headers(
    rcode: int, counts: tuple[int, int, int], aa: bool
) -> tuple[bytes, bytes, bytes, bytes]:
    """Shared by every entry with the same rcode and counts (most of a zone has one A
    record): at 10,000 Services that is 120,000 fewer bytes objects."""
    an, ns, ar = counts
    headers = []
    for i in range(4):
        # QR, and RA as CoreDNS sets it (it forwards); clients such as nslookup warn without it
        flags = 0x8080 | (0x0400 if aa else 0) | (0x0100 if i & 1 else 0) | (rcode & 0xF)
        headers.append(struct.pack(">HHHHH", flags, 1, an, ns, ar + (i >> 1)))
    return (headers[0], headers[1], headers[2], headers[3])


def opt_record(*, do: bool = False, ext_rcode: int = 0) -> bytes:
    """Our OPT: root owner, type 41, class = our UDP size, TTL = ext rcode/version/DO."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\x00" + struct.pack(">HHIH", OPT, ADVERTISED_UDP_SIZE, ttl, 0)


_OPTS = (opt_record(), opt_record(do=True))


TYPES = {"A": A, "NS": NS, "CNAME": CNAME, "SOA": SOA, "PTR": PTR, "TXT": TXT, "AAAA": AAAA}
TYPES["SRV"] = SRV
# qtype + class IN of every key the table can hold for a name (CNAME names get A/AAAA)
_ZONE_TYPES = tuple(struct.pack(">HH", t, IN) for t in (*TYPES.values(), ANY))


def _labels(name: str) -> list[bytes]:
    name = name.rstrip(".")
    return [label.encode("ascii") for label in name.split(".")] if name else []


def name_wire(name: str) -> bytes:
    """Uncompressed wire form of a lower-case name without escapes (what records hold)."""
    out = bytearray()
    for label in _labels(name):
        if not 0 < len(label) < 64:
            raise ValueError(f"bad label in {name!r}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


class _Writer:
    """Sections after a question, written by hand: dnspython's renderer is ~30x slower, which
    matters when a zone of 10k Services is built at start. Names compress against the question
    (offset 12) and earlier names; with no question nothing is compressed, so the body fits
    after any question (the NXDOMAIN template)."""

    def __init__(self, qname: str | None) -> None:
        self.buf = bytearray()
        self.offsets: dict[bytes, int] = {}
        self.base = -1  # offset of the body in the message; -1: position-independent
        if qname is not None:
            labels, pos = _labels(qname), 12
            for i, label in enumerate(labels):
                self.offsets[b".".join(labels[i:])] = pos
                pos += len(label) + 1
            self.base = pos + 1 + 4

    def name(self, name: str, *, compress: bool = True) -> None:
        labels = _labels(name)
        for i, label in enumerate(labels):
            suffix = b".".join(labels[i:])
            off = self.offsets.get(suffix)
            if off is not None and compress:
                self.buf += struct.pack(">H", 0xC000 | off)
                return
            pos = self.base + len(self.buf)
            if self.base >= 0 and pos < 0x4000:
                self.offsets.setdefault(suffix, pos)
            self.buf.append(len(label))
            self.buf += label
        self.buf.append(0)

    def record(self, r: Record) -> None:
        rtype = TYPES[r.rtype]
        self.name(r.name)
        self.buf += struct.pack(">HHI", rtype, IN, r.ttl)
        at = len(self.buf)
        self.buf += b"\x00\x00"
        self._rdata(rtype, r.data)
        struct.pack_into(">H", self.buf, at, len(self.buf) - at - 2)

    def _rdata(self, rtype: int, data: str) -> None:
        if rtype == A:
            self.buf += socket.inet_pton(socket.AF_INET, data)
        elif rtype == AAAA:
            self.buf += socket.inet_pton(socket.AF_INET6, data)
        elif rtype in (CNAME, PTR, NS):
            self.name(data)
        elif rtype == SRV:
            priority, weight, port, target = data.split()
            self.buf += struct.pack(">HHH", int(priority), int(weight), int(port))
            self.name(target, compress=False)  # RFC 2782: no compression in SRV targets
        elif rtype == SOA:
            mname, rname, *numbers = data.split()
            self.name(mname)
            self.name(rname)
            self.buf += struct.pack(">IIIII", *(int(n) for n in numbers))
        elif rtype == TXT:
            for part in data.strip('"').split('" "'):
                raw = part.encode()
                self.buf.append(len(raw))
                self.buf += raw


def build_entry(
    qname: str,
    rcode: int,
    answer: Iterable[Record] = (),
    authority: Iterable[Record] = (),
    additional: Iterable[Record] = (),
) -> Entry:
    """Render the sections after a question for `qname`; names point into the question,
    which the response copies from the query (same length whatever the letter case)."""
    w = _Writer(qname)
    counts = []
    for section in (answer, authority, additional):
        n = 0
        for r in section:
            w.record(r)
            n += 1
        counts.append(n)
    return make_entry(rcode, (counts[0], counts[1], counts[2]), bytes(w.buf))


def template_entry(rcode: int, soa: Record) -> Entry:
    """NXDOMAIN/NODATA for any name under a zone: nothing compressed, so the body does not
    depend on the question."""
    w = _Writer(None)
    w.record(soa)
    return make_entry(rcode, (0, 1, 0), bytes(w.buf))


def _by_type(records: Iterable[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for r in records:
        out.setdefault(TYPES[r.rtype], []).append(r)
    return out


def _addresses(view: ZoneView, name: str) -> list[Record]:
    return [r for r in view.records(name) if r.rtype in ("A", "AAAA")]


@dataclass
class Stats:
    """Counters the server exports; kept here so that the hot path needs no extra call."""

    requests: dict[int, int] = field(default_factory=dict)  # by qtype
    responses: dict[int, int] = field(default_factory=dict)  # by rcode
    dropped: int = 0


@dataclass(slots=True)
class _Query:
    qid: bytes
    rd: int
    question: bytes  # as sent
    key: bytes  # lower-case qname wire + qtype + qclass
    udp_limit: int  # 0 for TCP
    edns: int  # -1 without OPT, else 0/1 for the DO bit


class AnswerTable:
    def __init__(self, zone: Zone, *, forward: bool = False) -> None:
        self.zone = zone
        self.forward = forward
        self.synced = False
        self.stats = Stats()
        self.exact: dict[bytes, Entry] = {}  # lower qname wire + qtype + qclass
        self.by_name: dict[bytes, Entry] = {}  # lower qname wire -> NODATA or CNAME answer
        self._view: ZoneView | None = None
        self._refs: dict[str, tuple[str, ...]] = {}  # name -> names its answers include
        self._dependents: dict[str, set[str]] = {}  # reverse of _refs
        self._unrenderable: set[str] = set()  # names logged as left out
        self._origins = [(name_wire(o), o) for o in (zone.domain, *REVERSE_ZONES)]
        self._cluster_wire = self._origins[0][0]
        self._nxdomain = {o: template_entry(NXDOMAIN, zone.soa(o)) for _, o in self._origins}
        self._nodata = {o: template_entry(NOERROR, zone.soa(o)) for _, o in self._origins}
        self._refused = make_entry(REFUSED, (0, 0, 0), b"", aa=False)
        self._servfail = make_entry(SERVFAIL, (0, 0, 0), b"", aa=False)
        self._pod_suffix = b"\x03pod" + self._cluster_wire

    # -- building ------------------------------------------------------------------------
    def rebuild(self, view: ZoneView, names: Iterable[str] | None = None) -> int:
        """Recompute the entries of `names` (all names when None) and of names whose answers
        include them (SRV additional, CNAME targets). Returns how many names were built."""
        self._view = view
        if names is None:
            self.exact.clear()
            self.by_name.clear()
            self._refs.clear()
            self._dependents.clear()
            todo = set(view.names())
        else:
            todo = set(names)
            for name in list(todo):
                todo |= self._dependents.get(name, set())
        for name in todo:
            try:
                self._build_name(view, name)
            except ValueError as e:  # no wire form (e.g. longer than 255 octets): left out
                with contextlib.suppress(ValueError):
                    self._forget(name)
                if name not in self._unrenderable:
                    self._unrenderable.add(name)
                    log.warning(
                        "name left out of the zone",
                        extra={"kv": {"name": name[:300], "error": str(e)}},
                    )
        return len(todo)

    def _forget(self, name: str) -> None:
        wire = name_wire(name)
        # every type an entry can exist for (not remembered per name: 30,000 lists)
        for qtype in _ZONE_TYPES:
            self.exact.pop(wire + qtype, None)
        self.by_name.pop(wire, None)
        for target in self._refs.pop(name, ()):
            deps = self._dependents.get(target)
            if deps is not None:
                deps.discard(name)
                if not deps:
                    del self._dependents[target]

    def _build_name(self, view: ZoneView, name: str) -> None:
        self._forget(name)
        if not view.exists(name):
            return
        wire = name_wire(name)
        types = _by_type(view.records(name))
        qtypes = set(types)
        if CNAME in types:
            qtypes |= {A, AAAA}
        refs: set[str] = set()
        for qtype in qtypes:
            entry, targets = self._compute(view, name, qtype, types)
            self.exact[wire + struct.pack(">HH", qtype, IN)] = entry
            if targets:
                refs |= targets
        fallback, targets = self._compute(view, name, 0, types)
        self.by_name[wire] = fallback
        if targets:
            refs |= targets
        if refs:
            self._refs[name] = tuple(refs)
            for t in refs:
                self._dependents.setdefault(t, set()).add(name)

    def _compute(
        self, view: ZoneView, name: str, qtype: int, types: dict[int, list[Record]]
    ) -> tuple[Entry, set[str]]:
        """The answer for (name, qtype); qtype 0 = any type the name lacks."""
        if qtype == ANY:
            return build_entry(name, NOERROR, [r for rs in types.values() for r in rs]), set()
        if qtype in types:
            answer = types[qtype]
            if qtype != SRV:
                return build_entry(name, NOERROR, answer), set()
            targets = {r.data.split()[-1] for r in answer}
            extra = [r for t in sorted(targets) for r in _addresses(view, t)]
            return build_entry(name, NOERROR, answer, additional=extra), targets
        if CNAME in types:
            return self._chase(view, name, qtype, types[CNAME])
        origin = self.zone.origin_of(name) or self.zone.domain
        return self._nodata[origin], set()  # shared: the template fits any question

    def _chase(
        self, view: ZoneView, name: str, qtype: int, cname: list[Record]
    ) -> tuple[Entry, set[str]]:
        answer, refs = list(cname), set()
        target = cname[0].data
        for _ in range(CNAME_CHAIN_LIMIT):
            if qtype == 0 or self.zone.origin_of(target) != self.zone.domain:
                break
            refs.add(target)
            types = _by_type(view.records(target))
            if qtype in types:
                answer += types[qtype]
                break
            if CNAME not in types:
                break
            answer += types[CNAME]
            target = types[CNAME][0].data
        return build_entry(name, NOERROR, answer), refs

    # -- answering -----------------------------------------------------------------------
    def answer(self, data: bytes, *, udp: bool = True) -> Reply:
        """The response to one query message (without the TCP length prefix)."""
        try:
            if data[2] & 0xF8 or data[4:10] != _ONE_QUESTION:
                return self._slow(data, udp)
            i = 12
            n = data[12]
            while n:
                if n > 63:
                    return self._slow(data, udp)  # compression pointer or bad label
                i += n + 1
                n = data[i]
            end = i + 5
            if end > len(data):
                return self._slow(data, udp)
            if end == len(data) and data[11] == 0 and data[10] == 0:
                edns, limit = -1, 512
            elif data[10:12] == b"\x00\x01" and data[end : end + 3] == b"\x00\x00\x29":
                if (
                    data[end + 5]
                    or data[end + 6]
                    or len(data) != end + 11 + (data[end + 9] << 8 | data[end + 10])
                ):
                    return self._slow(data, udp)  # extended rcode/version set, or bad length
                edns = data[end + 7] >> 7
                limit = max(512, data[end + 3] << 8 | data[end + 4])
            else:
                return self._slow(data, udp)
        except IndexError:
            return self._slow(data, udp)
        question = data[12:end]
        q = _Query(data[:2], data[2] & 1, question, question.lower(), limit if udp else 0, edns)
        return self._respond(q)

    def _respond(self, q: _Query) -> Reply:
        key = q.key
        qtype = key[-4] << 8 | key[-3]
        stats = self.stats
        stats.requests[qtype] = stats.requests.get(qtype, 0) + 1
        entry = self.exact.get(key)
        if entry is None:
            entry = self._miss(key[:-4], qtype, key[-2:] == _IN_CLASS)
            if entry is FORWARD:
                return FORWARD
        assert isinstance(entry, Entry)
        stats.responses[entry.rcode] = stats.responses.get(entry.rcode, 0) + 1
        if q.edns < 0:
            resp = q.qid + entry.headers[q.rd] + q.question + entry.body
        else:
            resp = q.qid + entry.headers[q.rd | 2] + q.question + entry.body + _OPTS[q.edns]
        if len(resp) > (q.udp_limit or MAX_TCP_SIZE):
            return self._truncated(q, entry)
        return resp

    def _truncated(self, q: _Query, entry: Entry) -> bytes:
        """TC set, no records: the client asks again over TCP."""
        flags = 0x8280 | (entry.headers[0][0] << 8 & 0x0400) | q.rd << 8 | entry.rcode
        if q.edns < 0:
            return q.qid + struct.pack(">HHHHH", flags, 1, 0, 0, 0) + q.question
        header = struct.pack(">HHHHH", flags, 1, 0, 0, 1)
        return q.qid + header + q.question + _OPTS[q.edns]

    def _miss(self, name: bytes, qtype: int, is_in: bool) -> Entry | _Forward:
        if is_in:
            entry = self.by_name.get(name)
            if entry is not None:
                if qtype == ANY and self._view is not None:
                    return self._lazy_any(self._view, name)
                return entry
        origin = self._origin(name)
        if origin is None:
            return FORWARD if self.forward else self._refused
        if not self.synced:
            return self._servfail
        if not is_in:
            return self._refused
        if name.endswith(self._pod_suffix):
            pod = self._pod(name, qtype)
            if pod is not None:
                return pod
        if origin != self.zone.domain and self.forward:
            return FORWARD  # reverse names we do not know: the upstream may
        return self._nxdomain[origin]

    def _lazy_any(self, view: ZoneView, wire: bytes) -> Entry:
        name = wire_text(wire)
        entry, _ = self._compute(view, name, ANY, _by_type(view.records(name)))
        self.exact[wire + struct.pack(">HH", ANY, IN)] = entry
        return entry

    def _origin(self, name: bytes) -> str | None:
        for wire, origin in self._origins:
            if name.endswith(wire) and _label_start(name, len(name) - len(wire)):
                return origin
        return None

    def _pod(self, name: bytes, qtype: int) -> Entry | None:
        """`a-b-c-d.<ns>.pod.<zone>` ("pods insecure": the dashed IP, if the namespace
        exists); None when the name is not a pod name."""
        first = name[0]
        rest = name[first + 1 :]
        if (
            not first
            or len(rest) != rest[0] + 1 + len(self._pod_suffix)
            or rest not in self.by_name
        ):
            return None
        dashed = name[1 : first + 1].decode("ascii", "replace")
        text = dashed.replace("-", ".") if dashed.count("-") == 3 else dashed.replace("-", ":")
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return None
        rtype = AAAA if ip.version == 6 else A
        if qtype not in (rtype, ANY):
            return self._nodata[self.zone.domain]
        rr = struct.pack(">HHHIH", 0xC00C, rtype, IN, self.zone.ttl, len(ip.packed)) + ip.packed
        return make_entry(NOERROR, (1, 0, 0), rr)

    # -- the slow path: anything the fast path declined -------------------------------------
    def _slow(self, data: bytes, udp: bool) -> Reply:
        # dnspython only here: importing it costs about 8 MB that most servers never need
        import dns.exception
        import dns.flags
        import dns.message

        if len(data) < 12 or data[2] & 0x80:
            self.stats.dropped += 1
            return None  # no header to answer with, or a response: never reply (loops)
        rd = data[2] & 1
        if (data[2] >> 3) & 0xF:
            return self._error(data[:2], NOTIMP, rd)
        try:
            msg = dns.message.from_wire(data, ignore_trailing=False)
        except (dns.exception.DNSException, ValueError, IndexError, struct.error, KeyError):
            return self._error(data[:2], FORMERR, rd)
        if len(msg.question) != 1:
            return self._error(data[:2], FORMERR, rd)
        rrset = msg.question[0]
        try:
            question = rrset.name.to_wire() + struct.pack(">HH", rrset.rdtype, rrset.rdclass)
        except dns.exception.DNSException:
            return self._error(data[:2], FORMERR, rd)
        if msg.edns > 0:
            resp = data[:2] + struct.pack(">HHHHH", 0x8080 | rd << 8, 1, 0, 0, 1) + question
            self.stats.responses[BADVERS] = self.stats.responses.get(BADVERS, 0) + 1
            return resp + opt_record(ext_rcode=BADVERS >> 4)
        edns, limit = -1, 512
        if msg.edns == 0:
            edns, limit = int(bool(msg.ednsflags & dns.flags.DO)), max(512, msg.payload)
        q = _Query(data[:2], rd, question, question.lower(), limit if udp else 0, edns)
        return self._respond(q)

    def _error(self, qid: bytes, rcode: int, rd: int) -> bytes:
        self.stats.responses[rcode] = self.stats.responses.get(rcode, 0) + 1
        return qid + struct.pack(">HHHHH", 0x8080 | rd << 8 | rcode, 0, 0, 0, 0)

    def servfail(self, data: bytes) -> bytes | None:
        """SERVFAIL for a query that could not be forwarded (upstreams silent)."""
        parsed = self._slow_question(data)
        if parsed is None:
            return None
        qid, rd, question = parsed
        self.stats.responses[SERVFAIL] = self.stats.responses.get(SERVFAIL, 0) + 1
        return qid + struct.pack(">HHHHH", 0x8080 | rd << 8 | SERVFAIL, 1, 0, 0, 0) + question

    @staticmethod
    def _slow_question(data: bytes) -> tuple[bytes, int, bytes] | None:
        import dns.message

        try:
            msg = dns.message.from_wire(data, ignore_trailing=True)
            q = msg.question[0]
            question = q.name.to_wire() + struct.pack(">HH", q.rdtype, q.rdclass)
        except Exception:
            return None
        return data[:2], data[2] & 1, question


def wire_text(wire: bytes) -> str:
    """`a.b.` from the uncompressed wire form of a name the zone holds (plain labels)."""
    labels, i = [], 0
    while wire[i]:
        labels.append(wire[i + 1 : i + 1 + wire[i]].decode("ascii", "replace"))
        i += wire[i] + 1
    return ".".join(labels) + "."


def _label_start(name: bytes, offset: int) -> bool:
    i = 0
    while i < offset:
        i += name[i] + 1
    return i == offset
