"""The layer-2 speaker of one node: MetalLB's speaker in L2 mode, run by the node agent.

It watches Services, EndpointSlices and Nodes (the agent's informers) and MetalLB's
IPAddressPools and L2Advertisements (in `metallb-system`), hears the other speakers'
heartbeats (beacon.py), runs the election (model.py) whenever any of these change, and
makes this node answer ARP for the IPs it wins (announcer.py), with gratuitous ARP when it
takes one over and an Event `nodeAssigned` on the Service.

It announces nothing until its caches have synced and it has listened for heartbeats for
DEAD_AFTER (so a starting speaker does not briefly believe it is alone). A speaker cut off
from the others believes it is alone and announces everything, harmlessly while cut off;
when it hears the others again the election settles, and every speaker that sees a peer
(re)appear repeats its gratuitous ARP and its Events, so the real owner's MAC is what hosts
keep and the latest Event names it. A speaker cut off records no Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from pathlib import Path
from typing import Any

from kubesvc.api.kinds import Kind
from kubesvc.api.objmeta import object_key
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Informer
from kubesvc.client.rest import ApiClient
from kubesvc.node.sandbox import NodeNet
from kubesvc.speaker import heartbeat as hb
from kubesvc.speaker import model
from kubesvc.speaker.announcer import Announcer
from kubesvc.speaker.beacon import Beacon, load_key

log = logging.getLogger("kubesvc.speaker")

NAMESPACE = "metallb-system"  # where MetalLB reads its configuration
POOL_KIND = Kind("metallb.io", "v1beta1", "IPAddressPool", "ipaddresspools", "ipaddresspool", True)
L2_KIND = Kind(
    "metallb.io", "v1beta1", "L2Advertisement", "l2advertisements", "l2advertisement", True
)
LB_INDEX = "speaker-load-balancers"  # every LoadBalancer Service, under ""
SERVICE_INDEX = "speaker-service"  # EndpointSlices by namespace/service
COALESCE = 0.005  # changes arriving together are one election
RESYNC = 5.0  # elect again even if nothing said so
OPEN_RETRY = 1.0


def key_path(kubeconfig: str) -> Path:
    """The cluster's speaker key, beside its other credentials."""
    return Path(kubeconfig).parent / "pki" / "speaker.key"


class Speaker:
    def __init__(
        self,
        *,
        client: ApiClient,
        node: str,
        net: NodeNet,
        key: bytes,
        services: Informer,
        slices: Informer,
        nodes: Informer,
    ) -> None:
        self.client = client
        self.node = node
        self.net = net
        self.network = str(ipaddress.ip_interface(f"{net.ip}/{net.prefix_len}").network)
        self.services, self.slices, self.nodes = services, slices, nodes
        # the election reads LoadBalancer Services and their slices only: indexed, so that
        # it costs the same with ten Services or ten thousand
        self.services.add_indexer(LB_INDEX, _lb_index)
        self.slices.add_indexer(SERVICE_INDEX, _service_index)
        self.pools = Informer(client, POOL_KIND, namespace=NAMESPACE)
        self.advertisements = Informer(client, L2_KIND, namespace=NAMESPACE)
        self.recorder = EventRecorder(client, "metallb-speaker", node)
        self.announcer = Announcer(net.netns)
        broadcast = str(ipaddress.ip_network(self.network).broadcast_address)
        self.beacon = Beacon(net.netns, node, key, broadcast, self._membership_changed)
        self.announced: dict[str, tuple[str, ...]] = {}  # service -> IPs this node announces
        self.decisions: list[model.Decision] = []
        self._alive: frozenset[str] = frozenset()
        self._dirty: asyncio.Event | None = None
        self._logged: dict[str, str] = {}  # problems already logged, once per message
        self._reannounce = False
        self._told: dict[str, tuple[str, ...]] = {}  # services whose nodeAssigned is recorded
        self._lb_keys: set[str] = set()  # the LoadBalancer Services at the last election

    @classmethod
    def for_agent(
        cls,
        *,
        client: ApiClient,
        node: str,
        net: NodeNet,
        kubeconfig: str,
        services: Informer,
        slices: Informer,
        nodes: Informer,
    ) -> Speaker:
        return cls(
            client=client,
            node=node,
            net=net,
            key=load_key(key_path(kubeconfig)),
            services=services,
            slices=slices,
            nodes=nodes,
        )

    # -- running -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Runs until cancelled; the caller has started and synced the agent's informers."""
        self._dirty = asyncio.Event()
        # a change to a Service that is not a LoadBalancer, or to the endpoints of one, cannot
        # change the election: with thousands of Services, most changes are those
        self.services.add_handler(
            self._service_changed, self._service_changed, self._service_changed
        )
        self.slices.add_handler(self._slice_changed, self._slice_changed, self._slice_changed)
        for inf in (self.nodes, self.pools, self.advertisements):
            inf.add_handler(
                lambda _o: self._changed(),
                lambda _o, _n: self._changed(),
                lambda _o: self._changed(),
            )
        self.pools.start()
        self.advertisements.start()
        try:
            await self._open()
            await asyncio.sleep(hb.DEAD_AFTER)  # hear the others before electing anyone
            self._alive = self.beacon.alive()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), RESYNC)
                await asyncio.sleep(COALESCE)
                self._dirty.clear()
                try:
                    self.sync()
                except Exception:
                    log.exception("layer-2 election failed; retrying")
                    await asyncio.sleep(OPEN_RETRY)
                    self._dirty.set()
        finally:
            await self.close()

    async def _open(self) -> None:
        while True:
            try:
                self.beacon.start()
                break
            except OSError as e:
                log.warning(
                    "cannot listen for speaker heartbeats; retrying",
                    extra={"kv": {"port": hb.PORT, "error": str(e)}},
                )
                await asyncio.sleep(OPEN_RETRY)
        while True:
            try:
                self.announcer.open()
                return
            except OSError as e:
                log.warning("cannot open the ARP socket; retrying", extra={"kv": {"error": str(e)}})
                await asyncio.sleep(OPEN_RETRY)

    async def close(self) -> None:
        self.beacon.stop()
        self.announcer.close()
        for inf in (self.pools, self.advertisements):
            await inf.stop()
        await self.recorder.close()

    def _changed(self, _obj: object = None) -> None:
        if self._dirty is not None:
            self._dirty.set()

    def _service_changed(self, obj: Any, new: Any = None) -> None:
        if model.is_load_balancer(obj) or model.is_load_balancer(new):
            self._changed()

    def _slice_changed(self, obj: Any, new: Any = None) -> None:
        if model.slice_service(obj) in self._lb_keys or model.slice_service(new) in self._lb_keys:
            self._changed()

    def _membership_changed(self, alive: frozenset[str]) -> None:
        joined = alive - self._alive
        if joined:
            log.info("speakers joined", extra={"kv": {"nodes": ",".join(sorted(joined))}})
            # whoever announced meanwhile (a node that was cut off and thought it was alone)
            # may have told hosts its MAC: after this election the owners say theirs again
            self._reannounce = True
        left = self._alive - alive
        if left:
            log.info("speakers gone", extra={"kv": {"nodes": ",".join(sorted(left))}})
        self._alive = alive
        self._changed()

    # -- one election ---------------------------------------------------------------------------
    def sync(self) -> None:
        services = self.services.by_index(LB_INDEX, "")
        self._lb_keys = {k for k in map(_key, services) if k}
        inputs = model.Inputs.build(
            services=services,
            slices=[x for k in self._lb_keys for x in self.slices.by_index(SERVICE_INDEX, k)],
            nodes=self.nodes.list(),
            pools=self.pools.list(),
            advertisements=self.advertisements.list(),
        )
        self._log_problems(inputs.problems)
        alive = self.beacon.alive()
        self.decisions = model.decide(inputs, alive, self.network)
        mine = model.announced_by(self.decisions, self.node)
        ips = {ip for svc_ips in mine.values() for ip in svc_ips}
        added = self.announcer.set_ips(ips)
        if self._reannounce:
            # speakers (re)joined: the owners say so again, on the network and in Events
            self._reannounce = False
            added = ips
            self._told.clear()
        if added:
            self.announcer.announce(added)
        for key in sorted(set(mine) - set(self.announced)):
            log.info("announcing", extra={"kv": {"service": key, "ips": ",".join(mine[key])}})
        for key in sorted(set(self.announced) - set(mine)):
            log.info("withdrawing announcement", extra={"kv": {"service": key}})
        self.announced = mine
        # a speaker that hears nobody while the API lists other Ready nodes is cut off: what
        # it announces reaches nobody, and an Event from it would name the wrong node
        others = any(n.ready for name, n in inputs.nodes.items() if name != self.node)
        if alive == {self.node} and others:
            return
        self._told = {k: v for k, v in self._told.items() if mine.get(k) == v}
        for key, svc_ips in sorted(mine.items()):
            if self._told.get(key) == svc_ips or (svc := self.services.get(key)) is None:
                continue
            self._told[key] = svc_ips
            self.recorder.event(
                _ref(svc),
                "Normal",
                "nodeAssigned",
                f'announcing from node "{self.node}" with protocol "{model.PROTOCOL}"',
            )

    def _log_problems(self, problems: dict[str, str]) -> None:
        for what, why in problems.items():
            if self._logged.get(what) != why:
                log.warning(
                    "left out of the layer-2 election", extra={"kv": {"object": what, "error": why}}
                )
        self._logged = dict(problems)


def _lb_index(svc: Any) -> list[str]:
    return [""] if model.is_load_balancer(svc) else []


def _service_index(slice_: Any) -> list[str]:
    key = model.slice_service(slice_)
    return [key] if key else []


def _key(svc: Any) -> str:
    try:
        return object_key(svc)
    except Exception:  # what the election cannot read, it names as a problem
        return ""


def _ref(svc: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Service", "apiVersion": "v1", "metadata": svc.get("metadata", {})}
