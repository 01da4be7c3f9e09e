"""HTTP handlers for the resource API: routing, verbs, Tables, watch streams."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import random
import socket
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from kubesvc.api import bodies, catalog, errors, tables
from kubesvc.api.apply import default_manager
from kubesvc.api.crd import columns as custom_columns
from kubesvc.api.crd import objects as custom
from kubesvc.api.crd.kinds import CustomKind
from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND, Kind
from kubesvc.api.patch import PatchError, json_merge_patch, json_patch, patch_failed
from kubesvc.api.selectors import make_filter, selector_from_match_labels
from kubesvc.apiserver import admission, negotiation, offload
from kubesvc.apiserver.decoding import (
    check_patch_body,
    decode_apply,
    decode_as,
    decode_body,
    decode_object,
    field_validation,
    read_body,
)
from kubesvc.apiserver.objects import dumps
from kubesvc.apiserver.podstreams import PROXY_SUBRESOURCES, PodProxy
from kubesvc.apiserver.proxy_handler import ResourceProxy
from kubesvc.apiserver.proxy_location import split_proxy_path
from kubesvc.apiserver.registry import Cached, Registry, WriteOptions
from kubesvc.store.base import Compacted

if TYPE_CHECKING:
    from kubesvc.apiserver.authz import RbacAuthorizer
    from kubesvc.apiserver.tokens import TokenIssuer

log = logging.getLogger("kubesvc.apiserver")

MAX_WARNINGS = 100  # as upstream's strict decoding stops collecting
BOOKMARK_INTERVAL = 10.0  # seconds between watch bookmarks when a client asks for them
RETURNS_DELETED_OBJECT = {"Pod", "Service"}
WRITE_BATCH = 256  # watch events joined into one write when a client falls behind
MAX_WATCH_SECONDS = 24 * 3600
YIELD_EVERY = 1000  # rows or objects a long list handles before letting other requests in
# A watcher that has this many events waiting, and has not taken any for WATCH_STALL seconds,
# is closed (as upstream's cacher terminates unresponsive watchers): its client re-lists
# instead of the server buffering without bound.
WATCH_BACKLOG = 1024
WATCH_STALL = 5.0


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    subresource: str
    legacy_watch: bool = False


def parse_path(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        return None
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and catalog.namespaced(group, rest[2]):
        namespace, rest = rest[1], rest[2:]
    kind = catalog.lookup(group, version, rest[0])
    if kind is None or len(rest) > 3:
        return None
    if namespace is not None and not kind.namespaced:
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else ""
    if (
        sub
        and sub not in kind.subresources
        and not (kind.kind == "Namespace" and sub == "finalize")
    ):
        return None
    return Target(kind, namespace, name, sub, legacy_watch)


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=dumps(obj), status=status, content_type="application/json")
    add_warnings(resp, warnings or [])
    return resp


def status_response(err: ApiError) -> web.Response:
    """A Status, ending with the newline upstream's JSON encoder writes."""
    return web.Response(
        body=dumps(err.status()) + b"\n",
        status=err.code,
        content_type="application/json",
        headers=err.headers or None,
    )


def add_warnings(resp: web.StreamResponse, warnings: list[str]) -> None:
    """`Warning: 299 - "text"` headers; the text is escaped as a JSON string, so quotes,
    backslashes and control characters a client put in a field name cannot break the header."""
    for w in warnings[:MAX_WARNINGS]:
        resp.headers.add("Warning", "299 - " + warning_text(w))


def warning_text(text: str) -> str:
    """`text` quoted for a header as Go's strconv.Quote does for upstream's warnings: a JSON
    string in which whatever is not printable (DEL, C1 controls, line separators, as well as
    what JSON escapes anyway) is a `\\u` escape, so no header writer refuses it."""
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in quoted)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


class ResourceHandler:
    def __init__(
        self,
        registry: Registry,
        pod_proxy: PodProxy | None = None,
        resource_proxy: ResourceProxy | None = None,
        token_issuer: TokenIssuer | None = None,
        authorizer: RbacAuthorizer | None = None,
    ) -> None:
        self.registry = registry
        self.authorizer = authorizer  # for the escalation check of RBAC writes
        self.token_issuer = token_issuer
        self.pod_proxy = pod_proxy or PodProxy(registry)
        self.resource_proxy = resource_proxy or ResourceProxy(registry)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        proxied = split_proxy_path(request.raw_path)
        if proxied is not None:
            prefix, tail = proxied
            target = parse_path(unquote(prefix))
            if target is not None and target.subresource == "proxy" and target.name:
                return await self.resource_proxy.handle(request, target, prefix, tail)
        target = parse_path(request.path)
        if target is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        method = request.method
        if target.subresource == "proxy":
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if target.subresource in PROXY_SUBRESOURCES and target.name:
            return await self.pod_proxy.handle(request, target)
        if target.subresource == "token":
            if method != "POST" or self.token_issuer is None:
                raise errors.method_not_allowed(
                    "the server does not allow this method on the requested resource"
                )
            return await self.token_issuer.token_request(
                request, target.namespace or "", target.name or ""
            )
        if method == "GET":
            if target.name and not target.legacy_watch:
                return await self._get(request, target)
            if target.legacy_watch or _flag(request, "watch"):
                return await self._watch(request, target)
            return await self._list(request, target)
        if method == "POST":
            if target.name and target.subresource == "binding":
                return await self._bind(request, target)
            if target.name:
                raise errors.method_not_allowed(
                    "the server does not allow this method on the requested resource"
                )
            return await self._create(request, target)
        if method == "PUT" and target.name:
            return await self._update(request, target)
        if method == "PATCH" and target.name:
            return await self._patch(request, target)
        if method == "DELETE":
            if target.name:
                return await self._delete(request, target)
            if target.kind.namespaced and target.namespace is None:
                # upstream serves only list and watch across all namespaces
                raise errors.method_not_allowed(
                    "the server does not allow this method on the requested resource"
                )
            return await self._delete_collection(request, target)
        raise errors.method_not_allowed(
            "the server does not allow this method on the requested resource"
        )

    # -- reads ---------------------------------------------------------------------------
    async def _get(self, request: web.Request, t: Target) -> web.Response:
        if t.subresource == "scale":
            obj = await self.registry.get(t.kind, t.namespace, t.name or "")
            return json_response(to_scale(t.kind, obj))
        form, version = negotiation.wanted_form(request.headers.get("Accept", ""))
        if form == negotiation.TABLE:
            obj = await self.registry.get(t.kind, t.namespace, t.name or "")
            return json_response(
                self._table(
                    request, t.kind, [obj], version, str(obj["metadata"]["resourceVersion"])
                )
            )
        cached = await self.registry.get_cached(t.kind, t.namespace, t.name or "")
        return web.Response(body=converted(t.kind, cached.json), content_type="application/json")

    async def _list(self, request: web.Request, t: Target) -> web.Response:
        predicate = make_filter(
            t.kind.kind,
            request.query.get("labelSelector", ""),
            request.query.get("fieldSelector", ""),
        )
        limit = max(_int_param(request, "limit"), 0)  # upstream: limit <= 0 means all
        items, rev, cont = await self.registry.list(
            t.kind, t.namespace, predicate, limit, request.query.get("continue", "")
        )
        form, version = negotiation.wanted_form(request.headers.get("Accept", ""))
        if form == negotiation.TABLE:
            body = await self._table_list(request, t.kind, items, version, str(rev), cont)
            return web.Response(body=body, content_type="application/json")
        if form == negotiation.PARTIAL:
            body = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(rev), **({"continue": cont} if cont else {})},
                "items": [partial(c.obj) for c in items],
            }
            return json_response(body)
        return list_response(t.kind, items, rev, cont)

    def _table(
        self, request: web.Request, kind: Kind, objs: list[dict[str, Any]], version: str, rv: str
    ) -> dict[str, Any]:
        include = request.query.get("includeObject", "Metadata")
        now = datetime.now(UTC)
        rows = []
        for obj in objs:
            row: dict[str, Any] = {"cells": _cells(kind, obj, now)}
            if include == "Object":
                row["object"] = obj
            elif include != "None":
                row["object"] = partial(obj)
            rows.append(row)
        return {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{version or 'v1'}",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": _columns(kind),
            "rows": rows,
        }

    async def _table_list(
        self,
        request: web.Request,
        kind: Kind,
        items: list[Cached],
        version: str,
        rv: str,
        cont: str,
    ) -> bytes:
        """A Table for a list, assembled from each object's cached metadata JSON: lists of
        thousands of rows spend their time in cells, not in re-encoding metadata. Long lists
        let other requests in every YIELD_EVERY rows."""
        include = request.query.get("includeObject", "Metadata")
        now = datetime.now(UTC)
        rows = []
        for i, c in enumerate(items):
            if i and not i % YIELD_EVERY:
                await asyncio.sleep(0)
            cells = dumps(_cells(kind, c.obj, now))
            if include == "Object":
                rows.append(b'{"cells":' + cells + b',"object":' + c.json + b"}")
            elif include == "None":
                rows.append(b'{"cells":' + cells + b"}")
            else:
                rows.append(b'{"cells":' + cells + b',"object":' + c.partial_json + b"}")
        head = {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{version or 'v1'}",
            "metadata": {"resourceVersion": rv, **({"continue": cont} if cont else {})},
            "columnDefinitions": _columns(kind),
        }
        return dumps(head)[:-1] + b',"rows":[' + b",".join(rows) + b"]}"

    # -- writes --------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bodies.Parsed:
        raw = await read_body(request)
        ctype = request.headers.get("Content-Type", "application/json")
        return await offload.run(len(raw) > offload.HEAVY_BYTES, decode_body, raw, ctype)

    def _options(self, request: web.Request, t: Target) -> WriteOptions:
        manager = request.query.get("fieldManager", "")
        if len(manager) > 128:
            raise errors.bad_request("fieldManager: Too long: may not be more than 128 bytes")
        if not manager:
            manager = default_manager(request.headers.get("User-Agent", ""))
        return WriteOptions(
            _dry_run(request),
            manager,
            t.subresource,
            heavy=_heavy(request),
            admit=admission.for_write(
                request, t.kind, t.namespace, t.name, t.subresource, self.authorizer
            ),
        )

    async def _decoded_object(
        self, request: web.Request, t: Target
    ) -> tuple[dict[str, Any], list[str]]:
        """The body decoded into the kind's schema, and the field-validation warnings."""
        mode = field_validation(request)
        parsed = await self._body(request)
        return await offload.run(_heavy(request), decode_object, t.kind, parsed, mode)

    async def _create(self, request: web.Request, t: Target) -> web.Response:
        obj, warnings = await self._decoded_object(request, t)
        body_ns = (obj.get("metadata") or {}).get("namespace")
        if t.kind.namespaced:
            if not t.namespace:
                raise errors.method_not_allowed(
                    "the server does not allow this method on the requested resource"
                )
            if body_ns and body_ns != t.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"  # noqa: E501 (upstream wording)
                )
        opts = self._options(request, t)
        created = await self.registry.create(t.kind, t.namespace, obj, opts)
        return await object_response(converted_obj(t.kind, created), 201, warnings, opts.heavy)

    async def _update(self, request: web.Request, t: Target) -> web.Response:
        if t.subresource == "scale":
            return await self._update_scale(request, t, await self._body(request))
        obj, warnings = await self._decoded_object(request, t)
        body_ns = (obj.get("metadata") or {}).get("namespace")
        if t.kind.namespaced and body_ns and body_ns != t.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"  # noqa: E501 (upstream wording)
            )
        opts = self._options(request, t)
        if t.subresource == "finalize":
            opts.subresource = ""
        stored, created = await self.registry.update(t.kind, t.namespace, t.name or "", obj, opts)
        return await object_response(
            converted_obj(t.kind, stored), 201 if created else 200, warnings, opts.heavy
        )

    async def _patch(self, request: web.Request, t: Target) -> web.Response:
        ctype = negotiation.content_type(request.headers.get("Content-Type", ""))
        patch_type = negotiation.PATCH_TYPES.get(ctype)
        if isinstance(t.kind, CustomKind) and patch_type in ("strategic", "apply-cbor"):
            # upstream: custom resources have no Go structs to take patch strategies from
            raise negotiation.unsupported_media(
                ctype,
                [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ],
            )
        if patch_type is None or patch_type == "apply-cbor":
            raise negotiation.unsupported_media(
                ctype,
                [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                    "application/strategic-merge-patch+json",
                ],
            )
        mode = field_validation(request)
        force = _flag(request, "force")
        if force and patch_type != "apply":
            raise errors.bad_request(
                "force: Invalid value: true: may not be specified for non-apply patch"
            )
        if patch_type == "apply" and not request.query.get("fieldManager"):
            raise errors.bad_request("PATCH requests must specify a fieldManager for apply")
        parsed = await self._body(request)
        body = parsed.value
        if t.subresource == "scale":
            return await self._patch_scale(request, t, patch_type, body)
        opts = self._options(request, t)
        opts.field_validation = mode
        if patch_type == "apply":
            body = await offload.run(opts.heavy, decode_apply, t.kind, parsed)
        else:
            check_patch_body(patch_type, body)
            # copies can grow a small object up to MAX_COPY_BYTES: work of a large body
            opts.heavy = opts.heavy or (
                patch_type == "json"
                and isinstance(body, list)
                and any(isinstance(op, dict) and op.get("op") == "copy" for op in body)
            )
        stored, created = await self.registry.patch(
            t.kind, t.namespace, t.name or "", patch_type, body, opts, force
        )
        return await object_response(
            converted_obj(t.kind, stored), 201 if created else 200, opts.warnings, opts.heavy
        )

    async def _bind(self, request: web.Request, t: Target) -> web.Response:
        binding = decode_as("v1", "Binding", await self._body(request), "Ignore").obj
        node = ((binding.get("target") or {}).get("name")) or ""
        if not node:
            raise errors.invalid_error(
                "Binding", "", t.name or "", [errors.required("target.name")]
            )
        await self.registry.bind(t.namespace or "", t.name or "", node, _dry_run(request))
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return json_response({**status, "code": 201}, 201)

    async def _update_scale(self, request: web.Request, t: Target, parsed: Any) -> web.Response:
        scale = decode_as("autoscaling/v1", "Scale", parsed, "Ignore").obj
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        return await self._set_replicas(
            request, t, replicas, (scale.get("metadata") or {}).get("resourceVersion")
        )

    async def _patch_scale(
        self, request: web.Request, t: Target, patch_type: str, body: Any
    ) -> web.Response:
        obj = await self.registry.get(t.kind, t.namespace, t.name or "")
        scale = to_scale(t.kind, obj)
        try:
            if patch_type == "json":
                patched = json_patch(scale, body)
            elif isinstance(body, dict):
                patched = json_merge_patch(scale, body)
            else:
                raise PatchError("patch body must be a JSON object")
        except PatchError as e:
            raise patch_failed(e) from None
        return await self._set_replicas(
            request, t, (patched.get("spec") or {}).get("replicas", 0), None
        )

    async def _set_replicas(
        self, request: web.Request, t: Target, replicas: Any, rv: str | None
    ) -> web.Response:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            replicas = replicas if _is_json_scalar(replicas) else str(replicas)
            raise errors.invalid_error(
                "Scale",
                "autoscaling",
                t.name or "",
                [errors.invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
            )
        obj = copy.deepcopy(await self.registry.get(t.kind, t.namespace, t.name or ""))
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(t.kind.plural, t.kind.group, t.name or "", errors.MODIFIED)
        if isinstance(t.kind, CustomKind) and t.kind.scale is not None:
            custom.set_path(obj, t.kind.scale[0], replicas)
        else:
            obj.setdefault("spec", {})["replicas"] = replicas
        opts = self._options(request, t)
        opts.subresource = ""
        stored, _ = await self.registry.update(t.kind, t.namespace, t.name or "", obj, opts)
        return json_response(to_scale(t.kind, stored))

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        raw = await read_body(request)
        if raw.strip():
            parsed = decode_body(raw, request.headers.get("Content-Type", "application/json"))
            options.update(decode_as("v1", "DeleteOptions", parsed, "Ignore").obj)
        for name in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if name in request.query:
                value: Any = request.query[name]
                if name == "gracePeriodSeconds":
                    value = _int_param(request, name)
                elif name == "orphanDependents":
                    value = value.lower() == "true"
                options[name] = value
        policy = options.get("propagationPolicy")
        if policy and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid_error(
                "DeleteOptions",
                "",
                "",
                [
                    errors.not_supported(
                        "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"]
                    )
                ],
            )
        return options

    async def _delete(self, request: web.Request, t: Target) -> web.Response:
        options = await self._delete_options(request)
        admit = admission.for_write(
            request, t.kind, t.namespace, t.name, t.subresource, self.authorizer
        )
        if admit is not None:
            admit(None, await self.registry.get(t.kind, t.namespace, t.name or ""))
        obj, gone = await self.registry.delete(
            t.kind, t.namespace, t.name or "", options, _dry_run(request)
        )
        if gone and (isinstance(t.kind, CustomKind) or t.kind.kind not in RETURNS_DELETED_OBJECT):
            details: dict[str, Any] = {"name": t.name}
            if t.kind.group:
                details["group"] = t.kind.group
            details["kind"] = t.kind.plural
            details["uid"] = obj["metadata"].get("uid", "")
            return json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
            )
        return json_response(converted_obj(t.kind, obj))

    async def _delete_collection(self, request: web.Request, t: Target) -> web.Response:
        options = await self._delete_options(request)
        predicate = make_filter(
            t.kind.kind,
            request.query.get("labelSelector", ""),
            request.query.get("fieldSelector", ""),
        )
        deleted = await self.registry.delete_collection(
            t.kind, t.namespace, predicate, options, _dry_run(request)
        )
        items = [Cached(0, o) for o in deleted]
        return list_response(t.kind, items, self.registry.store.revision, "")

    # -- watch ---------------------------------------------------------------------------
    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        kind = t.kind
        filters = make_filter(
            kind.kind,
            request.query.get("labelSelector", ""),
            request.query.get("fieldSelector", ""),
        )
        if t.name:
            by_name = make_filter(kind.kind, "", f"metadata.name={t.name}")
            predicate = by_name if filters is None else (lambda o: by_name(o) and filters(o))  # type: ignore[misc]
        else:
            predicate = filters
        rv = request.query.get("resourceVersion", "")
        send_initial = request.query.get("sendInitialEvents", "").lower() == "true"
        bookmarks = _flag(request, "allowWatchBookmarks")
        timeout = min(max(_int_param(request, "timeoutSeconds"), 0), MAX_WATCH_SECONDS) or (
            random.randint(1800, 3600)
        )
        form, version = negotiation.wanted_form(request.headers.get("Accept", ""))
        initial: list[Cached] = []
        if rv in ("", "0") or send_initial:
            items, after, _ = await self.registry.list(kind, t.namespace, predicate)
            initial = items
        elif rv.isascii() and rv.isdigit():
            after = int(rv)
        else:
            raise errors.bad_request(
                f'invalid resource version: strconv.ParseUint: parsing "{rv}": invalid syntax'
            )
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        writer = _EventWriter(resp, self, request, kind, form, version)
        try:
            events = await self.registry.watch(kind, t.namespace, after, predicate)
        except Compacted as e:
            await writer.error(
                ApiError(410, "Expired", f"too old resource version: {rv} ({e.compacted + 1})")
            )
            return resp
        for i in range(0, len(initial), WRITE_BATCH):
            await writer.send_cached([("ADDED", c) for c in initial[i : i + WRITE_BATCH]])
        if send_initial:
            await writer.bookmark(str(after), initial_end=True)
        await _pump(events, writer, timeout, bookmarks, self.registry)
        return resp


class _EventWriter:
    def __init__(
        self,
        resp: web.StreamResponse,
        handler: ResourceHandler,
        request: web.Request,
        kind: Kind,
        form: str,
        version: str,
    ) -> None:
        self.resp, self.handler, self.request = resp, handler, request
        self.kind, self.form, self.version = kind, form, version
        self.first = True

    def encode(self, type_: str, obj: dict[str, Any], raw: bytes | None = None) -> bytes:
        """One watch event line; `raw` is the object's cached JSON, shared by all watchers."""
        if self.form == negotiation.TABLE:
            rv = str(obj["metadata"].get("resourceVersion", ""))
            table = self.handler._table(self.request, self.kind, [obj], self.version, rv)
            if not self.first:
                table["columnDefinitions"] = None
            self.first = False
            raw = dumps(table)
        elif self.form == negotiation.PARTIAL:
            raw = dumps(partial(obj))
        elif raw is None:
            raw = dumps(obj)
        raw = converted(self.kind, raw)
        return b'{"type":"' + type_.encode() + b'","object":' + raw + b"}\n"

    async def send(self, type_: str, obj: dict[str, Any]) -> None:
        await self.resp.write(self.encode(type_, obj))

    async def send_cached(self, events: list[tuple[str, Cached]]) -> None:
        await self.resp.write(b"".join(self.encode(t, c.obj, c.json) for t, c in events))

    async def bookmark(self, rv: str, initial_end: bool = False) -> None:
        m: dict[str, Any] = {"resourceVersion": rv}
        if initial_end:
            m["annotations"] = {"k8s.io/initial-events-end": "true"}
        await self.send(
            "BOOKMARK", {"kind": self.kind.kind, "apiVersion": self.kind.api_version, "metadata": m}
        )

    def abort(self) -> None:
        """Drop the connection: the client re-lists, the server frees its buffers."""
        transport = self.request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # a reset, not a FIN after megabytes the client will never read: the kernel
            # frees the send queue too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def error(self, err: ApiError) -> None:
        await self.resp.write(dumps({"type": "ERROR", "object": err.status()}) + b"\n")


async def _pump(
    events: Any, writer: _EventWriter, timeout: float, bookmarks: bool, registry: Registry
) -> None:
    """Copy store events to the client until the timeout, sending bookmarks when idle.
    Events that are already waiting go out in one write. A client that stops reading is
    disconnected once WATCH_BACKLOG events wait for it for WATCH_STALL seconds."""
    queue: asyncio.Queue[tuple[str, Cached] | BaseException | None] = asyncio.Queue(WATCH_BACKLOG)

    async def reader() -> None:
        try:
            async for item in events:
                if not queue.full():
                    queue.put_nowait(item)
                    continue
                try:
                    await asyncio.wait_for(queue.put(item), WATCH_STALL)
                except TimeoutError:
                    log.warning(
                        "closing a watch that stopped reading",
                        extra={"kv": {"kind": writer.kind.plural, "backlog": queue.qsize()}},
                    )
                    writer.abort()
                    return
            await queue.put(None)
        except ApiError as e:
            await queue.put(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # keep the stream's end explicit
            log.exception("watch failed")
            await queue.put(e)

    task = asyncio.create_task(reader())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return
            wait = min(left, BOOKMARK_INTERVAL) if bookmarks else left
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if bookmarks and loop.time() < deadline:
                    await writer.bookmark(str(events.progress_revision))
                continue
            batch: list[tuple[str, Cached]] = []
            while isinstance(item, tuple):
                batch.append(item)
                if len(batch) >= WRITE_BATCH or queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                await writer.send_cached(batch)
                if isinstance(item, tuple):
                    continue
            if item is None:
                return
            if isinstance(item, ApiError):
                await writer.error(item)
                return
            if isinstance(item, BaseException):
                await writer.error(errors.internal(str(item)))
                return
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await asyncio.gather(aclose(), return_exceptions=True)


def _heavy(request: web.Request) -> bool:
    """A body large enough that its decoding and writing run off the event loop."""
    return request.content_length is not None and request.content_length > offload.HEAVY_BYTES


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


async def object_response(
    obj: dict[str, Any], status: int, warnings: list[str], heavy: bool
) -> web.Response:
    """An object as a response; large ones are encoded off the loop."""
    if not heavy:
        return json_response(obj, status, warnings)
    body = await offload.run(True, dumps, obj)
    resp = web.Response(body=body, status=status, content_type="application/json")
    add_warnings(resp, warnings)
    return resp


def list_response(kind: Kind, items: list[Cached], rev: int, cont: str) -> web.Response:
    m: dict[str, Any] = {"resourceVersion": str(rev)}
    if cont:
        m["continue"] = cont
    head = dumps({"kind": kind.kind + "List", "apiVersion": kind.api_version, "metadata": m})
    body = head[:-1] + b',"items":[' + b",".join(converted(kind, c.json) for c in items) + b"]}"
    return web.Response(body=body, content_type="application/json")


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def _columns(kind: Kind) -> list[dict[str, Any]]:
    if isinstance(kind, CustomKind):
        return custom_columns.column_definitions(kind.columns)
    return tables.column_definitions(kind.kind)


def _cells(kind: Kind, obj: dict[str, Any], now: datetime) -> list[Any]:
    if isinstance(kind, CustomKind):
        return custom_columns.row_cells(kind.columns, obj, now)
    return tables.row_cells(kind.kind, obj, now)


def converted(kind: Kind, raw: bytes) -> bytes:
    """A stored custom object's JSON in the version asked for (conversion strategy None: only
    apiVersion changes). Stored JSON starts with its apiVersion (registry._typed)."""
    if not isinstance(kind, CustomKind) or kind.version == kind.storage_version:
        return raw
    stored = b'{"apiVersion":"' + kind.storage_api_version.encode() + b'"'
    if raw.startswith(stored):
        return b'{"apiVersion":"' + kind.api_version.encode() + b'"' + raw[len(stored) :]
    return raw


def converted_obj(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(kind, CustomKind) or kind.version == kind.storage_version:
        return obj
    return {**obj, "apiVersion": kind.api_version}


def to_scale(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    if isinstance(kind, CustomKind) and kind.scale is not None:
        return custom.to_scale(kind, obj)
    m = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    if kind.kind == "ReplicationController":
        selector = {"matchLabels": selector}  # a map of labels, not a LabelSelector
    reqs = selector_from_match_labels(selector)
    text = ",".join(
        f"{r.key}={r.values[0]}" if r.op == "=" else f"{r.key} {r.op} ({','.join(r.values)})"
        for r in reqs
    )
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: m[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in m
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": text},
    }


def _int_param(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f'{name}: Invalid value: "{raw}": must be an integer') from None


__all__ = ["BY_KIND", "ResourceHandler", "Target", "json_response", "parse_path"]
