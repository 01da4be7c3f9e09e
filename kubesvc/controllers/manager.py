"""`kubesvc controller-manager`: every control loop in one process, over one set of informers.

With `use_service_account_credentials` (upstream's --use-service-account-credentials, which
`kubesvc up` sets) the informers read as the manager's own user and each controller writes
with its own ServiceAccount's token (clientbuilder.py)."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Coroutine
from typing import Any

from kubesvc.client.events import EventRecorder
from kubesvc.client.informer import InformerFactory
from kubesvc.client.kubeconfig import cluster_ca, wait_for_server
from kubesvc.client.leaderelection import ElectionConfig, LeaderElector
from kubesvc.client.rest import ApiClient
from kubesvc.controllers.base import Context, Controller, run_all
from kubesvc.controllers.clientbuilder import ClientBuilder, wait_for_bindings

log = logging.getLogger("kubesvc.controller-manager")

# name -> "module:Class"; each controller is its own module
CONTROLLERS: dict[str, str] = {
    "endpoints": "kubesvc.controllers.endpoints:EndpointsController",
    "endpointslice": "kubesvc.controllers.endpointslice:EndpointSliceController",
    "endpointslice-mirroring": "kubesvc.controllers.endpointslice_mirroring:MirroringController",
    "replicaset": "kubesvc.controllers.replicaset:ReplicaSetController",
    "deployment": "kubesvc.controllers.deployment:DeploymentController",
    "scheduler": "kubesvc.controllers.scheduler:Scheduler",
    "nodelifecycle": "kubesvc.controllers.nodelifecycle:NodeLifecycleController",
    "taint-eviction-controller": "kubesvc.controllers.tainteviction:TaintEvictionController",
    "job": "kubesvc.controllers.job:JobController",
    "daemonset": "kubesvc.controllers.daemonset:DaemonSetController",
    "cronjob": "kubesvc.controllers.cronjob:CronJobController",
    "statefulset": "kubesvc.controllers.statefulset:StatefulSetController",
    "replicationcontroller": "kubesvc.controllers.replication:ReplicationManager",
    "serviceaccount": "kubesvc.controllers.serviceaccount:ServiceAccountsController",
    "root-ca-cert-publisher": "kubesvc.controllers.rootca:RootCAPublisher",
    "persistentvolume-binder": "kubesvc.controllers.volumebinding:VolumeBindingController",
    "resourcequota": "kubesvc.controllers.resourcequota:ResourceQuotaController",
    "lbipam": "kubesvc.controllers.lbipam.controller:LoadBalancerIPController",
}


def load(name: str) -> type[Controller]:
    module, cls = CONTROLLERS[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


async def run_controller_manager(
    kubeconfig: str,
    enabled: list[str] | None = None,
    resync_period: float = 300.0,
    settings: dict[str, float] | None = None,
    use_service_account_credentials: bool = False,
    scheduler_kubeconfig: str | None = None,
    election: ElectionConfig | None = None,
) -> int:
    """Run the controllers; with `election`, only while holding its Lease. Returns 1 when
    leadership is lost (the process exits, and its supervisor starts a new candidate)."""
    await wait_for_server(kubeconfig)
    client = ApiClient.from_kubeconfig(
        kubeconfig, user_agent="kube-controller-manager/v1.32.4 (kubesvc)"
    )
    elector = None
    if election is not None:
        # upstream starts nothing, informers included, before it leads
        elector = LeaderElector(client, election)
        await elector.acquire()
        print(f"kubesvc controller-manager leading as {elector.me}", flush=True)
    builder = None
    if use_service_account_credentials:
        builder = ClientBuilder(kubeconfig, client, scheduler_kubeconfig)
    # every informer checks the types of what it receives: controllers read objects the
    # API describes, and an object that is not one is left out (logged once per revision)
    factory = InformerFactory(client, resync_period=resync_period, checked=True)
    recorder = EventRecorder(client, "controller-manager")
    # upstream's --root-ca-file; here the CA the kubeconfig trusts, the cluster's
    root_ca = cluster_ca(kubeconfig)
    ctx = Context(
        client,
        factory,
        recorder,
        dict(settings or {}),
        root_ca,
        builder.client if builder is not None else None,
    )
    names = enabled or list(CONTROLLERS)
    controllers = [load(n)(ctx) for n in names]
    factory.start()
    if builder is not None and not await wait_for_bindings(client, names):
        log.warning("the controllers' bootstrap bindings are not all there; starting anyway")
    while not await factory.wait_for_sync(timeout=10):
        log.warning("waiting for informer caches to sync")

    print(f"kubesvc controller-manager running: {', '.join(names)}", flush=True)
    lost = False
    try:
        if elector is None or election is None:
            await run_all(controllers)
        else:
            recorder.event(_lease_ref(election), "Normal", "LeaderElection",
                           f"{elector.me} became leader")  # fmt: skip
            lost = await _lead(run_all(controllers), elector)
    finally:
        if elector is not None and not lost:
            await elector.release()
        for c in controllers:
            await c.stop()
        await factory.stop()
        await recorder.close()
        if builder is not None:
            await builder.close()
        await client.close()
    return 1 if lost else 0


async def _lead(work: Coroutine[Any, Any, None], elector: LeaderElector) -> bool:
    """Run `work` while the Lease is renewed; True when leadership was lost."""
    runner = asyncio.ensure_future(work)
    holder = asyncio.ensure_future(elector.hold())
    try:
        done, _ = await asyncio.wait({runner, holder}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (runner, holder):
            task.cancel()
    if runner in done:
        runner.result()
    return holder in done


def _lease_ref(election: ElectionConfig) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"namespace": election.namespace, "name": election.name},
    }
