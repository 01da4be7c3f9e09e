"""libnftables (the library behind the `nft` command) through ctypes, one context per node.

Why not `nft -f -` per sync: at 10,000 services a one-element transaction costs 3-9 ms of
process start-up, and any transaction that deletes something costs another 10-20 ms when
`nft` exits: closing its netlink socket makes the kernel wait for the deferred destruction
of the deleted objects (an RCU grace period, `nf_tables_trans_destroy_flush_work`). A
context that lives as long as the proxy keeps its socket open, so the same transaction
takes well under a millisecond (bench/proxy_bench.py measures both).

The context's netlink socket is opened in the node's network namespace (in a thread that
joined it) and stays there; calls may then come from any thread. ctypes releases the GIL
while libnftables runs, so callers use `asyncio.to_thread` for long transactions.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from pathlib import Path

from kubesvc import netns as nsutil

# enum nft_output_flags (nftables/libnftables.h)
OUTPUT_TERSE = 1 << 11
# Loading 10,000 services makes libnftables allocate ~150 MB while it parses and frees it
# afterwards, but glibc keeps the freed pages: give them back after large transactions.
TRIM_AFTER = 256 << 10  # bytes of commands

_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None)


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


class Nft:
    """One libnftables context bound to a network namespace (None: this process's own)."""

    def __init__(self, netns: str | Path | None = None) -> None:
        self._lib = _load()
        self._lock = threading.Lock()
        ctx = nsutil.call_in_netns(netns, self._new) if netns else self._new()
        self._ctx: int | None = ctx

    def _new(self) -> int:
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        return int(ctx)

    def run(self, commands: str, terse: bool = False) -> tuple[int, str, str]:
        """Run `commands` (nft syntax, one transaction) -> (rc, output, errors)."""
        with self._lock:
            if self._ctx is None:
                raise RuntimeError("nft context is closed")
            lib, ctx = self._lib, self._ctx
            flags = lib.nft_ctx_output_get_flags(ctx)
            lib.nft_ctx_output_set_flags(ctx, flags | OUTPUT_TERSE if terse else flags)
            try:
                rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
            finally:
                lib.nft_ctx_output_set_flags(ctx, flags)
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        if len(commands) >= TRIM_AFTER:
            _libc.malloc_trim(0)
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None

    def __del__(self) -> None:
        # a context pins its network namespace through its socket
        if getattr(self, "_ctx", None) is not None:
            self.close()
