"""Generic resource storage: the verbs of the Kubernetes API over the revisioned store.

Objects are kept as the JSON the API speaks. The store holds them without resourceVersion
(it is the store's mod_revision); decoded objects are cached per key and revision with the
resourceVersion filled in, so lists and watches never decode twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from kubesvc.api import apply as ssa
from kubesvc.api import catalog, errors, typed
from kubesvc.api.crd import objects as custom
from kubesvc.api.crd import ssa as crd_ssa
from kubesvc.api.crd.kinds import CustomKind
from kubesvc.api.defaults import apply_defaults
from kubesvc.api.errors import ApiError, FieldError
from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.api.patch import (
    PatchError,
    go_format,
    json_merge_patch,
    json_patch,
    patch_failed,
    strategic_merge_patch,
)
from kubesvc.api.validation import validate, validate_status_update
from kubesvc.apiserver import offload, serviceaccounts, strategies
from kubesvc.apiserver.keylocks import KeyLocks
from kubesvc.apiserver.keys import (
    IP_CLAIMS,
    NODE_PORT_CLAIMS,
    key_for,
    prefix_for,
    split_key,
)
from kubesvc.apiserver.objects import dumps, generate_name, meta, now_rfc3339, without_volatile
from kubesvc.apiserver.services import ServiceAllocator
from kubesvc.apiserver.tolerations import DEFAULT_TOLERATION_SECONDS, add_default_tolerations
from kubesvc.store.base import (
    Claimed,
    Compacted,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionMismatch,
)

log = logging.getLogger("kubesvc.apiserver")
T = TypeVar("T")

WRITE_RETRIES = 32  # a write that raced another API server's on the same object is tried
# again from a fresh read this many times (upstream's GuaranteedUpdate loops on such
# conflicts); this server's own writes to one object take turns (KeyLocks)


CLAIMS_RACED = "other API servers kept taking the values chosen for it; please try again"


class StaleWrite(ApiError):
    """The object changed between our read and our write (no precondition of the caller's
    failed): the request may be tried again from a fresh read."""

    @staticmethod
    def of(kind: Kind, name: str) -> StaleWrite:
        e = errors.conflict(kind.plural, kind.group, name, errors.MODIFIED)
        return StaleWrite(e.code, e.reason, e.message, e.details)


CONTINUE_EXPIRED = (  # upstream's wording (storage/etcd3: continue token too old)
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list."
)
Predicate = Callable[[dict[str, Any]], bool]
DEFAULT_INGRESS_CLASS = "ingressclass.kubernetes.io/is-default-class"
LEGACY_INGRESS_CLASS = "kubernetes.io/ingress.class"
DELETED_CACHE_ITEMS = 4096
DELETED_CACHE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Cached:
    mod_revision: int
    obj: dict[str, Any]
    _json: bytes | None = None
    _partial: bytes | None = None
    size: int = 0  # bytes in the store

    @property
    def heavy(self) -> bool:
        return self.size > offload.HEAVY_BYTES

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = dumps(self.obj)
        return self._json

    @property
    def partial_json(self) -> bytes:
        """The object as PartialObjectMetadata (what Table rows carry)."""
        if self._partial is None:
            self._partial = (
                b'{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":'
                + dumps(self.obj.get("metadata", {}))
                + b"}"
            )
        return self._partial


@dataclass
class WriteOptions:
    dry_run: bool = False
    manager: str = ""
    subresource: str = ""
    # for patches: how unknown and duplicate fields of the result are treated ("" = not
    # checked), and the warnings that produced
    field_validation: str = ""
    warnings: list[str] = field(default_factory=list)
    heavy: bool = False  # a large body: CPU work runs off the event loop
    # validating admission of the requesting user (NodeRestriction): (new, old), old None
    # on create; raises the ApiError that refuses the write
    admit: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None


class Registry:
    def __init__(self, store: Any, allocator: ServiceAllocator) -> None:
        self.store = store
        self.allocator = allocator
        # DefaultTolerationSeconds: (not-ready, unreachable) seconds added to new pods
        self.toleration_seconds = (DEFAULT_TOLERATION_SECONDS, DEFAULT_TOLERATION_SECONDS)
        self._cache: dict[str, Cached] = {}
        # namespace -> terminating, while follow_namespaces runs (else empty: read the store)
        self._namespaces: dict[str, bool] = {}
        self._deleted: OrderedDict[int, Cached] = OrderedDict()
        self._deleted_bytes = 0
        self._writes = KeyLocks()  # read-modify-writes to one object take turns

    # -- reading -------------------------------------------------------------------------
    def decode(self, kv: KeyValue) -> Cached:
        hit = self._cache.get(kv.key)
        if hit is not None and hit.mod_revision == kv.mod_revision:
            return hit
        obj = read_stored(kv)
        hit = Cached(kv.mod_revision, obj, size=len(kv.value))
        self._cache[kv.key] = hit
        return hit

    def _remember(
        self, kv: KeyValue, obj: dict[str, Any], template: bytes | None = None
    ) -> dict[str, Any]:
        """Cache what was just written without decoding it again. `template` is the object's
        JSON with a placeholder for the resourceVersion (large objects are encoded off the
        loop, before the write, so no watcher encodes them on it)."""
        rv = str(kv.mod_revision)
        obj["metadata"]["resourceVersion"] = rv
        encoded = template.replace(_RV_PLACEHOLDER, rv.encode()) if template else None
        self._cache[kv.key] = Cached(kv.mod_revision, obj, encoded, size=len(kv.value))
        return obj

    @staticmethod
    def decode_uncached(kv: KeyValue) -> dict[str, Any]:
        return read_stored(kv)

    async def _get_cached(self, kind: Kind, namespace: str | None, name: str) -> Cached:
        kv = await self.store.get(key_for(kind, namespace, name))
        if kv is None:
            raise errors.not_found_error(kind.plural, kind.group, name)
        return self.decode(kv)

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        return (await self._get_cached(kind, namespace, name)).obj

    async def get_cached(self, kind: Kind, namespace: str | None, name: str) -> Cached:
        """The object with its encoded JSON (encoded off the loop when large)."""
        cached = await self._get_cached(kind, namespace, name)
        if cached._json is None:
            await offload.run(cached.heavy, _encoded, cached)
        return cached

    async def try_get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        kv = await self.store.get(key_for(kind, namespace, name))
        return self.decode(kv).obj if kv else None

    async def list(
        self,
        kind: Kind,
        namespace: str | None,
        predicate: Predicate | None = None,
        limit: int = 0,
        continue_token: str = "",
    ) -> tuple[list[Cached], int, str]:
        """Items, the list's resourceVersion, and a continue token when limited."""
        prefix = prefix_for(kind, namespace)
        if continue_token:
            # every page is read at the first page's revision (a snapshot), as upstream
            rev, start_key = _parse_continue(continue_token)
            try:
                kvs, rev = await self.store.range(prefix, rev, start_key)
            except Compacted:
                # upstream's way on: a token that continues at the newest revision
                expired = errors.gone(CONTINUE_EXPIRED)
                expired.list_meta["continue"] = _encode_continue(LATEST, start_key)
                raise expired from None
        else:
            kvs, rev = await self.store.range(prefix)
        items: list[Cached] = []
        next_token = ""
        decoded = 0
        for kv in kvs:
            hit = self._cache.get(kv.key)
            if hit is not None and hit.mod_revision == kv.mod_revision:
                cached = hit
            else:  # after a restart: decoding thousands of objects, let others in now and then
                cached = self.decode(kv)
                decoded += 1
                if not decoded % 500:
                    await asyncio.sleep(0)
            if predicate is not None and not predicate(cached.obj):
                continue
            if limit and len(items) >= limit:
                next_token = _make_continue(rev, items[-1].obj, kind)
                break
            items.append(cached)
        return items, rev, next_token

    # -- writing -------------------------------------------------------------------------
    async def create(
        self, kind: Kind, namespace: str | None, obj: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        obj = _typed(kind, obj)
        m = meta(obj)
        if isinstance(kind, CustomKind) and kind.terminating:
            raise errors.method_not_allowed(
                "create not allowed while custom resource definition is terminating"
            )
        if kind.namespaced:
            await self._check_namespace_open(namespace or "")
            m["namespace"] = namespace
        else:
            m.pop("namespace", None)
        if _is(kind, "Pod"):
            # before the name is generated: a refusal names the pod as upstream's does
            await serviceaccounts.admit(obj, namespace or "", self._service_account)
        if not m.get("name") and m.get("generateName"):
            m["name"] = generate_name(m["generateName"])
        if not m.get("name"):
            raise _invalid(
                kind, "", [errors.required("metadata.name", "name or generateName is required")]
            )
        if opts.admit is not None:
            opts.admit(obj, None)
        for volatile in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            m.pop(volatile, None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now_rfc3339()
        if _is(kind, "Ingress"):
            await self._default_ingress_class(obj)
        if _is(kind, "Pod"):
            add_default_tolerations(obj, *self.toleration_seconds)
        errs = await offload.run(opts.heavy, _prepare_create, kind, obj)
        if errs and not _only_allocatable(kind, errs):
            raise _invalid(kind, m["name"], errs)
        if not _is(kind, "Service"):
            return await self._create_once(kind, namespace, obj, opts)
        before = _snapshot(obj)
        for _ in range(WRITE_RETRIES):
            try:
                return await self._create_once(kind, namespace, obj, opts)
            except Claimed as e:  # another API server holds what was chosen: choose again
                self.allocator.claimed_elsewhere(e.key)
                obj = before()
        raise errors.conflict(kind.plural, kind.group, m["name"], CLAIMS_RACED)

    async def _create_once(
        self, kind: Kind, namespace: str | None, obj: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        """Allocate (Services), record the manager, encode and store a prepared object."""
        m = meta(obj)
        heavy = opts.heavy
        taken = None
        claims: list[tuple[str, bytes]] = []
        if _is(kind, "Service"):
            taken, errs = self.allocator.allocate(obj, None, opts.dry_run)
            errs = errs or validate(kind.kind, obj)
            if errs:
                self.allocator.undo(taken)
                raise _invalid(kind, m["name"], errs)
            claims = self.allocator.claims(taken, obj)
        try:
            if opts.manager:
                await offload.run(
                    heavy,
                    ssa.update_managed_fields,
                    _ssa_kind(kind),
                    None,
                    obj,
                    opts.manager,
                    "Update",
                    now_rfc3339(),
                )
            if opts.dry_run:
                return obj
            data, template = await offload.run(heavy, _encode_for_store, obj, heavy)
            kv = await self.store.create(key_for(kind, namespace, m["name"]), data, claims)
        except KeyExists:
            if taken:
                self.allocator.undo(taken)
            raise errors.already_exists(kind.plural, kind.group, m["name"]) from None
        except BaseException:
            if taken:
                self.allocator.undo(taken)
            raise
        return self._remember(kv, obj, template)

    async def _service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.try_get(BY_KIND["ServiceAccount"], namespace, name)

    async def _default_ingress_class(self, ingress: dict[str, Any]) -> None:
        """The DefaultIngressClass admission: an Ingress created without a class gets the
        IngressClass marked default (the newest; at the same time, the lowest name)."""
        spec = ingress.get("spec")
        annotations = meta(ingress).get("annotations") or {}
        if not isinstance(spec, dict):
            spec = ingress["spec"] = {}
        if spec.get("ingressClassName") or LEGACY_INGRESS_CLASS in annotations:
            return
        items, _, _ = await self.list(BY_KIND["IngressClass"], None)
        defaults = [
            c.obj["metadata"]
            for c in items
            if (c.obj["metadata"].get("annotations") or {}).get(DEFAULT_INGRESS_CLASS) == "true"
        ]
        if defaults:
            newest = max(d.get("creationTimestamp") or "" for d in defaults)
            names = [d["name"] for d in defaults if (d.get("creationTimestamp") or "") == newest]
            spec["ingressClassName"] = min(names)

    async def _check_namespace_open(self, namespace: str) -> None:
        # from the followed namespaces when there are (a read of the store each create
        # costs a round trip to etcd); one not seen yet is read, as upstream's admission
        terminating = self._namespaces.get(namespace)
        if terminating is None:
            ns = await self.try_get(BY_KIND["Namespace"], None, namespace)
            if ns is None:
                raise errors.not_found_error("namespaces", "", namespace)
            terminating = bool((ns.get("metadata") or {}).get("deletionTimestamp"))
        if terminating:
            raise errors.forbidden_error(
                "",
                "",
                "",
                f"unable to create new content in namespace {namespace} "
                "because it is being terminated",
            )

    async def _guaranteed(
        self,
        target: tuple[Kind, str | None, str],
        write: Callable[[], Awaitable[T]],
        before_retry: Callable[[], None] | None = None,
    ) -> T:
        """Run a read-modify-write until it does not race another writer (WRITE_RETRIES at
        the most; then its 409 stands). This server's writes to one object take turns."""
        kind, namespace, name = target
        async with self._writes.hold((kind.group, kind.plural, namespace, name)):
            for attempt in range(WRITE_RETRIES):
                try:
                    return await write()
                except StaleWrite:
                    if attempt == WRITE_RETRIES - 1:
                        raise
                    if before_retry is not None:
                        before_retry()
        raise AssertionError("unreachable")

    async def update(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        """PUT. Returns the stored object and whether it was created. Without a
        resourceVersion in the body it is applied to whatever is stored when it lands."""
        if meta(obj).get("resourceVersion"):  # pinned: a conflict is the answer
            return await self._update_once(kind, namespace, name, obj, opts)
        # each try prepares its own copy of the body
        return await self._guaranteed(
            (kind, namespace, name),
            lambda: self._update_once(kind, namespace, name, copy.deepcopy(obj), opts),
        )

    async def _update_once(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        m = meta(obj)
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL ({name})"
            )
        m["name"] = name
        kv = await self.store.get(key_for(kind, namespace, name))
        if kv is None:
            if opts.subresource or not strategies.allow_create_on_update(kind):
                raise errors.not_found_error(kind.plural, kind.group, name)
            return await self.create(kind, namespace, obj, opts), True
        current = self.decode(kv)
        wanted_rv = m.get("resourceVersion")
        if wanted_rv and wanted_rv != current.obj["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, kind.group, name, errors.MODIFIED)
        return await self._write_update(kind, namespace, current, obj, opts), False

    async def _write_update(
        self,
        kind: Kind,
        namespace: str | None,
        current: Cached,
        new: dict[str, Any],
        opts: WriteOptions,
        managed_done: bool = False,
    ) -> dict[str, Any]:
        old = current.obj
        name = old["metadata"]["name"]
        new = _typed(kind, new)
        if kind.namespaced:
            new["metadata"]["namespace"] = namespace
        heavy = opts.heavy or current.heavy
        errs = await offload.run(heavy, _prepare_update, kind, new, old, opts.subresource)
        if errs and not _only_allocatable(kind, errs):
            raise _invalid(kind, name, errs)
        if opts.admit is not None:
            opts.admit(new, old)
        strategies.bump_generation(kind, new, old)
        taken = None
        claims: list[tuple[str, bytes]] = []
        releases: list[str] = []
        if _is(kind, "Service") and not opts.subresource:
            taken, errs = self.allocator.allocate(new, old, opts.dry_run)
            errs = errs or validate(kind.kind, new, old)
            if errs:
                self.allocator.undo(taken)
                raise _invalid(kind, name, errs)
            claims = self.allocator.claims(taken, new)
            releases = self.allocator.releases(old, new)
        try:
            if opts.manager and not managed_done:
                await offload.run(
                    heavy,
                    ssa.update_managed_fields,
                    _ssa_kind(kind),
                    old,
                    new,
                    opts.manager,
                    "Update",
                    now_rfc3339(),
                    opts.subresource,
                )
            unchanged = await offload.run(heavy, _same, new, old)
        except BaseException:
            if taken:
                self.allocator.undo(taken)
            raise
        if unchanged:
            if taken:
                self.allocator.undo(taken)
            return old  # no-op: no new resourceVersion
        if opts.dry_run:
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new
        m = new["metadata"]
        if (
            m.get("deletionTimestamp")
            and not m.get("finalizers")
            and strategies.finalize_now(kind, new)
        ):
            if taken:  # what the update chose goes with the object
                self.allocator.undo(taken)
            return await self._delete_now(kind, namespace, name, current.mod_revision, old)
        try:
            data, template = await offload.run(heavy, _encode_for_store, new, heavy)
            kv = await self.store.update(
                key_for(kind, namespace, name), data, current.mod_revision, claims, releases
            )
        except Claimed as e:  # another API server holds what was chosen: try again
            if taken:
                self.allocator.undo(taken)
            self.allocator.claimed_elsewhere(e.key)
            raise StaleWrite.of(kind, name) from None
        except (RevisionMismatch, KeyNotFound):
            if taken:
                self.allocator.undo(taken)
            raise StaleWrite.of(kind, name) from None
        except BaseException:
            if taken:
                self.allocator.undo(taken)
            raise
        self.allocator.release(releases)
        return self._remember(kv, new, template)

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions,
        force: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """A patch is applied to what is stored when it lands: one that raced another write
        is applied again to the new state (a resourceVersion in the patch still pins it)."""
        warned = len(opts.warnings)

        def again() -> None:
            del opts.warnings[warned:]  # the next try warns again

        return await self._guaranteed(
            (kind, namespace, name),
            lambda: self._patch_once(kind, namespace, name, patch_type, body, opts, force),
            again,
        )

    async def _patch_once(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions,
        force: bool,
    ) -> tuple[dict[str, Any], bool]:
        kv = await self.store.get(key_for(kind, namespace, name))
        if patch_type == "apply":
            if not isinstance(body, dict):
                raise errors.bad_request("the apply patch must be an object")
            return await self._apply(kind, namespace, name, kv, body, opts, force)
        if kv is None:
            raise errors.not_found_error(kind.plural, kind.group, name)
        current = self.decode(kv)
        heavy = opts.heavy or current.heavy
        patched = await offload.run(
            heavy, _patched, kind, current.obj, patch_type, body, opts.field_validation
        )
        opts.warnings.extend(patched.warnings)
        obj = patched.obj
        pm = meta(obj)
        wanted_rv = pm.get("resourceVersion")
        if wanted_rv and wanted_rv != current.obj["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, kind.group, name, errors.MODIFIED)
        pm["name"] = name
        return await self._write_update(kind, namespace, current, obj, opts), False

    async def _apply(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        kv: KeyValue | None,
        applied: dict[str, Any],
        opts: WriteOptions,
        force: bool,
    ) -> tuple[dict[str, Any], bool]:
        am = meta(applied)
        if am.get("name") and am["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({am['name']}) does not match the name on the URL ({name})"
            )
        am["name"] = name
        if not opts.manager:
            raise errors.bad_request("PATCH requests must specify a fieldManager for apply")
        current = self.decode(kv) if kv else None
        live = current.obj if current else None
        try:
            new = await offload.run(
                opts.heavy or bool(current and current.heavy),
                _apply_patch,
                _ssa_kind(kind),
                live,
                applied,
                opts.manager,
                force,
                now_rfc3339(),
            )
        except PatchError as e:
            raise patch_failed(e) from None
        except ssa.ApplyConflict as e:
            raise ApiError(
                409,
                "Conflict",
                ssa.conflict_message(e.conflicts),
                {
                    "name": name,
                    "group": kind.group,
                    "kind": kind.plural,
                    "causes": ssa.conflict_causes(e.conflicts),
                }
                if kind.group
                else {
                    "name": name,
                    "kind": kind.plural,
                    "causes": ssa.conflict_causes(e.conflicts),
                },
            ) from None
        if kv is None:
            # the apply already recorded field ownership; create() must not add an Update entry
            create_opts = WriteOptions(opts.dry_run, admit=opts.admit)
            return await self.create(kind, namespace, new, create_opts), True
        return await self._write_update(
            kind, namespace, self.decode(kv), new, opts, managed_done=True
        ), False

    async def bind(self, namespace: str, name: str, node: str, dry_run: bool) -> None:
        """pods/binding: set spec.nodeName (which a pod update may not change) once."""
        kind = BY_KIND["Pod"]
        current = await self._get_cached(kind, namespace, name)
        pod = copy.deepcopy(current.obj)
        assigned = (pod.get("spec") or {}).get("nodeName")
        if assigned:
            raise errors.conflict(
                "pods", "", name, f'pod {name} is already assigned to node "{assigned}"'
            )
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict(
                "pods", "", name, "pod is being deleted, cannot be assigned to a host"
            )
        pod.setdefault("spec", {})["nodeName"] = node
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        )
        status["conditions"] = conditions
        if dry_run:
            return
        try:
            await self.store.update(
                key_for(kind, namespace, name), _encode(pod), current.mod_revision
            )
        except (RevisionMismatch, KeyNotFound):
            raise errors.conflict("pods", "", name, errors.MODIFIED) from None

    # -- deleting ------------------------------------------------------------------------
    async def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        options: dict[str, Any],
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Returns the object and whether it is gone now (False: finalizers or grace pending).
        A delete that raced a write is tried again on the new state (its preconditions are
        checked against that)."""
        return await self._guaranteed(
            (kind, namespace, name),
            lambda: self._delete_once(kind, namespace, name, options, dry_run),
        )

    async def _delete_once(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        options: dict[str, Any],
        dry_run: bool,
    ) -> tuple[dict[str, Any], bool]:
        current = await self._get_cached(kind, namespace, name)
        obj = current.obj
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
            raise errors.conflict(
                kind.plural,
                kind.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {obj['metadata'].get('uid')}",
            )
        if (
            pre.get("resourceVersion")
            and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]
        ):
            raise errors.conflict(
                kind.plural,
                kind.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
            )
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else strategies.default_propagation(kind)
        )
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        grace = strategies.grace_period(kind, obj, options.get("gracePeriodSeconds"))
        namespace_finalizers = _is(kind, "Namespace") and (obj.get("spec") or {}).get("finalizers")
        pending = bool(namespace_finalizers) or bool(finalizers) or grace > 0
        if not pending:
            if dry_run:
                return obj, True
            return await self._delete_now(kind, namespace, name, current.mod_revision, obj), True
        # staged deletion: an update of a copy (a large object is copied off the loop)
        new = await offload.run(current.heavy, copy.deepcopy, obj)
        m = new["metadata"]
        if namespace_finalizers:
            new.setdefault("status", {})["phase"] = "Terminating"
            grace = max(grace, 0)
        if m.get("deletionTimestamp"):
            shorter = _is(kind, "Pod") and grace < int(m.get("deletionGracePeriodSeconds") or 0)
            if not shorter and finalizers == list(m.get("finalizers") or []):
                return obj, False
            if shorter:
                m["deletionTimestamp"] = strategies.deletion_time(grace)
        else:
            m["deletionTimestamp"] = strategies.deletion_time(grace)
        m["deletionGracePeriodSeconds"] = grace
        if finalizers:
            m["finalizers"] = finalizers
        if dry_run:
            return new, False
        try:
            kv = await self.store.update(
                key_for(kind, namespace, name), _encode(new), current.mod_revision
            )
        except (RevisionMismatch, KeyNotFound):
            raise StaleWrite.of(kind, name) from None
        return self._remember(kv, new), False

    async def _delete_now(
        self, kind: Kind, namespace: str | None, name: str, mod_revision: int, obj: dict[str, Any]
    ) -> dict[str, Any]:
        releases = self.allocator.releases(obj, None) if _is(kind, "Service") else []
        try:
            kv = await self.store.delete(key_for(kind, namespace, name), mod_revision, releases)
        except KeyNotFound:
            raise errors.not_found_error(kind.plural, kind.group, name) from None
        except RevisionMismatch:
            raise StaleWrite.of(kind, name) from None
        self._cache.pop(kv.key, None)
        self.allocator.release(releases)
        return await offload.run(len(kv.value) > offload.HEAVY_BYTES, self.decode_uncached, kv)

    async def delete_collection(
        self,
        kind: Kind,
        namespace: str | None,
        predicate: Predicate | None,
        options: dict[str, Any],
        dry_run: bool = False,
    ) -> list[dict[str, Any]]:
        items, _, _ = await self.list(kind, namespace, predicate)
        out = []
        for cached in items:
            m = cached.obj["metadata"]
            try:
                obj, _ = await self.delete(kind, m.get("namespace"), m["name"], options, dry_run)
                out.append(obj)
            except ApiError as e:
                if e.code != 404:
                    raise
        return out

    # -- watching ------------------------------------------------------------------------
    async def watch(
        self,
        kind: Kind,
        namespace: str | None,
        after_revision: int,
        predicate: Predicate | None,
    ) -> RegistryWatch:
        """(type, object) events after a revision. Raises Compacted before the first event."""
        w = await self.store.watch(prefix_for(kind, namespace), after_revision)
        return RegistryWatch(w, self._events(w, predicate))

    async def _events(
        self, w: Any, predicate: Predicate | None
    ) -> AsyncIterator[tuple[str, Cached]]:
        try:
            async for ev in w:
                if ev.type == "DELETE":
                    gone = self._decode_deleted(ev.kv)
                    if predicate is None or predicate(gone.obj):
                        yield "DELETED", gone
                    continue
                cached = self.decode(ev.kv)
                if predicate is None:
                    yield ("ADDED" if ev.created else "MODIFIED"), cached
                    continue
                now_match = predicate(cached.obj)
                was_match = (
                    not ev.created
                    and ev.prev is not None
                    and predicate(self.decode_uncached(ev.prev))
                )
                if now_match and was_match:
                    yield "MODIFIED", cached
                elif now_match:
                    yield "ADDED", cached
                elif was_match:
                    yield "DELETED", cached
        except Compacted as e:  # the store lost the revision while re-creating its watch
            raise errors.gone(
                f"too old resource version: {e.requested} ({e.compacted + 1})"
            ) from None
        finally:
            w.close()
            if getattr(w, "overflowed", False):
                raise errors.gone("watch too slow: event buffer overflowed")

    def _decode_deleted(self, kv: KeyValue) -> Cached:
        """Deletions are decoded once for all watchers (a small LRU keyed by revision, bounded
        in count and in bytes so a burst of large deletions is not kept)."""
        hit = self._deleted.get(kv.mod_revision)
        if hit is None:
            hit = Cached(kv.mod_revision, self.decode_uncached(kv), size=len(kv.value))
            self._deleted[kv.mod_revision] = hit
            self._deleted_bytes += hit.size
            while self._deleted and (
                len(self._deleted) > DELETED_CACHE_ITEMS
                or self._deleted_bytes > DELETED_CACHE_BYTES
            ):
                _, old = self._deleted.popitem(last=False)
                self._deleted_bytes -= old.size
        return hit

    # -- startup -------------------------------------------------------------------------
    async def restore_allocations(self) -> int:
        """Mark every stored Service's ClusterIPs and NodePorts used; returns the revision
        read at."""
        items, rev, _ = await self.list(BY_KIND["Service"], None)
        for cached in items:
            self.allocator.restore(cached.obj)
        await self._repair_claims([c.obj for c in items], rev)
        return rev

    async def _repair_claims(self, services: list[dict[str, Any]], revision: int) -> None:
        """Give Services stored without claims theirs (a store written before claims), and
        drop claims without a Service: claims are written with their Service, so one alone
        at a revision is a leftover."""
        want: dict[str, bytes] = {}
        for svc in services:
            want.update(self.allocator.held(svc))
        have: dict[str, KeyValue] = {}
        for prefix in (IP_CLAIMS, NODE_PORT_CLAIMS):
            kvs, _ = await self.store.range(prefix, revision)
            have.update((kv.key, kv) for kv in kvs)
        for key in sorted(want.keys() - have.keys()):
            with contextlib.suppress(KeyExists):
                await self.store.create(key, want[key])
        for key in sorted(have.keys() - want.keys()):
            with contextlib.suppress(KeyNotFound, RevisionMismatch):
                await self.store.delete(key, have[key].mod_revision)

    async def follow_namespaces(self) -> None:
        """Keep which namespaces exist, and which are terminating, from a watch (for the
        namespace check of every create)."""
        kind = BY_KIND["Namespace"]
        while True:
            try:
                items, rev, _ = await self.list(kind, None)
                self._namespaces = {
                    c.obj["metadata"]["name"]: bool(c.obj["metadata"].get("deletionTimestamp"))
                    for c in items
                }
                async for type_, cached in await self.watch(kind, None, rev, None):
                    m = cached.obj["metadata"]
                    if type_ == "DELETED":
                        self._namespaces.pop(m["name"], None)
                    else:
                        self._namespaces[m["name"]] = bool(m.get("deletionTimestamp"))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # compacted, etcd away: relist
                log.info("following namespaces: relisting", extra={"kv": {"error": str(e)}})
            self._namespaces = {}  # unknown until relisted: the store is read meanwhile
            await asyncio.sleep(1.0)

    async def follow_allocations(self, after: int) -> None:
        """With other API servers on the same store: keep this one's allocator in step with
        the Services they write (what they take is used here too, what they free is free).
        Relists when the watch is lost."""
        prefix = prefix_for(BY_KIND["Service"], None)
        while True:
            try:
                async for ev in await self.store.watch(prefix, after):
                    after = ev.kv.mod_revision
                    prev = self.decode_uncached(ev.prev) if ev.prev is not None else None
                    new = None if ev.type == "DELETE" else self.decode_uncached(ev.kv)
                    if prev is not None:
                        self.allocator.release(self.allocator.releases(prev, new))
                    if new is not None:
                        self.allocator.restore(new)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # compacted, etcd away: start over from a fresh list
                log.info("following allocations: relisting", extra={"kv": {"error": str(e)}})
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    after = await self.restore_allocations()

    def count(self) -> int:
        return len(self._cache)

    def forget(self, prefixes: tuple[str, ...]) -> None:
        """Drop decoded objects under these key prefixes (their kind's schema changed)."""
        for key in [k for k in self._cache if k.startswith(prefixes)]:
            del self._cache[key]


@dataclass
class RegistryWatch:
    """A watch's (type, object) events, and how far its store watch has got."""

    store_watch: Any
    events: AsyncIterator[tuple[str, Cached]]

    def __aiter__(self) -> AsyncIterator[tuple[str, Cached]]:
        return self.events

    @property
    def progress_revision(self) -> int:
        return int(self.store_watch.progress_revision)


def _snapshot(obj: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Fresh copies of obj as it is now: through JSON (7x cheaper than deepcopy) unless it
    holds what JSON cannot."""
    try:
        data = orjson.dumps(obj)
    except TypeError:
        frozen = copy.deepcopy(obj)
        return lambda: copy.deepcopy(frozen)
    return lambda: orjson.loads(data)  # type: ignore[no-any-return]


def _is(kind: Kind, name: str) -> bool:
    """Whether kind is the built-in kind `name` (a custom resource may reuse the name)."""
    return kind.kind == name and not isinstance(kind, CustomKind)


def _ssa_kind(kind: Kind) -> str:
    """The type name server-side apply knows a kind by (custom kinds by group and kind)."""
    return crd_ssa.type_name(kind) if isinstance(kind, CustomKind) else kind.kind


def _typed(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """apiVersion and kind first, as upstream serializes them; custom objects in the version
    they are stored in."""
    api_version = kind.storage_api_version if isinstance(kind, CustomKind) else kind.api_version
    out = {"apiVersion": api_version, "kind": kind.kind}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


# Reading stored objects


_reported: OrderedDict[tuple[str, int], None] = OrderedDict()


def read_stored(kv: KeyValue) -> dict[str, Any]:
    """A stored value as an object of its kind. Everything the API writes decodes as it is;
    a value written around the API (by another tool, an older version, a hand edit of the
    database) that has values of the wrong type, NaN, or is not JSON at all is served without
    what does not decode, with its name and namespace from its key, so that it can still be
    read, fixed and deleted and never breaks a reader (upstream could not decode it at all).
    One warning per key and revision says what was left out."""
    gr, rest = split_key(kv.key)
    kind = catalog.storage_kind(gr)
    dropped: list[str] = []
    try:
        raw: Any = orjson.loads(kv.value)
    except orjson.JSONDecodeError:
        try:  # NaN, Infinity, integers beyond 64 bits: what the json module still reads
            raw = json.loads(kv.value)
        except (ValueError, RecursionError) as e:
            raw, dropped = {}, [f"(the object): not JSON: {' '.join(str(e).split())}"]
    if isinstance(kind, CustomKind):
        raw, more = custom.read(kind, raw)
        dropped += more
    elif kind is not None:
        raw, more = typed.repair(kind.api_version, kind.kind, raw)
        dropped += more
    obj = raw if isinstance(raw, dict) else {}
    if kind is not None and (
        obj.get("apiVersion") != kind.api_version or obj.get("kind") != kind.kind
    ):
        obj = _typed(kind, obj)
    m = meta(obj)
    name = rest[-1] if rest else ""
    if m.get("name") != name:
        m["name"] = name
    if kind is not None and kind.namespaced and len(rest) == 2 and m.get("namespace") != rest[0]:
        m["namespace"] = rest[0]
    m["resourceVersion"] = str(kv.mod_revision)
    if dropped and (kv.key, kv.mod_revision) not in _reported:
        _reported[(kv.key, kv.mod_revision)] = None
        if len(_reported) > 4096:
            _reported.popitem(last=False)
        log.warning(
            "stored object has values that do not decode; they are left out",
            extra={"kv": {"key": kv.key, "revision": kv.mod_revision, "left_out": dropped[:10]}},
        )
    return obj


# Pure steps of a write, run on the loop or (for large objects) in offload's worker.


def _prepare_create(kind: Kind, obj: dict[str, Any]) -> list[FieldError]:
    strategies.prepare_for_create(kind, obj)
    if isinstance(kind, CustomKind):
        custom.apply_defaults(kind, obj)
        return custom.validate(kind, obj)
    apply_defaults(kind.kind, obj)
    return validate(kind.kind, obj)


def _prepare_update(
    kind: Kind, new: dict[str, Any], old: dict[str, Any], subresource: str
) -> list[FieldError]:
    strategies.prepare_for_update(kind, new, old, subresource)
    if isinstance(kind, CustomKind):
        custom.apply_defaults(kind, new)
        return custom.validate(kind, new, old)
    if _is(kind, "Service") and not subresource:
        strategies.service_update_fixups(new, old)
    apply_defaults(kind.kind, new)
    if subresource == "status":
        return validate_status_update(kind.kind, new, old)
    return validate(kind.kind, new, old)


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    return without_volatile(new) == without_volatile(old)


def _apply_patch(
    kind: str, live: dict[str, Any] | None, applied: dict[str, Any], *args: Any
) -> dict[str, Any]:
    return ssa.apply_patch(kind, copy.deepcopy(live) if live else None, applied, *args)


def _encoded(cached: Cached) -> bytes:
    return cached.json


_RV_PLACEHOLDER = ("rv-" + uuid.uuid4().hex).encode()


def _encode_for_store(obj: dict[str, Any], template: bool) -> tuple[bytes, bytes | None]:
    """The stored bytes, and (for large objects) the served JSON with a placeholder for the
    resourceVersion the write will get."""
    data = _encode(obj)
    if not template:
        return data, None
    m = obj["metadata"]
    served = dict(obj)
    served["metadata"] = {**m, "resourceVersion": _RV_PLACEHOLDER.decode()}
    return data, dumps(served)


@dataclass
class _Patched:
    obj: dict[str, Any]
    warnings: list[str]


def _patched(
    kind: Kind, current: dict[str, Any], patch_type: str, body: Any, validation: str
) -> _Patched:
    """Apply a json, merge or strategic patch and decode the result into the kind's schema,
    with upstream's errors (422 `patch: Invalid value` for a result of the wrong type)."""
    original = copy.deepcopy(current)
    try:
        if patch_type == "json":
            result = json_patch(original, body)
        elif not isinstance(body, dict):
            raise PatchError("patch body must be a JSON object")
        elif patch_type == "merge":
            result = json_merge_patch(original, body)
        else:
            result = strategic_merge_patch(kind.kind, original, body)
    except PatchError as e:
        raise patch_failed(e) from None
    if not isinstance(result, dict):
        raise errors.bad_request("patch did not produce an object")
    if isinstance(kind, CustomKind):
        return _patched_custom(kind, result, validation)
    result["apiVersion"], result["kind"] = kind.api_version, kind.kind
    try:
        decoded = typed.decode(kind.api_version, kind.kind, result)
    except typed.TypeMismatch as e:
        shown = go_format(body) if patch_type == "strategic" else dumps(result).decode()
        raise errors.invalid_error("", "", "", [errors.invalid("patch", shown, str(e))]) from None
    strict = decoded.strict_errors()
    if strict and validation == "Strict":
        raise errors.bad_request("strict decoding error: " + ", ".join(strict))
    return _Patched(decoded.obj, strict if validation == "Warn" else [])


def _patched_custom(kind: CustomKind, result: dict[str, Any], validation: str) -> _Patched:
    result["apiVersion"], result["kind"] = kind.storage_api_version, kind.kind
    try:
        obj, strict = custom.decode(kind, result)
    except typed.TypeMismatch as e:
        raise errors.invalid_error(
            "", "", "", [errors.invalid("patch", dumps(result).decode(), str(e))]
        ) from None
    if strict and validation == "Strict":
        raise errors.bad_request("strict decoding error: " + ", ".join(strict))
    return _Patched(obj, strict if validation == "Warn" else [])


def _encode(obj: dict[str, Any]) -> bytes:
    m = obj.get("metadata") or {}
    if "resourceVersion" in m:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in m.items() if k != "resourceVersion"}
    return dumps(obj)


def _only_allocatable(kind: Kind, errs: list[FieldError]) -> bool:
    """Errors the Service allocator resolves (upstream allocates before validating)."""
    return _is(kind, "Service") and all(
        e.type == "Required" and e.field == "spec.healthCheckNodePort" for e in errs
    )


def _invalid(kind: Kind, name: str, errs: list[FieldError]) -> ApiError:
    return errors.invalid_error(kind.kind, kind.group, name, errs)


LATEST = -1  # a continue token's resourceVersion for "at the newest revision" (upstream's)


def _make_continue(rev: int, last: dict[str, Any], kind: Kind) -> str:
    m = last["metadata"]
    return _encode_continue(rev, key_for(kind, m.get("namespace"), m["name"]))


def _encode_continue(rev: int, start_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": start_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_continue(token: str) -> tuple[int, str]:
    """The revision to read at (0: the newest) and the key to start after."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rev, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        rev, start = 0, ""
    if rev == LATEST:
        return 0, start
    if rev <= 0:
        raise errors.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"  # noqa: E501 (upstream wording)
        )
    return rev, start
