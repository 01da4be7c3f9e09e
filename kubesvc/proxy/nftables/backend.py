"""Loads rendered nftables transactions into a node's network namespace.

One libnftables transaction per sync, through a context that lives as long as the backend
(libnft.py says why not `nft -f -`). The first sync, a sync after a failure and a sync
after `check()` found the table gone are full syncs (they also list the table, without elements, so
leftovers of an earlier run are deleted); every other sync is the tracker's diff. The table
itself is never deleted while the proxy runs: affinity maps and conntrack state survive.
"""

from __future__ import annotations

import asyncio
import logging
import re

from kubesvc.proxy.model import ProxyState
from kubesvc.proxy.nftables import render as r
from kubesvc.proxy.nftables.libnft import Nft

log = logging.getLogger("kubesvc.proxy.nftables")

_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_OBJECT = re.compile(r"^\t(chain|map|set) (\S+) \{")


class NftError(RuntimeError):
    pass


class NftBackend:
    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.tracker = r.NftTracker()
        self._lock = asyncio.Lock()
        # what the last successful sync did, for logs and tests
        self.last_sync_full = False
        self.last_input = ""
        self._ctx: Nft | None = None

    # -- commands ------------------------------------------------------------------------
    def _context(self) -> Nft:
        if self._ctx is None:
            self._ctx = Nft(self.netns)
        return self._ctx

    async def _nft(self, commands: str, terse: bool = False) -> tuple[int, str, str]:
        return await asyncio.to_thread(self._context().run, commands, terse)

    async def _apply(self, text: str, state: ProxyState) -> None:
        """Load `text` and record `state` as what the kernel has. A long transaction runs
        in a thread while the tracker does its bookkeeping here (libnftables releases the
        GIL), so the two overlap; when the kernel refuses, the caller's reset() drops what
        was recorded."""
        if not text:
            self.tracker.applied(state)
            return
        if len(text) < 4096:
            # a one-service diff takes well under a millisecond: not worth a thread hop
            rc, _, err = self._context().run(text)
            if rc == 0:
                self.tracker.applied(state)
        else:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(None, self._context().run, text, False)
            self.tracker.applied(state)
            rc, _, err = await pending
        if rc != 0:
            raise NftError(f"nft transaction failed: {err.strip()[:2000]}")

    def close(self) -> None:
        """Free the libnftables context (it holds a socket in the node's namespace)."""
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    async def _objects(self) -> tuple[list[str], dict[str, str]] | None:
        """Chains and maps/sets of our table, or None if it is missing. Only listings that
        skip rules and elements: `nft list chain` would fetch every element of every map
        (about a second at 10,000 services)."""
        chains: list[str] = []
        containers: dict[str, str] = {}
        for what in ("chains", "sets", "maps"):
            rc, out, _ = await self._nft(f"list {what} {r.FAMILY}", terse=True)
            if rc != 0:
                return None
            for kind, name in objects_in_listing(out):
                if kind == "chain":
                    chains.append(name)
                else:
                    containers[name] = kind
        return (chains, containers) if chains or containers else None

    async def _learn_kernel_objects(self) -> None:
        """Before a full sync: what the table holds now, so leftovers can be deleted."""
        found = await self._objects()
        chains, containers = found if found is not None else ([], {})
        self.tracker.note_kernel_objects(chains, containers)

    # -- Backend protocol ----------------------------------------------------------------
    async def sync(self, state: ProxyState, changed: frozenset[str] | None = None) -> None:
        """Apply the diff from what the kernel has to `state`; if nft refuses it, forget
        what we think the kernel has and retry once with a full sync."""
        async with self._lock:
            full = self.tracker.needs_full
            if full:
                await self._learn_kernel_objects()
            text = self.tracker.diff(state, changed)
            try:
                await self._apply(text, state)
            except NftError as e:
                log.warning(
                    "nft sync failed; retrying with a full sync", extra={"kv": {"error": str(e)}}
                )
                self.tracker.reset()
                await self._learn_kernel_objects()
                text, full = self.tracker.diff(state), True
                try:
                    await self._apply(text, state)
                except NftError:
                    self.tracker.reset()
                    raise
            self.last_sync_full, self.last_input = full, text

    async def check(self) -> bool:
        """Are our table and all its fixed chains there? If not, the next sync is a full one.
        (A `flush table` that keeps the chains but empties them is not seen here.)"""
        found = await self._objects()
        ok = found is not None and all(name in found[0] for name in r.skeleton_chains())
        if not ok:
            self.tracker.reset()
        return ok

    async def cleanup(self) -> None:
        async with self._lock:
            rc, _, err = await self._nft(f"delete table {r.FAMILY} {r.TABLE}")
            if rc != 0 and "No such file" not in err:
                raise NftError(f"nft delete table failed: {err.strip()}")
            self.tracker.reset()
            self.tracker.note_kernel_objects((), {})

    async def rules(self, service: str | None = None) -> str:
        rc, out, err = await self._nft(f"list table {r.FAMILY} {r.TABLE}")
        if rc != 0:
            return f"# table {r.FAMILY} {r.TABLE} not present: {err.strip()}\n"
        return out if service is None else filter_listing(out, service)


def objects_in_listing(listing: str) -> list[tuple[str, str]]:
    """(kind, name) of the chains/maps/sets of our table in an `nft list ...` output."""
    out: list[tuple[str, str]] = []
    ours = False
    for line in listing.splitlines():
        if m := _TABLE.match(line):
            ours = (m.group(1), m.group(2)) == (r.FAMILY, r.TABLE)
        elif ours and (m := _OBJECT.match(line)):
            out.append((m.group(1), m.group(2)))
    return out


# -- `kubesvc proxy rules NS/NAME` -----------------------------------------------------------
_BLOCK = re.compile(r"^\t(map|set|chain) (\S+) \{\n(.*?)^\t\}\n", re.M | re.S)
_ELEMENTS = re.compile(r"elements = \{(.*)\}", re.S)
_GOTO = re.compile(r"goto (\S+)")
_JUMP = re.compile(r"jump (\S+)")


def _split_elements(body: str) -> list[str]:
    # elements are separated by ", " at the top level; comments are quoted
    items, depth, quoted, cur = [], 0, False, []
    for ch in body:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "{[":
            depth += 1
        elif not quoted and ch in "}]":
            depth -= 1
        if ch == "," and not quoted and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        items.append("".join(cur).strip())
    return items


def filter_listing(listing: str, service: str) -> str:
    """The parts of `nft list table` output that concern one `ns/name`: the dispatch and
    no-endpoint elements commented with its port names, the endpoint elements of those
    destinations, and the pick chains they jump to."""
    blocks = [(m.group(1), m.group(2), m.group(3)) for m in _BLOCK.finditer(listing)]
    tag = f'comment "{service}:'
    keys: set[str] = set()
    chains: set[str] = set()
    elements: dict[str, list[str]] = {}
    for kind, name, body in blocks:
        m = _ELEMENTS.search(body) if kind != "chain" else None
        for item in _split_elements(m.group(1)) if m else []:
            if tag in item:
                elements.setdefault(name, []).append(item)
                keys.add(item.split(" comment ", 1)[0].strip())
                chains.update(_GOTO.findall(item))
    bodies = {name: body for kind, name, body in blocks if kind == "chain"}
    for name in list(chains):  # pick chains lead on to affinity-hit and dnat chains
        body = bodies.get(name, "")
        chains.update(_JUMP.findall(body), _GOTO.findall(body))
    for kind, name, body in blocks:
        m = _ELEMENTS.search(body) if kind != "chain" else None
        if not m or name in elements:
            continue
        for item in _split_elements(m.group(1)):
            head = item.split(" : ", 1)[0]
            if any(head.startswith(k + " . ") or head == k for k in keys):
                elements.setdefault(name, []).append(item)
    out = [f"# {service} in table {r.FAMILY} {r.TABLE}"]
    for kind, name, body in blocks:
        if name in elements:
            out.append(f"{kind} {name} {{")
            out += [f"\t{item}" for item in elements[name]]
            out.append("}")
        elif kind == "chain" and name in chains:
            out.append(f"chain {name} {{\n{body.rstrip()}\n}}")
    return "\n".join(out) + "\n"
