"""CPU-heavy request work off the event loop, and memory given back after it.

Decoding a 3 MiB YAML body, validating 100,000 ConfigMap keys or recording their managed
fields takes seconds of Python. Run on the event loop, that would stall every other request
and every watch; run here, in one worker thread, the loop keeps answering: Python hands the
GIL to a waiting thread every few milliseconds. Small requests stay on the loop, where they
are cheaper than a thread hop.

Cyclic garbage collection is paused while the worker runs: the objects it allocates would
otherwise set off full collections that hold the GIL for 100 ms or more.

Large bodies leave glibc with free memory it keeps (fragmented arenas, a raised mmap
threshold); a `malloc_trim` after heavy work and after busy periods returns it. (A fixed
mmap threshold would return large buffers at once, but every large response would then
fault in fresh pages: a 10 MB list took twice as long.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

HEAVY_BYTES = 128 * 1024  # bodies and objects above this are processed in the worker
TRIM_INTERVAL = 1.0  # seconds between malloc_trim calls

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_libc: Any = None
_last_trim = 0.0
_trim_pending = False


def _worker() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(1, thread_name_prefix="heavy")
    return _pool


async def run(heavy: bool, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on the loop, or in the worker thread when heavy."""
    if not heavy:
        return fn(*args)
    try:
        return await asyncio.get_running_loop().run_in_executor(_worker(), _without_gc, fn, args)
    finally:
        schedule_trim()


def _without_gc(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Heavy work allocates hundreds of thousands of objects, which would set off full
    cyclic collections: each holds the GIL for 100 ms or more on a large heap, stalling the
    loop. Collection waits until the work is done (it is reference counting that frees
    nearly all of it anyway)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if was_enabled:
            gc.enable()


def _load_libc() -> Any:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
        if _libc and not hasattr(_libc, "malloc_trim"):
            _libc = False
    return _libc


def schedule_trim() -> None:
    """Give free heap memory back to the kernel soon (at most once per TRIM_INTERVAL)."""
    global _trim_pending
    if _trim_pending or not _load_libc():
        return
    with contextlib.suppress(RuntimeError):
        loop = asyncio.get_running_loop()
        _trim_pending = True
        delay = max(0.0, _last_trim + TRIM_INTERVAL - time.monotonic())
        loop.call_later(delay, _trim_now, loop)


def _trim_now(loop: asyncio.AbstractEventLoop) -> None:
    global _trim_pending, _last_trim
    _trim_pending = False
    _last_trim = time.monotonic()
    # trimming walks the heap: a few ms, in the worker so the loop does not wait
    loop.run_in_executor(_worker(), _libc.malloc_trim, 0)
