"""Applies rendered iptables rules inside a node's network namespace.

One `iptables-<variant>-restore --noflush` per sync. A full sync (first sync, after a
failure, after `check()` found our rules gone, or when node-wide inputs changed) rewrites
every chain and reads the kernel's chain list first so leftovers of an earlier run are
deleted; otherwise only the chains of services that differ from the last applied state are
written (KEP-3453 partial sync), with the chains they no longer use deleted in the same file.
"""

from __future__ import annotations

import asyncio
import logging

from kubesvc import netns as nsutil
from kubesvc.proxy.iptables import render as r
from kubesvc.proxy.model import ProxyState

log = logging.getLogger("kubesvc.proxy.iptables")

VARIANTS = ("legacy", "nft")
WAIT_SECONDS = "5"  # xtables lock: shared by every namespace on the machine


class IptablesBackend:
    def __init__(self, netns: str | None, variant: str = "legacy") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"iptables variant must be one of {VARIANTS}, not {variant!r}")
        self.netns = netns
        self.variant = variant
        self._lock = asyncio.Lock()
        self._last: ProxyState | None = None
        self._chains: frozenset[str] = frozenset()  # per-service nat chains in the kernel
        self._need_full = True
        # what the last successful sync did, for logs, metrics and tests
        self.last_sync_full = False
        self.last_changed: frozenset[str] = frozenset()
        self.last_input = ""

    # -- commands ------------------------------------------------------------------------
    def _argv(self, suffix: str, *args: str) -> list[str]:
        prefix = nsutil.nsenter(self.netns) if self.netns else []
        return [*prefix, f"iptables-{self.variant}{suffix}", *args]

    async def _restore(self, text: str) -> None:
        await nsutil.run(
            *self._argv("-restore", "-w", WAIT_SECONDS, "--noflush"), input=text, check=True
        )

    async def _save(self, *tables: str) -> str:
        if not tables:
            return await nsutil.run(*self._argv("-save"))
        parts = [await nsutil.run(*self._argv("-save", "-t", t)) for t in tables]
        return "".join(parts)

    # -- Backend protocol ----------------------------------------------------------------
    async def sync(self, state: ProxyState, changed: frozenset[str] | None = None) -> None:
        # the proxier's `changed` ports are not used: comparing fingerprints costs little
        # next to a restore, which rewrites the filter table and KUBE-SERVICES every time
        async with self._lock:
            services: set[str] | None = None
            if not self._need_full and self._last is not None:
                services = r.changed_services(self._last, state)
            try:
                if services is None:
                    save = r.parse_save(await self._save("filter", "nat"))
                    existing = r.chains_in(save.get("nat", []))
                    have = r.present_jumps(save)
                    missing = [j for j in r.JUMP_RULES if (j.table, j.chain, j.target) not in have]
                    ruleset = r.build(state, None, existing_chains=existing, missing_jumps=missing)
                else:
                    ruleset = r.build(state, services, existing_chains=self._chains)
                await self._restore(ruleset.text)
            except BaseException:
                # The kernel may hold anything now: rebuild everything next time.
                self._need_full = True
                raise
            self._last, self._chains, self._need_full = state, ruleset.active_chains, False
            self.last_sync_full = services is None
            self.last_changed = frozenset(services or ())
            self.last_input = ruleset.text
            log.debug(
                "iptables sync",
                extra={
                    "kv": {
                        "full": services is None,
                        "changed": len(services or ()),
                        "written": len(ruleset.written_chains),
                        "deleted": len(ruleset.deleted_chains),
                    }
                },
            )

    async def check(self) -> bool:
        """Are our rules still hooked in (nat PREROUTING -> KUBE-SERVICES)? A miss makes
        the next sync a full one, as upstream's canary-chain monitor does."""
        jump = next(j for j in r.JUMP_RULES if j.table == "nat" and j.chain == "PREROUTING")
        argv = self._argv(
            "", "-w", WAIT_SECONDS, "-t", "nat", "-C", jump.chain,
            "-m", "comment", "--comment", jump.comment, "-j", jump.target,
        )  # fmt: skip
        try:
            await nsutil.run(*argv, check=True)
        except nsutil.CommandError:
            self._need_full = True
            return False
        return True

    async def cleanup(self) -> None:
        """Remove every rule and chain this backend created (upstream CleanupLeftovers)."""
        async with self._lock:
            text = r.render_cleanup(await self._save("filter", "nat"))
            if text:
                await self._restore(text)
            self._last, self._chains, self._need_full = None, frozenset(), True

    def close(self) -> None:
        """Nothing held between syncs: each one is an `iptables-restore` process."""

    async def rules(self, service: str | None = None) -> str:
        """`iptables-save` of the filter and nat tables; with `ns/name`, only the rules
        that mention that service and the chains they lead to."""
        text = await self._save("filter", "nat")
        return text if service is None else r.filter_service(text, service)
