"""The API server process: TLS, authentication, routing, seeding and background loops."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import gc
import ipaddress
import logging
import os
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMethod, ContentEncodingError, HttpProcessingError

from kubesvc.api import errors, openapi, tables, typed
from kubesvc.api.errors import ApiError
from kubesvc.api.kinds import BY_KIND, KINDS
from kubesvc.apiserver import discovery, keys, negotiation, offload, reviews
from kubesvc.apiserver.authz import USER, RbacAuthorizer
from kubesvc.apiserver.certs import (
    ClientIdentity,
    Credentials,
    client_files,
    component_identities,
    ensure_credentials,
)
from kubesvc.apiserver.crds import CrdController
from kubesvc.apiserver.decoding import MAX_BODY
from kubesvc.apiserver.endpoint_reconciler import LeaseEndpointReconciler
from kubesvc.apiserver.gc import GarbageCollector
from kubesvc.apiserver.http import ResourceHandler, json_response, status_response
from kubesvc.apiserver.podstreams import PodProxy
from kubesvc.apiserver.proxy_handler import ResourceProxy
from kubesvc.apiserver.rbac_bootstrap import component_object, ensure_bootstrap_policy
from kubesvc.apiserver.registry import Registry, WriteOptions
from kubesvc.apiserver.services import ServiceAllocator
from kubesvc.apiserver.tokens import TokenIssuer
from kubesvc.auth import serviceaccount
from kubesvc.auth.authenticator import Authenticator, Unauthorized
from kubesvc.auth.forbidden import forbidden
from kubesvc.auth.impersonation import BadImpersonation, impersonation
from kubesvc.auth.request import request_info
from kubesvc.auth.user import ANONYMOUS, SYSTEM_MASTERS, UNAUTHENTICATED, UserInfo
from kubesvc.client.kubeconfig import SERVERS_EXTENSION
from kubesvc.store.base import StoreError, StoreUnavailable
from kubesvc.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from kubesvc.store.etcd import EtcdConfig

log = logging.getLogger("kubesvc.apiserver")

MEMORY_TRIM_INTERVAL = 5.0  # seconds
REQUEST_TIMEOUT = 60.0  # seconds, as kube-apiserver's --request-timeout
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
PUBLIC_PATHS = {"/version", "/version/", "/healthz", "/livez", "/readyz"}
ANONYMOUS_USER = UserInfo(ANONYMOUS, "", (UNAUTHENTICATED,))
SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SEED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# upstream's scheduling post-start hook creates these (pkg/apis/scheduling SystemPriorityClasses)
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": (
        2000001000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    "system-cluster-critical": (
        2000000000,
        "Used for system critical pods that must run in the cluster, but can be moved to "
        "another node if necessary.",
    ),
}


@dataclass
class ServerConfig:
    data_dir: Path
    bind: str = "127.0.0.1"
    port: int = 6443
    advertise: str = ""  # address other components use; defaults to bind (or 127.0.0.1)
    service_cidr: str = "10.96.0.0/12"
    node_port_range: str = "30000-32767"
    extra_sans: list[str] = field(default_factory=list)
    compaction_interval: float = 300.0  # as kube-apiserver's --etcd-compaction-interval
    # the DefaultTolerationSeconds admission's --default-*-toleration-seconds
    not_ready_toleration_seconds: int = 300
    unreachable_toleration_seconds: int = 300
    # nodes whose agents get a credential of their own (system:node:NAME): a client
    # certificate and `kubelet-NAME.kubeconfig` beside the admin's
    nodes: list[str] = field(default_factory=list)
    etcd: EtcdConfig | None = None  # --etcd-servers: the store is etcd, not SQLite
    # every API server of the cluster (URLs), when there are several on one store: the
    # kubeconfigs written name the first as `server` and list all for failover, and the
    # serving certificate covers all of them
    peers: list[str] = field(default_factory=list)

    @property
    def client_host(self) -> str:
        if self.advertise:
            return self.advertise
        return "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind


class ApiServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: Any = None
        self.registry: Registry | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.creds: Credentials | None = None
        self.identities: list[ClientIdentity] = []
        self.port = config.port
        self._endpoints: LeaseEndpointReconciler | None = None
        self._served = 0  # requests answered (the memory keeper trims after busy periods)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        # pods reach the server as https://10.96.0.1 (the `kubernetes` Service)
        kubernetes_ip = str(ipaddress.ip_network(cfg.service_cidr).network_address + 1)
        self.identities = component_identities(cfg.nodes)
        peer_hosts = [urlsplit(u).hostname or "" for u in cfg.peers]
        hosts = [cfg.client_host, cfg.bind, kubernetes_ip, *cfg.extra_sans, *peer_hosts]
        if cfg.peers:  # the same list on every server: one certificate for all of them
            hosts = ["127.0.0.1", kubernetes_ip, *cfg.extra_sans, *peer_hosts]
        with _locked(cfg.data_dir / "pki.lock"):  # servers sharing a directory take turns
            self.creds = ensure_credentials(cfg.data_dir, hosts, self.identities)
        self.store = await self._open_store()
        self.registry = Registry(
            self.store, ServiceAllocator(cfg.service_cidr, cfg.node_port_range)
        )
        self.registry.toleration_seconds = (
            cfg.not_ready_toleration_seconds,
            cfg.unreachable_toleration_seconds,
        )
        allocated_at = await self.registry.restore_allocations()
        if cfg.etcd is not None:  # other API servers may allocate on the same store
            follow = self.registry.follow_allocations(allocated_at)
            self._tasks.append(asyncio.create_task(follow, name="allocations"))
            namespaces = self.registry.follow_namespaces()
            self._tasks.append(asyncio.create_task(namespaces, name="namespaces"))
        with _locked(cfg.data_dir / "pki.lock"):
            sa_key = serviceaccount.load_or_create_key(cfg.data_dir / "pki")
        self.tokens = TokenIssuer(self.registry, sa_key)
        self.authenticator = Authenticator(self.creds.token, sa_key.public_key(), self._lookup)
        self.authz = RbacAuthorizer(self.registry)
        await self.authz.start()
        crds = CrdController(self.registry)
        await crds.start()
        self._tasks.append(asyncio.create_task(crds.run(), name="crds"))
        collector = GarbageCollector(self.registry)
        self._tasks.append(asyncio.create_task(collector.run(), name="gc"))
        self._tasks.append(asyncio.create_task(self._compactor(), name="compactor"))
        self._tasks.append(asyncio.create_task(self._memory_keeper(), name="memory"))
        # compile every kind's decoder and Table columns before serving: the first request
        # of a kind would otherwise pay for it on the event loop
        await asyncio.to_thread(_warm_up)
        # what exists now lives as long as the process: schemas, decoders, tables, the
        # restored store. Frozen out of the collector, a full collection no longer walks it
        # (it took 40-80 ms on the event loop with every kind compiled; now under 1 ms)
        gc.collect()
        gc.freeze()
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._handler = ResourceHandler(
            self.registry,
            PodProxy(self.registry, self.creds.kubelet_client_token),
            ResourceProxy(self.registry, self.creds.kubelet_client_token),
            self.tokens,
            self.authz,
        )
        # bodies are decompressed by read_body, after authentication and within MAX_BODY
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, auto_decompress=False
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            cfg.bind,
            cfg.port,
            ssl_context=self._ssl_context(),
            backlog=1024,
            reuse_address=True,
        )
        await site.start()
        if cfg.port == 0:
            sockets = site._server.sockets  # type: ignore[union-attr]
            self.port = sockets[0].getsockname()[1]
        await self._seed()
        self._endpoints = self._endpoint_reconciler()
        if self._endpoints is not None:
            await self._endpoints.reconcile()
            self._tasks.append(asyncio.create_task(self._endpoints.run(), name="endpoints"))
        await ensure_bootstrap_policy(self.registry, component_object)
        self.write_kubeconfig()
        self._tasks.append(asyncio.create_task(self._bootstrap_policy(), name="rbac-bootstrap"))
        log.info("serving", extra={"kv": {"address": f"{cfg.bind}:{self.port}"}})

    async def stop(self) -> None:
        if self._endpoints is not None:
            await self._endpoints.remove()
        if hasattr(self, "authz"):
            await self.authz.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            await self.store.close()

    async def _open_store(self) -> Any:
        cfg = self.config
        if cfg.etcd is not None:
            from kubesvc.store.etcd import EtcdStore  # grpc loads only for etcd

            etcd = EtcdStore(cfg.etcd)
            log.info("waiting for etcd", extra={"kv": {"servers": ",".join(cfg.etcd.servers)}})
            await etcd.start()
            return etcd
        sqlite = SQLiteStore(cfg.data_dir / "state.db")
        renamed = sqlite.migrate_keys(keys.LAYOUT, keys.legacy_key)
        if renamed:
            log.info("stored objects moved to upstream's keys", extra={"kv": {"keys": renamed}})
        return sqlite

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.creds is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.creds.server_cert, self.creds.server_key)
        ctx.load_verify_locations(self.creds.ca_cert)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    async def _compactor(self) -> None:
        """Every interval, drop history older than the previous tick (upstream's scheme), so
        watchers can resume from anything newer than one interval."""
        assert self.store is not None
        previous = self.store.revision
        while True:
            await asyncio.sleep(self.config.compaction_interval)
            if previous:
                try:
                    await self.store.compact(previous)
                except StoreError as e:  # etcd away for now: the next tick compacts
                    log.warning("compaction failed", extra={"kv": {"error": str(e)}})
            previous = self.store.revision

    async def _memory_keeper(self) -> None:
        """After a busy period, hand the memory freed since back to the kernel."""
        served = self._served
        while True:
            await asyncio.sleep(MEMORY_TRIM_INTERVAL)
            if self._served != served:
                served = self._served
                offload.schedule_trim()

    # -- seeding -------------------------------------------------------------------------
    async def _seed(self) -> None:
        assert self.registry is not None
        opts = WriteOptions(manager="kube-apiserver")
        ns_kind = BY_KIND["Namespace"]
        for name in SEED_NAMESPACES:
            if await self.registry.try_get(ns_kind, None, name) is None:
                await self._create_seed(ns_kind, None, {"metadata": {"name": name}}, opts)
        svc_kind = BY_KIND["Service"]
        if await self.registry.try_get(svc_kind, "default", "kubernetes") is None:
            svc = {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": self.registry.allocator.ips.nth(1),
                    "ports": [
                        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}
                    ],
                    "sessionAffinity": "None",
                },
            }
            await self._create_seed(svc_kind, "default", svc, opts)
        pc_kind = BY_KIND["PriorityClass"]
        for name, (value, description) in SYSTEM_PRIORITY_CLASSES.items():
            if await self.registry.try_get(pc_kind, None, name) is None:
                pc = {"metadata": {"name": name}, "value": value, "description": description}
                await self._create_seed(pc_kind, None, pc, opts)

    async def _create_seed(
        self, kind: Any, namespace: str | None, obj: dict[str, Any], opts: WriteOptions
    ) -> None:
        """Create a seed object; another API server on the same store may just have."""
        assert self.registry is not None
        try:
            await self.registry.create(kind, namespace, obj, opts)
        except ApiError as e:
            if e.code != 409:
                raise

    async def _bootstrap_policy(self) -> None:
        assert self.registry is not None
        t0 = time.perf_counter()
        written = await ensure_bootstrap_policy(self.registry)
        seconds = round(time.perf_counter() - t0, 3)
        log.info("bootstrap policy", extra={"kv": {"written": written, "seconds": seconds}})

    def _endpoint_reconciler(self) -> LeaseEndpointReconciler | None:
        """Every live API server in the `kubernetes` Service's endpoints, when this one has
        an address pods can reach (not loopback)."""
        assert self.registry is not None
        host = self.config.client_host
        if host.startswith("127.") or host in ("localhost", "::1"):
            return None
        return LeaseEndpointReconciler(self.registry, host, self.port)

    # -- kubeconfig ----------------------------------------------------------------------
    def kubeconfig(
        self, context: str = "kubesvc", client: tuple[Path, Path] | None = None
    ) -> dict[str, Any]:
        """A kubeconfig for this server: the admin's, or `client`'s (certificate, key)."""
        assert self.creds is not None
        cert, key = client or (self.creds.admin_cert, self.creds.admin_key)

        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        cluster: dict[str, Any] = {
            "server": f"https://{self.config.client_host}:{self.port}",
            "certificate-authority-data": b64(self.creds.ca_cert),
        }
        if self.config.peers:
            cluster["server"] = self.config.peers[0]
            cluster["extensions"] = [
                {"name": SERVERS_EXTENSION, "extension": {"servers": list(self.config.peers)}}
            ]
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [
                {
                    "name": f"{context}-admin",
                    "user": {
                        "client-certificate-data": b64(cert),
                        "client-key-data": b64(key),
                    },
                }
            ],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(self) -> Path:
        """The admin's kubeconfig, and before it each component's own (kube-proxy's
        `kube-proxy.kubeconfig`, `kube-controller-manager`, `kube-scheduler`,
        `metallb-speaker` and `kubelet-NODE`): whoever waits for the first finds them all."""
        assert self.creds is not None
        data_dir = self.config.data_dir
        if self.creds.proxy_cert is not None and self.creds.proxy_key is not None:
            proxy = self.kubeconfig(client=(self.creds.proxy_cert, self.creds.proxy_key))
            _write_private(data_dir / "kube-proxy.kubeconfig", proxy)
        for ident in self.identities:
            own = self.kubeconfig(client=client_files(data_dir, ident))
            _write_private(data_dir / f"{ident.stem}.kubeconfig", own)
        path = self.config.data_dir / "kubeconfig"
        _write_private(path, self.kubeconfig())
        return path

    # -- HTTP ----------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self._served += 1
        try:
            if request.method not in METHODS:
                err = errors.method_not_allowed(
                    "the server does not allow this method on the requested resource"
                )
                resp = status_response(err)
                resp.force_close()  # what follows a CONNECT is not a request
                return resp
            user = await self._authenticate(request)
            if user is None:
                return status_response(ApiError(401, "Unauthorized", "Unauthorized"))
            request[USER] = user = self._impersonate(request, user)
            self._authorize(request, user)
            if _long_running(request):
                return await handler(request)
            try:
                async with asyncio.timeout(_request_timeout(request)):
                    return await handler(request)
            except TimeoutError:
                raise ApiError(
                    504,
                    "Timeout",
                    "Timeout: request did not complete within requested timeout - "
                    "context deadline exceeded",
                    {},
                ) from None
        except ApiError as e:
            return status_response(e)
        except web.HTTPRequestEntityTooLarge:
            err = ApiError(
                413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
            )
            return status_response(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except StoreUnavailable as e:
            # etcd has no quorum or cannot be reached: clients retry after Retry-After
            err = ApiError(
                503,
                "ServiceUnavailable",
                f"the storage backend is unavailable, please try again: {e}",
                headers={"Retry-After": "1"},
            )
            return status_response(err)
        except Exception as e:
            log.exception(
                "request failed", extra={"kv": {"method": request.method, "path": request.path}}
            )
            err = errors.internal(str(e))
            return status_response(err)

    async def _authenticate(self, request: web.Request) -> UserInfo | None:
        """The request's user (kept as request[USER] for authorization); None: a 401.
        /version and the health checks answer anyone, as upstream's public-info role."""
        transport = request.transport
        ssl_obj = transport.get_extra_info("ssl_object") if transport else None
        peer = ssl_obj.getpeercert() if ssl_obj is not None else None
        public = request.path in PUBLIC_PATHS
        try:
            user = await self.authenticator.authenticate(
                request.headers.get("Authorization", ""), peer
            )
        except Unauthorized:
            return ANONYMOUS_USER if public else None
        if user is None and public:
            return ANONYMOUS_USER
        return user

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """The user the request acts as: its own, or the one it impersonates when it may."""
        try:
            wanted = impersonation(request.headers.items())
        except BadImpersonation as e:
            raise errors.bad_request(str(e)) from None
        if wanted is None:
            return user
        for attrs in wanted.checks:
            decision = self.authz.authorize(user, attrs)
            if not decision.allowed:
                raise forbidden(user, attrs, decision.reason)
        return wanted.user

    def _authorize(self, request: web.Request, user: UserInfo) -> None:
        """A 403 unless the user may do what the request asks (health checks and /version
        answer anyone, as upstream's system:public-info-viewer binding lets them)."""
        if request.path in PUBLIC_PATHS or SYSTEM_MASTERS in user.groups:
            return  # the admin and kubesvc's components: no need to read the request
        attrs = request_info(request.method, request.path, request.query)
        decision = self.authz.authorize(user, attrs)
        if not decision.allowed:
            raise forbidden(user, attrs, decision.reason)

    async def _lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert self.registry is not None
        return await self.registry.try_get(BY_KIND[kind], namespace, name)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        accept = request.headers.get("Accept", "")
        if path == "/version":
            return json_response(discovery.version_info())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path in ("/api", "/apis"):
            form, version = negotiation.wanted_form(accept)
            if form == negotiation.DISCOVERY:
                body = discovery.aggregated(path == "/api", version)
                resp = json_response(body)
                resp.content_type = "application/json"
                resp.headers["Content-Type"] = discovery.AGGREGATED_CONTENT_TYPE.format(v=version)
                return resp
            if path == "/api":
                return json_response(
                    discovery.api_versions(f"{self.config.client_host}:{self.port}")
                )
            return json_response(discovery.api_group_list())
        if path.startswith("/openapi"):
            return self._openapi(path, accept)
        if path == SELF_SUBJECT_REVIEWS and request.method == "POST":
            return await self.tokens.self_subject_review(request, request[USER])
        route = reviews.route(path)
        if route is not None:
            return await reviews.review(request, self.authz, *route)
        if path == "/.well-known/openid-configuration" and request.method == "GET":
            server = f"https://{self.config.client_host}:{self.port}"
            return json_response(self.tokens.openid_configuration(server))
        if path == "/openid/v1/jwks" and request.method == "GET":
            resp = json_response(self.tokens.jwks())
            resp.content_type = "application/jwk-set+json"
            return resp
        parts = path.strip("/").split("/")
        if request.method == "GET" and (
            (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3)
        ):
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            doc = discovery.api_resource_list(group, version)
            if doc is None:
                raise _not_found()
            return json_response(doc)
        if request.method == "GET" and parts[0] == "apis" and len(parts) == 2:
            for g in discovery.api_group_list()["groups"]:
                if g["name"] == parts[1]:
                    return json_response({"kind": "APIGroup", "apiVersion": "v1", **g})
            raise _not_found()
        return await self._handler.handle(request)

    def _openapi(self, path: str, accept: str = "") -> web.Response:
        if path == "/openapi/v2":
            from kubesvc.api import openapi_v2  # few clients still ask for v2

            if "application/com.github.proto-openapi.spec.v2" in accept:
                body = openapi_v2.document_protobuf()
                resp = web.Response(body=body)
                resp.headers["Content-Type"] = openapi_v2.PROTOBUF_CONTENT_TYPE
                return resp
            return web.Response(body=openapi_v2.document_json(), content_type="application/json")
        if path == "/openapi/v3":
            return json_response(openapi.index())
        if path.startswith("/openapi/v3/"):
            doc = openapi.document(path[len("/openapi/v3/") :])
            if doc is not None:
                return web.Response(body=doc, content_type="application/json")
        raise _not_found()


_aiohttp_handle_error = web_protocol.RequestHandler.handle_error


def _bad_http_as_status(
    self: web_protocol.RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """Requests aiohttp's parser refuses get a Status like every other error: 405 for a method
    it does not know (upstream's router answers any other method so), 400 otherwise. A
    client's garbage is not the server's error: it is logged at debug level, without the
    traceback aiohttp would log."""
    if not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
        return _aiohttp_handle_error(self, request, status, exc, message)
    log.debug("malformed HTTP request", extra={"kv": {"error": " ".join(str(exc).split())}})
    if isinstance(exc, BadHttpMethod):
        err = errors.method_not_allowed(
            "the server does not allow this method on the requested resource"
        )
    elif isinstance(exc, ContentEncodingError):
        err = errors.bad_request(f"unable to read the request body: {exc.message}")
    else:
        err = errors.bad_request(" ".join(str(exc.message or exc).split()))
    resp = status_response(err)
    resp.force_close()
    return resp


web_protocol.RequestHandler.handle_error = _bad_http_as_status  # type: ignore[method-assign]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, config: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several servers may write at once
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def _long_running(request: web.Request) -> bool:
    """Watches, exec, attach, port-forward and proxy streams have no request timeout."""
    if request.query.get("watch", "").lower() in ("true", "1"):
        return True
    parts = request.path.strip("/").split("/")
    return "watch" in parts[:4] or parts[-1] in ("exec", "attach", "portforward", "proxy", "log")


def _request_timeout(request: web.Request) -> float:
    """?timeout= (a Go duration such as 30s) shortens the default of 60 s, never lengthens it."""
    raw = request.query.get("timeout", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", raw)
    if m:
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
        seconds = float(m.group(1)) * scale
        if seconds > 0:
            return min(seconds, REQUEST_TIMEOUT)
    return REQUEST_TIMEOUT


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


async def serve(config: ServerConfig) -> None:
    server = ApiServer(config)
    await server.start()
    print(f"kubesvc apiserver listening on https://{config.bind}:{server.port}", flush=True)
    print(f"kubeconfig: {config.data_dir / 'kubeconfig'}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _warm_up() -> None:
    for kind in KINDS:
        typed.kind_type(kind.api_version, kind.kind)
        tables.column_definitions(kind.kind)
