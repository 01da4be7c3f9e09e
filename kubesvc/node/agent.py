"""`kubesvc node`: the kubelet's role for one node.

Registers the Node and heartbeats its Lease, keeps the node's namespace and host-gw routes,
runs the pods bound to it (sandbox, containers, restarts, probes, graceful termination),
publishes their status, serves logs/exec/port-forward to the API server, and runs the
node's kube-proxy and layer-2 speaker (kubesvc/speaker: ARP for LoadBalancer IPs).
Restarting the agent adopts the pods that are already running instead of killing them;
what the previous agent left half done (a sandbox it was creating, processes it started but
had not recorded, exec sessions whose client is gone) is removed, and a pod whose sandbox is
gone (the cluster was stopped, the machine rebooted) gets a new one, as the kubelet does
after a reboot.
One agent per node: the agent holds a lock on its state directory while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

import kubesvc
from kubesvc import netns
from kubesvc.api.objmeta import object_key
from kubesvc.client import shape
from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import Informer
from kubesvc.client.rest import ApiClient, ApiException
from kubesvc.client.workqueue import WorkQueue, run_workers
from kubesvc.node import mounts, podenv, podroot, sandbox, security, userns, volumes
from kubesvc.node.pod import ContainerState, PodWorker, write_pod_files
from kubesvc.node.podfiles import pod_hostname
from kubesvc.node.runtime import (
    ContainerRuntime,
    Proc,
    boot_time_ticks,
    container_environment,
    load_procs,
    now_rfc3339,
)
from kubesvc.node.sandbox import IPAM, NodeNet
from kubesvc.node.sourcewatch import SourceWatches
from kubesvc.node.tokens import TokenKey, TokenManager
from kubesvc.node.view import ContainerStdin, Sandbox
from kubesvc.proxy.proxier import Proxier, make_backend
from kubesvc.speaker.speaker import Speaker

log = logging.getLogger("kubesvc.node")

LEASE_DURATION = 40
LEASE_RENEW = 10.0
STATUS_EVERY = 10.0
TICK = 0.2
KUBELET_PORT = 10250
VOLUME_RESYNC = 60.0  # upstream's kubelet sync period
# what built-in images run from, bound read-only into every pod's root
RUNTIME_DIRS = podroot.runtime_dirs(
    [
        os.path.realpath(sys.base_prefix),
        os.path.realpath(sys.prefix),
        os.path.dirname(os.path.realpath(kubesvc.__file__)),
    ]
)
MAX_SOURCE_GETS = 16  # per volume set-up: a bound on what one pod spec makes the agent fetch


@dataclass
class AgentConfig:
    name: str
    kubeconfig: str
    net: NodeNet
    state_dir: Path
    dns_ip: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    kubelet_port: int = KUBELET_PORT
    proxy_mode: str = "nftables"  # nftables, iptables, or none (no kube-proxy on this node)
    # kube-proxy's own credentials (system:kube-proxy); None: it shares the agent's
    proxy_kubeconfig: str | None = None
    # the speaker's (system:metallb-speaker), with which it and the node's routes read
    # Nodes, Services, EndpointSlices and MetalLB's kinds; None: they share the agent's
    speaker_kubeconfig: str | None = None


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.cfg = config
        self.net = config.net
        self.client = ApiClient.from_kubeconfig(
            config.kubeconfig, user_agent=f"kubelet/v1.32.4 (kubesvc) {config.name}"
        )
        self.recorder = EventRecorder(self.client, "kubelet", config.name)
        self.runtime = ContainerRuntime(self._on_exit)
        self.workers: dict[str, PodWorker] = {}  # pod uid -> worker
        self.queue = WorkQueue("pods")
        self.status_queue = WorkQueue("pod-status")
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_state_dir(config.state_dir)
        self.ipam = IPAM(self.net.pod_cidr, config.state_dir / "ipam.json")
        self._id_bases: dict[str, int] = {}  # pod uid -> its user namespace's host ids
        # what the agent reads is type-checked: an object it cannot use is kept out (logged
        # once per revision), never fed to a pod worker, the env builder or the proxy
        self.pods = Informer(
            self.client,
            "Pod",
            field_selector=f"spec.nodeName={config.name}",
            check=shape.checker("Pod"),
        )
        # pods' service environment variables (the kubelet reads Services)
        self.services = Informer(self.client, "Service", check=shape.checker("Service"))
        # its own Node only, as the Node authorizer lets a node read
        self.own_node = Informer(
            self.client,
            "Node",
            field_selector=f"metadata.name={config.name}",
            check=shape.checker("Node"),
        )
        # every Node (routes to their pod ranges), EndpointSlices and the speaker's Services:
        # read with the speaker's credentials, which may read them (a node may not)
        self.speaker_client: ApiClient | None = None
        net_client = self.client
        if config.speaker_kubeconfig is not None:
            self.speaker_client = ApiClient.from_kubeconfig(
                config.speaker_kubeconfig,
                user_agent=f"metallb-speaker/v0.16.1 (kubesvc) {config.name}",
            )
            net_client = self.speaker_client
        self.nodes = Informer(net_client, "Node", check=shape.checker("Node"))
        self.slices = Informer(net_client, "EndpointSlice", check=shape.checker("EndpointSlice"))
        self.net_services = self.services
        if net_client is not self.client:
            self.net_services = Informer(net_client, "Service", check=shape.checker("Service"))
        # what volumes read: each ConfigMap and Secret a pod mounts is watched on its own
        # (the Node authorizer allows no other), so a change reaches running pods in a tick
        self.sources = SourceWatches(self.client, self._source_changed)
        self.proxier: Proxier | None = None
        # kube-proxy reads Services and EndpointSlices as itself, with watches of its own
        self.proxy_client: ApiClient | None = None
        self.proxy_informers: list[Informer] = []
        if config.proxy_mode != "none":
            proxy_services, proxy_slices = self.services, self.slices
            if config.proxy_kubeconfig is not None:
                self.proxy_client = ApiClient.from_kubeconfig(
                    config.proxy_kubeconfig,
                    user_agent=f"kube-proxy/v1.32.4 (kubesvc) {config.name}",
                )
                proxy_services = Informer(
                    self.proxy_client, "Service", check=shape.checker("Service")
                )
                proxy_slices = Informer(
                    self.proxy_client, "EndpointSlice", check=shape.checker("EndpointSlice")
                )
                self.proxy_informers = [proxy_services, proxy_slices]
            self.proxier = Proxier(
                services=proxy_services,
                slices=proxy_slices,
                backend=make_backend(config.proxy_mode, self.net.netns),
                node=config.name,
                node_ips=[self.net.ip],
                cluster_cidr=self.net.cluster_pod_cidr,
                netns=self.net.netns,
            )
        # answers ARP for the LoadBalancer IPs this node wins (MetalLB's layer-2 mode)
        self.speaker = Speaker.for_agent(
            client=net_client,
            node=config.name,
            net=self.net,
            kubeconfig=config.kubeconfig,
            services=self.net_services,
            slices=self.slices,
            nodes=self.nodes,
        )
        self._published: dict[str, str] = {}
        # pods' service-account tokens, from the TokenRequest API and bound to each pod
        self.tokens = TokenManager(self.client)
        self._starting: set[str] = set()
        # pods whose sandbox was lost: what their containers' runs were, to carry over
        self._lost: dict[str, tuple[dict[str, int], list[Proc]]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        self.pods.add_handler(self._pod_event, lambda _o, n: self._pod_event(n), self._pod_event)
        self.nodes.add_handler(
            lambda _o: self._routes_changed(),
            lambda _o, _n: self._routes_changed(),
            lambda _o: self._routes_changed(),
        )
        self._routes_dirty = asyncio.Event()
        # the node's namespaces are made while it registers: neither needs the other
        await asyncio.gather(self._prepare_node(), self._register())
        informers = [self.pods, self.services, self.own_node, self.nodes, self.slices]
        if self.net_services is not self.services:
            informers.append(self.net_services)  # the speaker's
        informers += self.proxy_informers
        for inf in informers:
            inf.start()
        # the kubelet API's imports and certificate (0.1-0.2 s) overlap the informers' lists
        serving = asyncio.create_task(self._serve())
        await asyncio.gather(*(i.wait_for_sync() for i in informers))
        await self._adopt()
        server = await serving
        tasks = [self.speaker.run()]
        metrics = None
        if self.proxier is not None:
            tasks.append(self.proxier.run())
            metrics = await self.proxier.serve_metrics()  # 127.0.0.1:10249 in the node netns
        _write_agent_file(self.cfg.state_dir)
        print(f"kubesvc node {self.cfg.name} running at {self.net.ip}", flush=True)
        try:
            await asyncio.gather(
                *tasks,
                run_workers(self.queue, self._sync_pod, workers=8),
                run_workers(self.status_queue, self._publish, workers=4),
                self._heartbeat(),
                self._ticker(),
                self._route_loop(),
            )
        finally:
            if server is not None:
                await server.stop()
            if metrics is not None:
                await metrics.cleanup()
            if self.proxier is not None:
                await self.proxier.close()
            self.runtime.close()
            await self.recorder.close()
            await self.sources.stop()
            await self.client.close()
            for own in (self.proxy_client, self.speaker_client):
                if own is not None:
                    await own.close()

    async def _prepare_node(self) -> None:
        await sandbox.ensure_node(self.net)
        await sandbox.ensure_ns_dir(self.net.cluster)
        mounts.write_launchers(self.cfg.state_dir / "bin")
        sandbox.write_skeleton(self.cfg.state_dir / "rootfs")

    async def _serve(self) -> Any:
        """The kubelet API (logs, exec, port-forward) on the node's address, in its netns."""
        from kubesvc.kubelet.server import KubeletServer

        token = _token_for(self.cfg.kubeconfig)
        server = KubeletServer(
            self, token, self.net.ip, self.cfg.kubelet_port, cert_dir=self.cfg.state_dir / "tls"
        )
        sock = sandbox.netns.listen_in_netns(self.net.netns, self.net.ip, self.cfg.kubelet_port)
        try:
            await server.start(sock=sock)
        except Exception:
            log.exception("the kubelet API did not start; logs/exec/port-forward are unavailable")
            sock.close()
            return None
        return server

    # -- node registration -------------------------------------------------------------------
    def _node_object(self) -> dict[str, Any]:
        cpus = str(os.cpu_count() or 1)
        mem_kib = _mem_kib()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.cfg.name,
                "labels": {
                    "kubernetes.io/hostname": self.cfg.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": _arch(),
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": _arch(),
                },
            },
            "spec": {"podCIDR": self.net.pod_cidr, "podCIDRs": [self.net.pod_cidr]},
            "status": self._node_status(cpus, mem_kib),
        }

    def _node_status(self, cpus: str | None = None, mem_kib: int | None = None) -> dict[str, Any]:
        cpus = cpus or str(os.cpu_count() or 1)
        mem = f"{mem_kib or _mem_kib()}Ki"
        now = now_rfc3339()
        capacity = {"cpu": cpus, "memory": mem, "pods": "110", "ephemeral-storage": "10Gi"}
        cond = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._since(t, s, now),
                }
                for t, s, r, m in cond
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.net.ip},
                {"type": "Hostname", "address": self.cfg.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.kubelet_port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": self.cfg.name,
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "kubesvc://0.1.0",
                "kubeletVersion": "v1.32.4",
                "kubeProxyVersion": "v1.32.4",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    def _since(self, ctype: str, status: str, now: str) -> str:
        node = self.own_node.get(self.cfg.name) if self.own_node.has_synced else None
        for c in ((node or {}).get("status") or {}).get("conditions") or []:
            if c.get("type") == ctype and c.get("status") == status:
                return str(c.get("lastTransitionTime") or now)
        return now

    async def _register(self) -> None:
        delay = 0.1
        while True:
            try:
                try:
                    await self.client.create("Node", None, self._node_object())
                except ApiException as e:
                    if e.status != 409:
                        raise
                    await self.client.patch(
                        "Node",
                        None,
                        self.cfg.name,
                        {
                            "status": self._node_status(),
                            "spec": {"podCIDR": self.net.pod_cidr, "podCIDRs": [self.net.pod_cidr]},
                        },
                    )
                    await self.client.patch(
                        "Node",
                        None,
                        self.cfg.name,
                        {"status": self._node_status()},
                        subresource="status",
                    )
                await self._renew_lease()
                return
            except (ApiException, OSError) as e:
                log.info("waiting for the API server", extra={"kv": {"error": str(e)}})
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def _renew_lease(self) -> None:
        now = now_rfc3339().replace("Z", ".000000Z")
        lease = {
            "metadata": {"name": self.cfg.name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.cfg.name,
                "leaseDurationSeconds": LEASE_DURATION,
                "renewTime": now,
            },
        }
        try:
            await self.client.patch(
                "Lease", "kube-node-lease", self.cfg.name, {"spec": lease["spec"]}
            )
        except ApiException as e:
            if e.status != 404:
                raise
            await self.client.create("Lease", "kube-node-lease", lease)

    async def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_RENEW)
            try:
                await self._renew_lease()
                if time.monotonic() - last_status >= STATUS_EVERY:
                    await self.client.patch(
                        "Node",
                        None,
                        self.cfg.name,
                        {"status": self._node_status()},
                        subresource="status",
                    )
                    last_status = time.monotonic()
            except (ApiException, OSError) as e:
                log.warning("heartbeat failed", extra={"kv": {"error": str(e)}})

    # -- routes ----------------------------------------------------------------------------
    def _routes_changed(self) -> None:
        self._routes_dirty.set()

    async def _route_loop(self) -> None:
        while True:
            await self._routes_dirty.wait()
            self._routes_dirty.clear()
            peers = {}
            for node in self.nodes.list():
                if node["metadata"]["name"] == self.cfg.name:
                    continue
                cidr = (node.get("spec") or {}).get("podCIDR")
                ip = next(
                    (
                        a.get("address")
                        for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"
                    ),
                    None,
                )
                if cidr and ip:
                    peers[cidr] = ip
            try:
                await sandbox.set_peer_routes(self.net, peers)
            except Exception:
                log.exception("setting routes failed")
                await asyncio.sleep(1)
                self._routes_dirty.set()

    # -- pods --------------------------------------------------------------------------------
    def _pod_event(self, pod: dict[str, Any]) -> None:
        self.queue.add(object_key(pod))

    async def _adopt(self) -> None:
        """Take over what the previous agent on this node left (see the module docstring)."""
        pods_dir = self.cfg.state_dir / "pods"
        live = {p["metadata"]["uid"]: p for p in self.pods.list()}
        mounted = netns.mount_points()
        adopted: list[PodWorker] = []
        infos: dict[Path, Any] = {}
        for d in sorted(pods_dir.iterdir()) if pods_dir.exists() else []:
            try:
                infos[d] = json.loads((d / "sandbox.json").read_text())
            except (OSError, ValueError):
                infos[d] = None
        # every pod's pause, found in one pass over /proc
        pauses = sandbox.pauses(
            [Path(i["mnt"]) for i in infos.values() if isinstance(i, dict) and i.get("mnt")]
        )
        for d, info in infos.items():
            uid = d.name
            if info is None or not _sandbox_intact(info, mounted, pauses):
                await self._clear_lost(uid, d, info, live.get(uid))
                continue
            pod = live.get(uid)
            sb = Sandbox(
                info["namespace"],
                info["name"],
                uid,
                Path(info["netns"]),
                Path(info["uts"]),
                Path(info["mnt"]),
                info["ip"],
                info["hostname"],
                info.get("host_network") is True,
                Path(info["ipc"]) if info.get("ipc") else None,
                Path(info["pid"]) if info.get("pid") else None,
                Path(info["user"]) if info.get("user") else None,
                int(info.get("id_base") or 0),
            )
            if pod is None:
                # deleted while no agent ran: adopted only to be torn down by _sync_pod
                pod = {
                    "metadata": {"uid": uid, "name": info["name"], "namespace": info["namespace"]},
                    "spec": {},
                }
                self.queue.add(f"{info['namespace']}/{info['name']}")
            worker = PodWorker(
                pod, sb, self.runtime, d, self.net.ip, self._record, self._status_changed
            )
            # registered first: a container that ended while no agent ran is reported by
            # adopt() at once, through _on_exit, which finds its worker here
            self.workers[uid] = worker
            worker.adopt()
            if sb.id_base:
                self._id_bases[uid] = sb.id_base
            # the root is built at most once: a worker that had not finished it builds it
            worker.volumes_ready = worker.volumes_ready and sandbox.built(sb)
            if Path(info["mnt"]) in pauses:
                worker.pause = sandbox.pause_identity(pauses[Path(info["mnt"])])
            # a ConfigMap or Secret may have changed while no agent ran, and the informers'
            # first list found no worker to tell
            worker.volumes_dirty = True
            adopted.append(worker)
        _kill_unrecorded(adopted, pauses)
        self.ipam.retain(set(live) | set(self.workers))

    async def _clear_lost(
        self, uid: str, d: Path, info: dict[str, Any] | None, pod: dict[str, Any] | None
    ) -> None:
        """A sandbox that is gone (stop, reboot) or was never finished (the agent died while
        creating it): remove what is left of it. A pod that should still run gets a new
        sandbox from _sync_pod, with the same IP, its containers' restarts counted."""
        pod_netns = Path(info["netns"]).name if info else f"ksv-{self.net.cluster}-p-{uid[:8]}"
        host_network = bool(info and info.get("host_network") is True)
        await sandbox.remove_pod_sandbox(
            self.net.cluster, uid, pod_netns, self.net.netns, host_network
        )
        phase = ((pod or {}).get("status") or {}).get("phase")
        if (
            pod is None
            or pod["metadata"].get("deletionTimestamp")
            or phase in ("Succeeded", "Failed")
        ):
            shutil.rmtree(d, ignore_errors=True)
            self.ipam.release(uid)
            return
        if info is None:
            return  # never ran: _start_pod starts it from scratch
        try:
            meta = json.loads((d / "worker.json").read_text())
        except (OSError, ValueError):
            meta = {}
        self._lost[uid] = (meta.get("restart_counts") or {}, load_procs(d / "procs.json"))
        self._record(
            pod,
            "Normal",
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.",
        )

    async def _sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        ns, name = key.split("/", 1)
        stale = [
            w
            for w in self.workers.values()
            if w.pod["metadata"].get("namespace") == ns
            and w.pod["metadata"].get("name") == name
            and (pod is None or w.uid != pod["metadata"]["uid"])
        ]
        for w in stale:
            await self._terminate(w, 0.0, None)
        if pod is None:
            return
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if pod["metadata"].get("deletionTimestamp"):
            if worker is None:
                await self._finish_delete(pod)
                return
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            grace = float(grace) if isinstance(grace, int) and grace > 0 else 0.0
            # in the background: this pod's later events (a shorter grace period, a forced
            # delete) must still reach it while its preStop hooks and grace period run
            self._terminate(worker, grace, pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if worker is None:
            if phase in ("Succeeded", "Failed"):
                return
            await self._start_pod(pod)
            return
        before, after = worker.pod.get("metadata") or {}, pod.get("metadata") or {}
        if any(before.get(k) != after.get(k) for k in ("labels", "annotations")):
            worker.volumes_dirty = True  # downwardAPI files follow labels and annotations
        worker.pod = pod
        published = self._published.get(uid)
        if published is not None and conditions_overwritten(published, pod):
            # someone else changed what this agent reported (the node controller marks pods
            # not Ready when the node's lease lapses): report it again, as the kubelet's
            # status manager reconciles
            del self._published[uid]
            self._status_changed(uid)

    async def _start_pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._starting:
            return
        self._starting.add(uid)
        try:
            d = self.cfg.state_dir / "pods" / uid
            d.mkdir(parents=True, exist_ok=True)
            host_network = (pod.get("spec") or {}).get("hostNetwork") is True
            if host_network:
                # the node's network namespace, address and name, as a pod sharing the
                # host's namespaces sees them upstream
                ip, hostname, pod_netns = self.net.ip, self.cfg.name, self.net.netns
            else:
                ip, hostname = self.ipam.allocate(uid), pod_hostname(pod)
                pod_netns = f"ksv-{self.net.cluster}-p-{uid[:8]}"
            write_pod_files(
                d / "files",
                pod,
                ip,
                self.cfg.dns_ip,
                self.cfg.cluster_domain,
            )
            spec = pod.get("spec") or {}
            sb = await sandbox.create_pod_sandbox(
                self.net,
                namespace=pod["metadata"]["namespace"],
                name=pod["metadata"]["name"],
                uid=uid,
                ip=ip,
                hostname=hostname,
                pod_netns=pod_netns,
                host_network=host_network,
                host_pid=spec.get("hostPID") is True,
                host_ipc=spec.get("hostIPC") is True,
                id_base=self._id_base(uid, spec),
            )
            (d / "sandbox.json").write_text(
                json.dumps(
                    {
                        "uid": uid,
                        "namespace": sb.namespace,
                        "name": sb.name,
                        "netns": str(sb.netns),
                        "uts": str(sb.uts),
                        "mnt": str(sb.mnt),
                        "ipc": str(sb.ipc) if sb.ipc else None,
                        "pid": str(sb.pid) if sb.pid else None,
                        "user": str(sb.user) if sb.user else None,
                        "id_base": sb.id_base,
                        "ip": ip,
                        "hostname": hostname,
                        "host_network": host_network,
                    }
                )
            )
            worker = PodWorker(
                pod, sb, self.runtime, d, self.net.ip, self._record, self._status_changed
            )
            lost = self._lost.pop(uid, None)
            if lost is not None:
                worker.carry_over(*lost)
            self.workers[uid] = worker
            await self._start_due(worker)
            self._status_changed(uid)
        finally:
            self._starting.discard(uid)

    async def _start_due(self, worker: PodWorker) -> None:
        if worker.start_lock.locked():
            return  # a start under way does it; whatever it misses, the next tick does
        async with worker.start_lock:
            await self._start_due_locked(worker)

    async def _start_due_locked(self, worker: PodWorker) -> None:
        needed = [c for c in worker.containers if c.current is None]
        if not needed:
            return
        if worker.pause is not None and not sandbox.pause_alive(worker.pause):
            # the pause was killed, and the kernel ended the pod's PID namespace with it:
            # the pod gets a new root and PID namespace, and its containers start again in
            # them, as upstream's kubelet makes a new sandbox when the old one dies
            log.warning(
                "the pod's pause is gone: making its sandbox again",
                extra={"kv": {"pod": worker.uid, "pid": worker.pause[0]}},
            )
            worker.pause = None
            worker.volumes_ready = False
            await sandbox.discard_pod_root(worker.sandbox)
        if not worker.volumes_ready:
            if time.monotonic() < worker.next_volume_try:
                return
            if not await self._setup_volumes(worker):
                worker.volumes_failed()
                return
            worker.volumes_mounted()
        refs = await self._fetch_refs(worker.pod)
        worker.due(lambda c: self._env(worker, c, refs))

    def _env(
        self, worker: PodWorker, c: ContainerState, refs: dict[str, Any]
    ) -> dict[str, str] | None:
        pod = worker.pod
        spec = pod.get("spec") or {}
        services_env = podenv.service_env(
            self.services.list(),
            pod["metadata"]["namespace"],
            spec.get("enableServiceLinks", True) is not False,
        )
        ns = pod["metadata"]["namespace"]
        lookup = podenv.DictLookup(
            {
                (ns, k.split("/", 1)[1]): v
                for k, v in refs.items()
                if k.startswith("ConfigMap/") and v
            },
            {(ns, k.split("/", 1)[1]): v for k, v in refs.items() if k.startswith("Secret/") and v},
        )
        env, problems = podenv.container_env(
            pod,
            c.spec,
            services_env,
            lookup,
            pod_ips=[worker.sandbox.ip],
            host_ips=[self.net.ip],
            node_name=self.cfg.name,
        )
        if problems:
            # upstream stops at the first problem and reports it, with a Failed event
            if c.waiting_message != problems[0]:
                self._record(pod, "Warning", "Failed", f"Error: {problems[0]}")
            c.waiting_reason, c.waiting_message = "CreateContainerConfigError", problems[0]
            c.next_start = time.monotonic() + 5
            self._status_changed(worker.uid)
            return None
        return env

    # -- volumes -----------------------------------------------------------------------------
    def _source_changed(self, kind: str, obj: dict[str, Any]) -> None:
        """A ConfigMap or Secret changed: the pods whose volumes read it refresh them, and
        one waiting for it (FailedMount) retries now."""
        m = obj.get("metadata") or {}
        ref = (kind, m.get("name"))
        for w in self.workers.values():
            if w.pod["metadata"].get("namespace") != m.get("namespace"):
                continue
            if ref in volumes.referenced_sources(w.pod):
                w.volumes_dirty = True
                w.next_volume_try = 0.0

    async def _volume_plan(
        self, worker: PodWorker
    ) -> tuple[list[volumes.VolumePlan], list[volumes.MountPlan], list[str]]:
        pod = worker.pod
        ns = pod["metadata"]["namespace"]
        found: dict[str, dict[tuple[str, str], Any]] = {"configMap": {}, "secret": {}}
        fetched = 0
        referenced = volumes.referenced_sources(pod)
        self.sources.set_pod(pod["metadata"]["uid"], ns, referenced)
        for kind, name in sorted(referenced):
            obj = self.sources.get(kind, ns, name)
            if obj is None and fetched < MAX_SOURCE_GETS:
                # the cache may not have caught up with an object created just before the pod
                fetched += 1
                try:
                    obj = await self.client.get(
                        "ConfigMap" if kind == "configMap" else "Secret", ns, name
                    )
                except ApiException:
                    obj = None
            if obj is not None:
                found[kind][(ns, name)] = obj
        lookup = podenv.DictLookup(found["configMap"], found["secret"])
        tokens = await self._pod_tokens(pod)
        plans = volumes.plan_volumes(pod, lookup, tokens=tokens, id_base=worker.sandbox.id_base)
        mount_plans, errors = volumes.plan_mounts(pod)
        return plans, mount_plans, errors

    def _id_base(self, uid: str, spec: dict[str, Any]) -> int:
        """The host id the pod's root maps to in its user namespace (0: it shares the
        host's users; userns.py says when)."""
        if uid in self._id_bases:
            return self._id_bases[uid]
        reason = userns.host_users_reason(spec, sandbox.user_namespaces_work())
        if reason is not None:
            log.debug("pod shares the host's users", extra={"kv": {"pod": uid, "why": reason}})
            return 0
        self._id_bases[uid] = userns.free_base(self._id_bases.values())
        return self._id_bases[uid]

    @staticmethod
    def _service_account_dir(pod: dict[str, Any], pod_dir: Path) -> Path | None:
        """The directory of the pod's token volume, made now so the sandbox can bind it."""
        mount = volumes.service_account_mount(pod)
        if mount is None:
            return None
        path = mounts.volume_dir(pod_dir / "volumes", mount.volume)
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def _pod_tokens(self, pod: dict[str, Any]) -> dict[volumes.TokenSource, str]:
        """The service-account tokens the pod's projected volumes need, bound to the pod
        (cached by the token manager until 80 % of their lifetime has passed)."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        out: dict[volumes.TokenSource, str] = {}
        for audience, seconds in sorted(volumes.token_sources(pod)):
            key = TokenKey(
                meta["namespace"],
                str(spec.get("serviceAccountName") or "default"),
                meta["name"],
                meta["uid"],
                audience,
                seconds,
            )
            try:
                out[(audience, seconds)] = await self.tokens.get(key)
            except ApiException as e:
                out[(audience, seconds)] = volumes.TokenError(e.message or str(e.status))
            except (ValueError, aiohttp.ClientError, TimeoutError, OSError) as e:
                out[(audience, seconds)] = volumes.TokenError(str(e) or type(e).__name__)
        return out

    async def _setup_volumes(self, worker: PodWorker) -> bool:
        """Write the pod's volumes and mount them in its mount namespace; False (with a
        FailedMount event) while any cannot be set up, as upstream holds the pod in
        ContainerCreating."""
        plans, mount_plans, errors = await self._volume_plan(worker)
        root = worker.volume_root()
        failed = False
        for plan in plans:
            error = mounts.prepare(root, plan)
            if error is not None:
                failed = True
                message = volumes.failed_mount_message(plan.name, error)
                self._record(worker.pod, "Warning", "FailedMount", message)
        for error in errors:
            failed = True
            self._record(worker.pod, "Warning", "FailedMount", error)
        if failed:
            return False
        # the token volume at the service-account path is bound with the root's own mounts
        bound = volumes.service_account_mount(worker.pod)
        mount_plans = [m for m in mount_plans if m != bound]
        d = self.cfg.state_dir / "pods" / worker.uid
        (d / "root").mkdir(mode=0o700, exist_ok=True)
        spec = worker.pod.get("spec") or {}
        containers = [
            c
            for key in ("initContainers", "containers")
            for c in (spec.get(key) if isinstance(spec.get(key), list) else [])
            if isinstance(c, dict)
        ]
        pod_root = podroot.PodRoot(
            root=str(d / "root"),
            files_dir=str(d / "files"),
            ro_dirs=RUNTIME_DIRS,
            binds=tuple(mounts.image_binds(worker.pod, self.cfg.state_dir / "bin")),
            service_account=str(sa) if (sa := self._service_account_dir(worker.pod, d)) else None,
            work_dirs=podroot.work_dirs(containers),
            privileged=any(
                isinstance(c.get("securityContext"), dict)
                and c["securityContext"].get("privileged") is True
                for c in containers
            ),
            host_pid=worker.sandbox.pid is None,
            id_base=worker.sandbox.id_base,
            volume_script=mounts.mount_script(root, plans, mount_plans, str(d / "root")),
        )
        error = await sandbox.build_pod_root(
            worker.sandbox, pod_root, d / "root.fstab", self.cfg.state_dir / "rootfs"
        )
        if error is not None:
            self._record(worker.pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {error}")
            return False
        if worker.sandbox.pid is not None:
            pause = sandbox.pause_pid(worker.sandbox.mnt)
            worker.pause = sandbox.pause_identity(pause) if pause is not None else None
        return True

    async def _refresh_volumes(self, worker: PodWorker) -> None:
        """Bring mounted volumes' content up to date (the atomic writer swaps `..data`)."""
        worker.volumes_dirty = False
        plans, _, _ = await self._volume_plan(worker)
        root = worker.volume_root()
        for plan in plans:
            if plan.kind == "files" and plan.error is None:
                mounts.prepare(root, plan)

    async def _fetch_refs(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The ConfigMaps and Secrets the pod's env refers to, read once per start."""
        ns = pod["metadata"]["namespace"]
        wanted: set[tuple[str, str]] = set()
        for c in (pod.get("spec") or {}).get("initContainers", []) + (pod.get("spec") or {}).get(
            "containers", []
        ):
            for src in c.get("envFrom") or []:
                if src.get("configMapRef"):
                    wanted.add(("ConfigMap", src["configMapRef"].get("name", "")))
                if src.get("secretRef"):
                    wanted.add(("Secret", src["secretRef"].get("name", "")))
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if vf.get("configMapKeyRef"):
                    wanted.add(("ConfigMap", vf["configMapKeyRef"].get("name", "")))
                if vf.get("secretKeyRef"):
                    wanted.add(("Secret", vf["secretKeyRef"].get("name", "")))
        out: dict[str, Any] = {}
        for kind, name in wanted:
            try:
                out[f"{kind}/{name}"] = await self.client.get(kind, ns, name)
            except ApiException:
                out[f"{kind}/{name}"] = None
        return out

    async def _ticker(self) -> None:
        """Start due containers (restarts after back-off) and run due probes; every
        VOLUME_RESYNC seconds, bring every pod's volumes up to date whatever was missed."""
        resync_at = time.monotonic() + VOLUME_RESYNC
        while True:
            await asyncio.sleep(TICK)
            if time.monotonic() >= resync_at:
                resync_at = time.monotonic() + VOLUME_RESYNC
                for worker in self.workers.values():
                    worker.volumes_dirty = True
            for worker in list(self.workers.values()):
                try:
                    # a pod being deleted keeps its readiness probes (and its status) going,
                    # so it leaves its Services' ready endpoints when it stops being ready
                    if not worker.terminating:
                        if worker.volumes_ready and worker.volumes_dirty:
                            await self._refresh_volumes(worker)
                        if any(c.current is None for c in worker.containers):
                            await self._start_due(worker)
                    await worker.probe()
                except Exception:
                    log.exception("pod tick failed", extra={"kv": {"pod": worker.uid}})

    def _on_exit(self, uid: str, proc: Proc) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.on_exit(proc)

    def _status_changed(self, uid: str) -> None:
        self.status_queue.add(uid)

    async def _publish(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is None:
            return
        pod = self.pods.get(object_key(worker.pod)) or worker.pod
        if pod["metadata"].get("uid") != uid:
            return
        status = worker.status(pod.get("status") or {})
        text = json.dumps(status, sort_keys=True)
        if self._published.get(uid) == text:
            return
        try:
            await self.client.patch(
                "Pod",
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                {"status": status},
                subresource="status",
            )
            self._published[uid] = text
        except ApiException as e:
            if e.status == 404:
                return
            raise

    def _terminate(
        self, worker: PodWorker, grace: float, pod: dict[str, Any] | None
    ) -> asyncio.Task[None]:
        """Start stopping `worker`'s pod (once), or shorten a stop under way to `grace`;
        once stopped, the pod's deletion is confirmed to the API server."""
        if worker.teardown is not None:
            worker.shorten_grace(grace)
            return worker.teardown

        async def run() -> None:
            try:
                await self._teardown(worker, grace)
                if pod is not None:
                    await self._finish_delete(pod)
            except Exception:
                log.exception("stopping a pod failed", extra={"kv": {"pod": worker.uid}})

        worker.teardown = asyncio.get_running_loop().create_task(run())
        return worker.teardown

    async def _teardown(self, worker: PodWorker, grace: float) -> None:
        if worker.terminating and worker.uid not in self.workers:
            return
        await worker.stop(grace)
        self.workers.pop(worker.uid, None)
        self.tokens.forget_pod(worker.uid)
        self.sources.forget_pod(worker.uid)
        self._published.pop(worker.uid, None)
        await sandbox.remove_pod_sandbox(
            self.net.cluster,
            worker.uid,
            worker.sandbox.netns.name,
            self.net.netns,
            worker.sandbox.host_network,
        )
        self.ipam.release(worker.uid)
        self._id_bases.pop(worker.uid, None)
        shutil.rmtree(self.cfg.state_dir / "pods" / worker.uid, ignore_errors=True)

    async def _finish_delete(self, pod: dict[str, Any]) -> None:
        m = pod["metadata"]
        with contextlib.suppress(ApiException):
            await self.client.delete(
                "Pod", m["namespace"], m["name"], grace_period=0, preconditions={"uid": m["uid"]}
            )

    def _record(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": pod.get("metadata", {})}
        self.recorder.event(obj, type_, reason, message)

    # -- PodRuntimeView (for the kubelet server) ------------------------------------------
    def _worker(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            m = w.pod["metadata"]
            if m.get("namespace") == namespace and m.get("name") == name:
                return w
        return None

    def sandbox(self, namespace: str, name: str) -> Sandbox | None:
        w = self._worker(namespace, name)
        return w.sandbox if w else None

    def containers(self, namespace: str, name: str) -> list[str]:
        w = self._worker(namespace, name)
        return [c.name for c in w.containers if not c.init] if w else []

    def log_path(self, namespace: str, name: str, container: str, previous: bool) -> Path | None:
        w = self._worker(namespace, name)
        c = w.by_name(container) if w else None
        if c is None:
            return None
        proc = c.last_terminated() if previous else (c.current or c.previous)
        return Path(proc.log) if proc else None

    def container_env(self, namespace: str, name: str, container: str) -> dict[str, str]:
        w = self._worker(namespace, name)
        c = w.by_name(container) if w else None
        if w is None or c is None:
            return {}
        return container_environment(w.sandbox.hostname, c.env)

    def working_dir(self, namespace: str, name: str, container: str) -> str | None:
        w = self._worker(namespace, name)
        c = w.by_name(container) if w else None
        wd = c.spec.get("workingDir") if c else None
        return wd if isinstance(wd, str) and wd else None

    def privileges(self, namespace: str, name: str, container: str) -> list[str]:
        w = self._worker(namespace, name)
        c = w.by_name(container) if w else None
        if w is None or c is None:
            return security.privileges_argv(security.Security(caps=frozenset()))
        return w.privileges(c)

    def running(self, namespace: str, name: str, container: str) -> bool:
        w = self._worker(namespace, name)
        c = w.by_name(container) if w else None
        return c is not None and c.current is not None and c.current.running

    def stdin(self, namespace: str, name: str, container: str) -> ContainerStdin | None:
        w = self._worker(namespace, name)
        c = w.by_name(container) if w else None
        proc = c.current if c else None
        if c is None or proc is None or not proc.stdin:
            return None
        return ContainerStdin(
            Path(proc.stdin),
            bool(c.spec.get("stdinOnce")),
            lambda: self.runtime.signal(proc, signal.SIGUSR1),  # the shim lets go
        )


def _lock_state_dir(state_dir: Path) -> Any:
    """Hold the node's lock for the life of this process: a second agent for the same node
    (started by hand, or while the previous one is still exiting) waits for it."""
    lock = open(state_dir / "agent.lock", "a+")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.warning(
            "another agent runs for this node; waiting for it to exit",
            extra={"kv": {"lock": str(state_dir / "agent.lock")}},
        )
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _write_agent_file(state_dir: Path) -> None:
    """agent.json: this agent (pid and start time) has registered the node and taken over
    its pods; `kubesvc up`/`start` wait for it."""
    pid = os.getpid()
    tmp = state_dir / ".agent.json.tmp"
    tmp.write_text(json.dumps({"pid": pid, "start_ticks": boot_time_ticks(pid)}))
    tmp.replace(state_dir / "agent.json")


def conditions_overwritten(published: str, pod: dict[str, Any]) -> bool:
    """Whether the pod's conditions in the API say otherwise than the status this agent
    last published (`published`, its JSON) for each condition type it published."""
    try:
        mine = json.loads(published).get("conditions") or []
        theirs = (pod.get("status") or {}).get("conditions") or []
        reported = {c["type"]: c.get("status") for c in mine if isinstance(c, dict)}
        now = {c.get("type"): c.get("status") for c in theirs if isinstance(c, dict)}
    except (ValueError, AttributeError, KeyError, TypeError):
        return False
    return any(t in now and now[t] != v for t, v in reported.items())


def _sandbox_intact(info: dict[str, Any], mounted: set[str], pauses: dict[Path, int]) -> bool:
    """The sandbox's network, UTS and IPC namespaces are all still there, and so are its
    mount and PID namespaces once its root is built, with the pause that holds the PID
    namespace."""

    def there(key: str) -> bool:
        return not info.get(key) or str(Path(info[key]).resolve()) in mounted

    if not all(there(key) for key in ("netns", "uts", "ipc", "user")):
        return False
    if not info.get("mnt") or str(Path(info["mnt"]).resolve()) not in mounted:
        return True  # its root is not built yet
    if not info.get("pid"):
        return True
    return there("pid") and Path(info["mnt"]) in pauses


def _kill_unrecorded(workers: list[PodWorker], pauses: dict[Path, int]) -> None:
    """Processes in an adopted pod's network namespace outside the sessions of its recorded
    containers: a container the previous agent started but had not recorded yet (it would
    run twice), exec sessions and probes whose agent is gone."""
    sessions = {
        c.current.pid
        for w in workers
        for c in w.containers
        if c.current is not None and ContainerRuntime.alive(c.current)
    }
    # each pod's pause, and the unshare that waits for it, are a session of their own
    for pause in pauses.values():
        with contextlib.suppress(OSError):
            sessions.add(os.getsid(pause))
    found = [
        (p.pid, p.session)
        for p in netns.processes_in(w.sandbox.netns for w in workers if not w.sandbox.host_network)
    ]
    # a hostNetwork pod shares its node's network namespace: its processes are the ones in
    # its mount namespace
    for pid in sandbox.processes_in_mount_ns(
        [w.sandbox.mnt for w in workers if w.sandbox.host_network]
    ):
        with contextlib.suppress(OSError):
            found.append((pid, os.getsid(pid)))
    for pid, session in found:
        if session not in sessions:
            log.warning(
                "killing a process no container of its pod started",
                extra={"kv": {"pid": pid, "session": session}},
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _token_for(kubeconfig: str) -> str:
    """The token the API server presents to kubelet APIs (kubelet-client.token beside the
    kubeconfigs it writes); no API request authenticates with it."""
    path = Path(kubeconfig).parent / "pki" / "kubelet-client.token"
    return path.read_text().strip() if path.exists() else ""


def _mem_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"
