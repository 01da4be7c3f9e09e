"""The ingress controller process: informers on Ingresses, IngressClasses, Services,
EndpointSlices, Nodes and Secrets; each burst of changes recomputes the routing table
(model.py) and the TLS table (tls.py: only the Secrets served Ingresses name; a change to
another Secret makes no sync) and brings HAProxy to them (applier.py); each served
Ingress's `status.loadBalancer.ingress` gets the controller Service's LoadBalancer IPs, or
the nodes' InternalIPs before one exists; conflicts, missing Services, unreadable Ingresses
and unusable TLS Secrets become Events on the Ingress. `/metrics` counts reloads and
runtime updates."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from typing import Any

from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Informer
from kubesvc.client.kubeconfig import ClusterAccess
from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.ingress.applier import HAProxy
from kubesvc.ingress.certs import SECRET_TYPE
from kubesvc.ingress.haproxy import Paths, Ports
from kubesvc.ingress.metrics import haproxy_exposition
from kubesvc.ingress.model import CLASS_NAME, RoutingTable, routing_table
from kubesvc.ingress.tls import TLSTable, tls_table

log = logging.getLogger("kubesvc.ingress")

MAX_WARNED = 10_000  # distinct Event messages remembered (one Event per message)


def lb_addresses(svc: Any) -> list[str]:
    """The LoadBalancer IPs of the controller's Service, from its status."""
    status = svc.get("status") if svc.__class__ is dict else None
    lb = status.get("loadBalancer") if status.__class__ is dict else None
    ingress = lb.get("ingress") if lb.__class__ is dict else None
    out = []
    for entry in ingress if ingress.__class__ is list else ():
        ip = entry.get("ip") if entry.__class__ is dict else None
        if ip.__class__ is str and ip:
            out.append(ip)
    return out


def node_addresses(nodes: list[Any]) -> list[str]:
    out = []
    for node in nodes:
        status = node.get("status") if node.__class__ is dict else None
        addrs = status.get("addresses") if status.__class__ is dict else None
        for a in addrs if addrs.__class__ is list else ():
            if a.__class__ is dict and a.get("type") == "InternalIP":
                ip = a.get("address")
                if ip.__class__ is str and ip:
                    out.append(ip)
    return sorted(set(out))


def tls_secrets_only(secret: Any) -> Any:
    """A Secret as the controller caches it: the data of TLS Secrets only (a token or a
    password has no business in its memory, nor a large Opaque Secret in its size)."""
    if secret.__class__ is dict and secret.get("type") != SECRET_TYPE:
        return {k: v for k, v in secret.items() if k not in ("data", "stringData")}
    return secret


def status_for(ips: list[str]) -> dict[str, Any]:
    return {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}


class IngressController:
    def __init__(
        self,
        client: ApiClient,
        haproxy: HAProxy,
        publish_service: str,
        class_name: str = CLASS_NAME,
    ) -> None:
        self.client = client
        self.haproxy = haproxy
        self.publish_service = publish_service  # ns/name of the controller's Service
        self.class_name = class_name
        self.ingresses = Informer(client, "Ingress", transform=None)
        self.classes = Informer(client, "IngressClass", transform=None)
        self.services = Informer(client, "Service", transform=None)
        self.slices = Informer(client, "EndpointSlice", transform=None)
        self.nodes = Informer(client, "Node", transform=None)
        self.secrets = Informer(client, "Secret", transform=tls_secrets_only)
        self.informers = (
            self.ingresses,
            self.classes,
            self.services,
            self.slices,
            self.nodes,
            self.secrets,
        )
        self.events = EventRecorder(client, "kubesvc-ingress-controller")
        self._dirty = asyncio.Event()
        self._warned: set[tuple[str, str]] = set()
        self.table = RoutingTable()
        self.tls = TLSTable()

    async def run(self) -> None:
        for inf in self.informers:
            mark = self._mark_secret if inf is self.secrets else self._mark
            inf.add_handler(mark, lambda old, new, mark=mark: mark(new), mark)
            inf.start()
        await asyncio.gather(*(inf.wait_for_sync() for inf in self.informers))
        log.info("ingress controller caches synced")
        self._dirty.set()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0)  # one sync for the events already read
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("ingress sync failed; retrying")
                await asyncio.sleep(1)
                self._dirty.set()

    def _mark(self, _obj: Any) -> None:
        self._dirty.set()

    def _mark_secret(self, obj: Any) -> None:
        """A Secret no served Ingress names changes nothing (a new reference comes with an
        Ingress change, which syncs)."""
        meta = obj.get("metadata") if obj.__class__ is dict else None
        if (
            meta.__class__ is dict
            and f"{meta.get('namespace')}/{meta.get('name')}" in self.tls.secrets
        ):
            self._dirty.set()

    async def sync(self) -> None:
        table = routing_table(
            self.ingresses.list(),
            self.services.list(),
            self.slices.list(),
            self.classes.list(),
            self.class_name,
        )
        served = (self.ingresses.get(key) for key in table.served)
        tls = tls_table(served, self.secrets.get)
        how = await self.haproxy.apply(table, tls)
        if how != "none":
            log.info(
                "haproxy %s: %d routes, %d backends, %d TLS hosts",
                how,
                len(table.routes),
                len(table.backends),
                len(tls.certs),
            )
        self.table, self.tls = table, tls
        self._report(table)
        for key, reason, message in tls.problems:
            self._warn(key, reason, message)
        await self._write_status(table)

    def _report(self, table: RoutingTable) -> None:
        for key, why in table.rejected:
            self._warn(key, "Rejected", f"not served: {why}")
        for key, why in table.missing:
            self._warn(key, "ServiceNotFound", f"{why}: requests for it get 503")
        for c in table.conflicts:
            self._warn(c.loser, "Conflict", f"{c.what} is served from {c.winner} (older)")

    def _warn(self, key: str, reason: str, message: str) -> None:
        if (key, message) in self._warned or len(self._warned) >= MAX_WARNED:
            return
        obj = self.ingresses.get(key)
        if obj is None:
            return
        self._warned.add((key, message))
        self.events.event(obj, "Warning", reason, message)

    def addresses(self) -> list[str]:
        svc = self.services.get(self.publish_service)
        return lb_addresses(svc) or node_addresses(self.nodes.list())

    async def _write_status(self, table: RoutingTable) -> None:
        want = status_for(self.addresses())
        for key in table.served:
            ing = self.ingresses.get(key)
            if ing is None or ing.get("status") == want:
                continue
            ns, name = key.split("/", 1)
            try:
                await self.client.patch("Ingress", ns, name, {"status": want}, subresource="status")
            except ApiException as e:
                if e.status != 404:
                    log.warning("status of ingress %s not written: %s", key, e)

    async def stop(self) -> None:
        for inf in self.informers:
            await inf.stop()
        await self.events.close()


async def serve_metrics(haproxy: HAProxy, port: int) -> asyncio.Server:
    """`GET /metrics`: reload and runtime-update counters, then HAProxy's own metrics (its
    exporter's `haproxy_*`), in Prometheus' text format."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = (
                "# TYPE kubesvc_ingress_reloads_total counter\n"
                f"kubesvc_ingress_reloads_total {haproxy.reloads}\n"
                "# TYPE kubesvc_ingress_runtime_updates_total counter\n"
                f"kubesvc_ingress_runtime_updates_total {haproxy.runtime_updates}\n"
                + await haproxy_exposition(haproxy.paths.metrics_socket)
            ).encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "0.0.0.0", port)


async def run(
    access: ClusterAccess,
    publish_service: str,
    class_name: str = CLASS_NAME,
    ports: Ports = Ports(),
    metrics_port: int = 10255,
) -> int:
    """Runs until SIGTERM or SIGINT (0), or until HAProxy exits on its own (1: the
    container's restartPolicy starts the controller and a new HAProxy again)."""
    workdir = tempfile.mkdtemp(prefix="kubesvc-ingress-")  # 0700: the runtime API's home
    haproxy = HAProxy(Paths(workdir), ports)
    client = ApiClient(access, user_agent="kubesvc-ingress/0.1")
    controller = IngressController(client, haproxy, publish_service, class_name)
    metrics = await serve_metrics(haproxy, metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("kubesvc ingress controller starting", file=sys.stderr, flush=True)
    task = asyncio.create_task(controller.run())
    stopped = asyncio.create_task(stop.wait())
    crashed = asyncio.create_task(haproxy.exited())
    try:
        await asyncio.wait([task, stopped, crashed], return_when="FIRST_COMPLETED")
        if task.done():
            task.result()
        if crashed.done() and not stop.is_set():
            # a HAProxy killed or crashed: start over rather than patch up what is left
            print(f"kubesvc ingress: haproxy exited ({crashed.result()}); exiting",
                  file=sys.stderr, flush=True)  # fmt: skip
            return 1
        return 0
    finally:
        for t in (task, stopped, crashed):
            t.cancel()
        metrics.close()
        await controller.stop()
        await haproxy.stop()
        await client.close()
        shutil.rmtree(workdir, ignore_errors=True)
