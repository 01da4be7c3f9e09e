"""The etcd v3 backend for the revisioned store, over gRPC (grpcio with the etcd API stubs
that aetcd ships; aetcd's own client speaks to one insecure endpoint only).

Semantics are kube-apiserver's etcd3 storage: a create is a transaction that the key does
not exist, an update or delete one that its mod revision is the expected one; lists read at
one revision in pages of RANGE_PAGE keys; a watch is an etcd watch from a revision, with the
previous value of every change, resumed from the last revision it delivered when the
connection to etcd breaks. A revision etcd has compacted gives `Compacted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from aetcd.rpc import kv_pb2, rpc_pb2, rpc_pb2_grpc

from kubesvc.store.base import (
    Claimed,
    Claims,
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    KeyValue,
    QueuedWatch,
    RevisionMismatch,
    StoreUnavailable,
    side_keys,
)

log = logging.getLogger("kubesvc.store")

ROOT = "/registry/"  # where every key the API server writes lives: one watch sees them all
HISTORY = 5000  # events the shared watch keeps for watchers that start a little behind
RANGE_PAGE = 2000  # keys per Range call of a list (etcd's responses stay small)
MAX_MESSAGE = 64 * 1024 * 1024  # the largest response or request the channel passes
CALL_TIMEOUT = 10.0  # seconds one call may wait, through reconnects, before it fails
ATTEMPT_TIMEOUT = 2.0  # seconds one try may take, with several members, before the next is used
WATCH_RETRY = (0.1, 2.0)  # backoff from, to (seconds) while a broken watch is re-created
PROGRESS_EVERY = 5.0  # seconds between progress requests on an idle watch
COMPACTED_MARK = "required revision has been compacted"


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    servers: tuple[str, ...]  # URLs: http://127.0.0.1:2379, https://...
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @staticmethod
    def parse(servers: str, **files: Path | None) -> EtcdConfig:
        urls = tuple(u.strip() for u in servers.split(",") if u.strip())
        if not urls:
            raise ValueError("--etcd-servers: no URL given")
        schemes = {urlsplit(u).scheme for u in urls}
        if not schemes <= {"http", "https"} or len(schemes) != 1:
            raise ValueError("--etcd-servers: URLs must all be http:// or all https://")
        config = EtcdConfig(urls, **files)
        config.check()
        return config

    @property
    def tls(self) -> bool:
        return urlsplit(self.servers[0]).scheme == "https"

    def check(self) -> None:
        for url in self.servers:
            parts = urlsplit(url)
            if not parts.hostname:
                raise ValueError(f"--etcd-servers: {url!r} names no host")

    def channel(self, index: int) -> grpc.aio.Channel:
        """A channel to server `index` alone: the store chooses the member itself, so that
        one that hangs is left for the others at once (a channel over all of them would
        keep sending it a share of the calls until its connection is found dead)."""
        parts = urlsplit(self.servers[index])
        host, port = parts.hostname or "", parts.port or 2379
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            # a member that stops answering is also found dead by its missing ping replies
            # (kubesvc's members accept a ping a second; etcd's default is one each 5 s)
            ("grpc.keepalive_time_ms", 5_000),
            ("grpc.keepalive_timeout_ms", 1_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]
        if not self.tls:
            return grpc.aio.insecure_channel(target, options=options)
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.cafile.read_bytes() if self.cafile else None,
            private_key=self.keyfile.read_bytes() if self.keyfile else None,
            certificate_chain=self.certfile.read_bytes() if self.certfile else None,
        )
        return grpc.aio.secure_channel(target, creds, options=options)


def _end(prefix: bytes) -> bytes:
    """etcd's range_end for every key starting with prefix."""
    return prefix[:-1] + bytes([prefix[-1] + 1]) if prefix else b"\0"


def _kv(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(
        kv.key.decode(), bytes(kv.value), kv.create_revision, kv.mod_revision, kv.version
    )


def _compacted(e: grpc.aio.AioRpcError) -> bool:
    return e.code() == grpc.StatusCode.OUT_OF_RANGE and COMPACTED_MARK in (e.details() or "")


class EtcdWatch(QueuedWatch):
    """One etcd watch stream: changes under a prefix after a revision."""

    def __init__(self, store: EtcdStore, prefix: str, after_revision: int) -> None:
        super().__init__()
        self._store = store
        self.prefix = prefix
        self.last = after_revision  # the newest revision delivered (or known to be passed)
        self._task: asyncio.Task[None] | None = None
        self._member_used = 0

    @property
    def progress_revision(self) -> int:
        """Every change under the prefix up to this revision has been delivered."""
        return self.last

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        delay = WATCH_RETRY[0]
        while not self.closed:
            try:
                await self._stream()
                return
            except Compacted as e:
                self._queue.put_nowait(e)
                return
            except (grpc.aio.AioRpcError, StoreUnavailable) as e:
                if self.closed:
                    return
                if isinstance(e, grpc.aio.AioRpcError) and e.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    self._store._fail_over(self._member_used)
                log.info(
                    "etcd watch broken, re-creating it",
                    extra={"kv": {"prefix": self.prefix, "after": self.last, "error": str(e)}},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY[1])

    async def _stream(self) -> None:
        member = self._member_used = self._store._member
        call = self._store._watches[member].Watch(metadata=self._store._metadata)
        prefix = self.prefix.encode()
        await call.write(
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=prefix,
                    range_end=_end(prefix),
                    start_revision=self.last + 1,
                    prev_kv=True,
                    progress_notify=True,
                )
            )
        )
        poke = asyncio.create_task(self._progress_requests(call))
        try:
            while True:
                try:  # progress is asked for every PROGRESS_EVERY: silence is a hung member
                    resp = await asyncio.wait_for(call.read(), 2 * PROGRESS_EVERY + 2)
                except TimeoutError:
                    self._store._fail_over(member)
                    raise StoreUnavailable("etcd member silent on a watch") from None
                if resp is grpc.aio.EOF:
                    raise StoreUnavailable("etcd closed the watch stream")
                self._store._seen(resp.header.revision)
                if resp.compact_revision:
                    raise Compacted(self.last, resp.compact_revision)
                if resp.canceled:
                    raise StoreUnavailable(f"etcd cancelled the watch: {resp.cancel_reason}")
                for ev in resp.events:
                    self._queue.put_nowait(self._event(ev))
                    self.last = ev.kv.mod_revision
                if not resp.events and not resp.created and not resp.fragment:
                    # a progress notification: nothing more up to the header's revision
                    self.last = max(self.last, resp.header.revision)
        finally:
            poke.cancel()
            call.cancel()

    async def _progress_requests(self, call: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                await call.write(
                    rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
                )

    @staticmethod
    def _event(ev: kv_pb2.Event) -> Event:
        prev = _kv(ev.prev_kv) if ev.HasField("prev_kv") else None
        if ev.type == kv_pb2.Event.DELETE:
            kv = ev.kv
            gone = KeyValue(
                kv.key.decode(),
                prev.value if prev else b"",
                prev.create_revision if prev else 0,
                kv.mod_revision,
                prev.version if prev else 0,
            )
            return Event("DELETE", gone, False, prev)
        kv = _kv(ev.kv)
        return Event("PUT", kv, kv.version == 1, prev)

    def _closed(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._store._watchers.discard(self)


class SharedWatch(QueuedWatch):
    """A watcher served from the store's one etcd watch (WatchHub), in process."""

    def __init__(self, hub: WatchHub, prefix: str, after: int) -> None:
        super().__init__()
        self._hub = hub
        self.prefix = prefix
        self.after = after  # what it gets starts after this revision

    @property
    def progress_revision(self) -> int:
        return max(self._hub.progress, self.after)

    def _closed(self) -> None:
        self._hub.watchers.discard(self)


class WatchHub:
    """One etcd watch on everything under ROOT, fanned out to the store's watchers in
    process, with the last HISTORY events kept so that a watcher starting a little behind
    is served from memory (kube-apiserver's watch cache, in short). A watcher from further
    back gets an etcd watch of its own."""

    def __init__(self, store: EtcdStore, after: int) -> None:
        self._source = EtcdWatch(store, ROOT, after)
        self.covered_after = after  # history holds every event after this revision
        self.history: deque[Event] = deque()
        self.watchers: set[SharedWatch] = set()
        self.dispatched = after
        self._task: asyncio.Task[None] | None = None

    @property
    def progress(self) -> int:
        """Delivered to every watcher up to here: the source's progress once nothing of it
        waits to be dispatched."""
        return self._source.last if self._source._queue.empty() else self.dispatched

    def start(self) -> None:
        self._source.start()
        self._task = asyncio.create_task(self._run())

    def join(self, prefix: str, after: int) -> SharedWatch | None:
        """A watcher of prefix from `after`, or None when the history does not reach back."""
        if after < self.covered_after:
            return None
        w = SharedWatch(self, prefix, after)
        for ev in self.history:  # no await from here on: nothing slips between
            if ev.kv.mod_revision > after and ev.kv.key.startswith(prefix):
                w.push(ev)
        self.watchers.add(w)
        return w

    async def _run(self) -> None:
        try:
            async for ev in self._source:
                self.history.append(ev)
                if len(self.history) > HISTORY:
                    self.covered_after = self.history.popleft().kv.mod_revision
                self.dispatched = ev.kv.mod_revision
                rev = ev.kv.mod_revision
                for w in list(self.watchers):
                    # a watcher may start ahead of the hub (a list read a moment ago)
                    if rev > w.after and ev.kv.key.startswith(w.prefix):
                        w.push(ev)
        except Compacted as e:  # it fell behind a compaction: its watchers did too
            for w in list(self.watchers):
                w.push(e)
                w.close()
        finally:
            self.close()

    def close(self) -> None:
        self._source.close()
        if self._task is not None:
            self._task.cancel()
        for w in list(self.watchers):
            w.close()
        self.watchers.clear()


class EtcdStore:
    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self._channels = [config.channel(i) for i in range(len(config.servers))]
        self._kvs = [rpc_pb2_grpc.KVStub(c) for c in self._channels]
        self._watches = [rpc_pb2_grpc.WatchStub(c) for c in self._channels]
        self._member = 0  # the member calls go to, until it fails them
        self._metadata: Sequence[tuple[str, str]] = ()
        self._revision = 0
        self._compacted = 0
        self._watchers: set[EtcdWatch] = set()
        self._hub: WatchHub | None = None

    async def start(self) -> None:
        """Wait for etcd (through reconnects) and learn its revision."""
        resp = await self._call(
            "Range", rpc_pb2.RangeRequest(key=b"/", count_only=True), retry=True
        )
        self._seen(resp.header.revision)

    def _seen(self, revision: int) -> None:
        self._revision = max(self._revision, revision)

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    def _fail_over(self, member: int) -> None:
        """Member `member` failed a call: the next calls go to the next member."""
        if len(self._channels) > 1 and self._member == member:
            self._member = (member + 1) % len(self._channels)
            log.info(
                "etcd member not answering, using the next",
                extra={"kv": {"server": self.config.servers[self._member]}},
            )

    async def _call(self, method: str, request: Any, retry: bool = False) -> Any:
        """One call to the current member, waiting through reconnects for up to
        CALL_TIMEOUT in all. With several members, a try that fails or takes more than
        ATTEMPT_TIMEOUT moves the calls to the next member. A read (`retry`) is then tried
        again there; a write is not (it may have been applied), and the API's client
        retries on the 503 it gets."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CALL_TIMEOUT
        several = len(self._channels) > 1
        while True:
            member = self._member
            left = max(deadline - loop.time(), 0.1)
            try:
                return await getattr(self._kvs[member], method)(
                    request,
                    timeout=min(left, ATTEMPT_TIMEOUT) if several else left,
                    wait_for_ready=not several,  # one member: wait for it to come back
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as e:
                code = e.code()
                gone = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if gone:
                    self._fail_over(member)
                if gone and retry and loop.time() < deadline:
                    await asyncio.sleep(0.05 if several else 0.2)
                    continue
                if gone:
                    raise StoreUnavailable(f"etcd: {e.details() or code.name}") from None
                raise

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._call("Range", rpc_pb2.RangeRequest(key=key.encode()), retry=True)
        self._seen(resp.header.revision)
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def range(
        self, prefix: str, revision: int = 0, start_after: str = ""
    ) -> tuple[list[KeyValue], int]:
        end = _end(prefix.encode())
        key = (start_after + "\0").encode() if start_after > prefix else prefix.encode()
        out: list[KeyValue] = []
        while True:
            try:
                resp = await self._call(
                    "Range",
                    rpc_pb2.RangeRequest(
                        key=key, range_end=end, revision=revision, limit=RANGE_PAGE
                    ),
                    retry=True,
                )
            except grpc.aio.AioRpcError as e:
                if _compacted(e):
                    raise Compacted(revision, max(self._compacted, revision)) from None
                raise
            self._seen(resp.header.revision)
            revision = revision or resp.header.revision  # the later pages read the same one
            out.extend(_kv(kv) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return out, revision
            key = resp.kvs[-1].key + b"\0"

    async def _txn(self, request: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        resp = await self._call("Txn", request)
        self._seen(resp.header.revision)
        return resp

    @staticmethod
    def _current(resp: rpc_pb2.TxnResponse) -> KeyValue | None:
        kvs = resp.responses[0].response_range.kvs if resp.responses else []
        return _kv(kvs[0]) if kvs else None

    async def create(self, key: str, value: bytes, claims: Claims = ()) -> KeyValue:
        claims, _ = side_keys(key, claims, ())
        k = key.encode()
        resp = await self._txn(
            rpc_pb2.TxnRequest(
                compare=[_absent(k), *(_absent(c.encode()) for c, _ in claims)],
                success=[_put(k, value), *(_put(c.encode(), v) for c, v in claims)],
                failure=[_get(k), *(_get(c.encode(), keys_only=True) for c, _ in claims)],
            )
        )
        if not resp.succeeded:
            if resp.responses[0].response_range.kvs:
                raise KeyExists(key)
            raise Claimed(_first_present(resp, claims, 1))
        rev = resp.header.revision
        return KeyValue(key, value, rev, rev, 1)

    def _guard(self, k: bytes, expected_mod_revision: int | None) -> rpc_pb2.Compare:
        if expected_mod_revision:
            return rpc_pb2.Compare(
                key=k,
                target=rpc_pb2.Compare.MOD,
                result=rpc_pb2.Compare.EQUAL,
                mod_revision=expected_mod_revision,
            )
        return rpc_pb2.Compare(  # the key exists
            key=k, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.GREATER, mod_revision=0
        )

    async def _guarded(
        self,
        key: str,
        expected_mod_revision: int | None,
        op: rpc_pb2.RequestOp,
        claims: Claims = (),
        releases: Sequence[str] = (),
    ) -> rpc_pb2.TxnResponse:
        """`op` on one key if it is at the expected mod revision (or, without one, exists)
        and no claim exists, with the claims' puts and the releases' deletes; otherwise
        KeyNotFound or RevisionMismatch with what is stored, or Claimed."""
        k = key.encode()
        resp = await self._txn(
            rpc_pb2.TxnRequest(
                compare=[
                    self._guard(k, expected_mod_revision),
                    *(_absent(c.encode()) for c, _ in claims),
                ],
                success=[
                    op,
                    *(_put(c.encode(), v) for c, v in claims),
                    *(_delete(r.encode()) for r in releases),
                ],
                failure=[_get(k), *(_get(c.encode(), keys_only=True) for c, _ in claims)],
            )
        )
        if not resp.succeeded:
            current = self._current(resp)
            if current is None:
                raise KeyNotFound(key)
            if expected_mod_revision and current.mod_revision != expected_mod_revision:
                raise RevisionMismatch(current)
            raise Claimed(_first_present(resp, claims, 1))
        return resp

    async def update(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int,
        claims: Claims = (),
        releases: Sequence[str] = (),
    ) -> KeyValue:
        claims, releases = side_keys(key, claims, releases)
        put = rpc_pb2.PutRequest(key=key.encode(), value=value, prev_kv=True)
        resp = await self._guarded(
            key, expected_mod_revision, rpc_pb2.RequestOp(request_put=put), claims, releases
        )
        prev = resp.responses[0].response_put.prev_kv
        rev = resp.header.revision
        return KeyValue(key, value, prev.create_revision, rev, prev.version + 1)

    async def delete(
        self, key: str, expected_mod_revision: int | None = None, releases: Sequence[str] = ()
    ) -> KeyValue:
        _, releases = side_keys(key, (), releases)
        gone = rpc_pb2.DeleteRangeRequest(key=key.encode(), prev_kv=True)
        op = rpc_pb2.RequestOp(request_delete_range=gone)
        resp = await self._guarded(key, expected_mod_revision, op, releases=releases)
        prevs = resp.responses[0].response_delete_range.prev_kvs
        if not prevs:  # deleted by someone else between the compare and the delete: cannot be
            raise KeyNotFound(key)
        prev = _kv(prevs[0])
        return KeyValue(key, prev.value, prev.create_revision, resp.header.revision, prev.version)

    async def watch(self, prefix: str, after_revision: int) -> QueuedWatch:
        if after_revision and after_revision < self._compacted:
            raise Compacted(after_revision, self._compacted)
        if prefix.startswith(ROOT) and after_revision:
            hub = self._hub
            if hub is None or hub._task is None or hub._task.done():
                hub = self._hub = WatchHub(self, self._revision)
                hub.start()
            shared = hub.join(prefix, after_revision)
            if shared is not None:
                return shared
        if after_revision:
            # a read at the revision tells whether etcd still has it (a watch says so late)
            await self.range_count(prefix, after_revision)
        w = EtcdWatch(self, prefix, after_revision)
        self._watchers.add(w)
        w.start()
        return w

    async def range_count(self, prefix: str, revision: int = 0) -> int:
        p = prefix.encode()
        try:
            resp = await self._call(
                "Range",
                rpc_pb2.RangeRequest(key=p, range_end=_end(p), revision=revision, count_only=True),
                retry=True,
            )
        except grpc.aio.AioRpcError as e:
            if _compacted(e):
                self._compacted = max(self._compacted, revision)
                raise Compacted(revision, self._compacted) from None
            if "future revision" in (e.details() or ""):
                return 0
            raise
        self._seen(resp.header.revision)
        return int(resp.count)

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        try:
            await self._call("Compact", rpc_pb2.CompactionRequest(revision=revision))
        except grpc.aio.AioRpcError as e:
            if not _compacted(e):  # another API server compacted further already
                raise
        self._compacted = revision

    async def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
        for w in list(self._watchers):
            w.close()
        for channel in self._channels:
            await channel.close()


def _absent(k: bytes) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=k, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=0
    )


def _put(k: bytes, value: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value))


def _get(k: bytes, keys_only: bool = False) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k, keys_only=keys_only))


def _delete(k: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k))


def _first_present(resp: rpc_pb2.TxnResponse, claims: Claims, skip: int) -> str:
    """The first claim a failed transaction found taken (its reads follow `skip` others)."""
    for (key, _), r in zip(claims, resp.responses[skip:], strict=False):
        if r.response_range.kvs:
            return key
    return claims[0][0] if claims else ""
