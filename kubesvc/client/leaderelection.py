"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection with a
LeaseLock: candidates try every retry period; the holder renews every retry period and
gives up (its process exits) when it has not renewed for the renew deadline; another takes
over once the lease has not changed, as seen by that candidate, for the lease duration.

`attempt` is pure: what one try does, given the Lease read now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubesvc.client.rest import ApiClient, ApiException

log = logging.getLogger("kubesvc.leaderelection")

LEASE = "Lease"


@dataclass(frozen=True)
class ElectionConfig:
    """Upstream's --leader-elect-* flags and their defaults."""

    namespace: str = "kube-system"
    name: str = "kube-controller-manager"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def check(self) -> None:
        if not self.lease_duration > self.renew_deadline > 0 or self.retry_period <= 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > 0 and a positive "
                "retry period"
            )


def identity() -> str:
    """hostname_uuid, as upstream's controller-manager names itself."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observed:
    """The Lease's record as a candidate last saw it change, and when (its own clock)."""

    holder: str
    spec: tuple[Any, ...]
    at: float
    duration: float = 15.0

    @property
    def expires(self) -> float:
        return self.at + self.duration


def _spec(lease: Any) -> dict[str, Any]:
    spec = lease.get("spec") if isinstance(lease, dict) else None
    return spec if isinstance(spec, dict) else {}


def observe(
    lease: dict[str, Any] | None, observed: Observed | None, config: ElectionConfig, at: float
) -> Observed | None:
    """What a candidate knows after reading the Lease at monotonic time `at`: the record
    and when it last changed."""
    if lease is None:
        return observed
    spec = _spec(lease)
    holder = spec.get("holderIdentity") or ""
    record = (
        holder,
        spec.get("renewTime"),
        spec.get("leaseDurationSeconds"),
        spec.get("leaseTransitions"),
    )
    if observed is not None and observed.spec == record:
        return observed
    duration = spec.get("leaseDurationSeconds")
    ok = isinstance(duration, int) and not isinstance(duration, bool) and duration > 0
    return Observed(str(holder), record, at, float(duration) if ok else config.lease_duration)


def attempt(
    lease: dict[str, Any] | None,
    me: str,
    config: ElectionConfig,
    observed: Observed | None,
    now: float,
    monotonic: float,
) -> tuple[dict[str, Any] | None, Observed | None]:
    """One try to acquire or renew. Returns the Lease to write (None: it is someone
    else's and not expired) and what is observed now."""
    spec = _spec(lease)
    holder = spec.get("holderIdentity") or ""
    observed = observe(lease, observed, config, monotonic)
    if (
        lease is not None
        and holder
        and holder != me
        and observed is not None
        and monotonic < observed.expires
    ):
        return None, observed
    transitions = spec.get("leaseTransitions")
    transitions = transitions if isinstance(transitions, int) and transitions >= 0 else 0
    stamp = _micro_time(now)
    new_spec = {
        "holderIdentity": me,
        "leaseDurationSeconds": int(config.lease_duration),
        "acquireTime": spec.get("acquireTime") if holder == me else stamp,
        "renewTime": stamp,
        "leaseTransitions": transitions if holder == me or lease is None else transitions + 1,
    }
    if lease is None:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": LEASE,
            "metadata": {"name": config.name, "namespace": config.namespace},
            "spec": new_spec,
        }
    else:
        body = {**lease, "spec": {**spec, **new_spec}}
    return body, observed


class LeaderElector:
    def __init__(
        self,
        client: ApiClient,
        config: ElectionConfig,
        me: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config.check()
        self.client, self.config = client, config
        self.me = me or identity()
        self._clock = clock
        self._observed: Observed | None = None
        self.last_renew = 0.0  # monotonic time of the last successful write

    async def _try(self) -> bool:
        c = self.config
        try:
            lease: dict[str, Any] | None = await self.client.get(LEASE, c.namespace, c.name)
        except ApiException as e:
            if e.status != 404:
                raise
            lease = None
        body, self._observed = attempt(
            lease, self.me, c, self._observed, self._clock(), time.monotonic()
        )
        if body is None:
            return False
        if lease is None:
            await self.client.create(LEASE, c.namespace, body)
        else:
            await self.client.update(LEASE, body)  # resourceVersion: a conflict is a loss
        self.last_renew = time.monotonic()
        return True

    async def _try_logged(self) -> bool:
        try:
            return await self._try()
        except (ApiException, OSError, TimeoutError) as e:
            log.info("leader election: try failed", extra={"kv": {"error": str(e)[:200]}})
            return False

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease."""
        c = self.config
        log.info(
            "attempting to acquire leader lease",
            extra={"kv": {"lease": f"{c.namespace}/{c.name}", "identity": self.me}},
        )
        # the Lease is watched meanwhile, so a renewal is seen when it happens and the
        # lease duration is counted from then, not from the next poll
        watcher = asyncio.create_task(self._watch_lease())
        try:
            while not await self._try_logged():
                await asyncio.sleep(self._until_next_try())
        finally:
            watcher.cancel()
        log.info("successfully acquired lease", extra={"kv": {"lease": f"{c.namespace}/{c.name}"}})

    def _until_next_try(self) -> float:
        """A retry period, or less when the holder's lease expires sooner."""
        wait = self.config.retry_period
        seen = self._observed
        if seen is not None and seen.holder not in ("", self.me):
            wait = min(wait, max(seen.expires - time.monotonic(), 0.0) + 0.01)
        return wait

    async def _watch_lease(self) -> None:
        c = self.config
        while True:
            try:
                async for _, obj in self.client.watch(
                    LEASE, c.namespace, field_selector=f"metadata.name={c.name}", bookmarks=False
                ):
                    if obj.get("kind") == LEASE:
                        self._observed = observe(obj, self._observed, c, time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the candidate's polls go on meanwhile
                log.debug("lease watch ended", extra={"kv": {"error": str(e)[:200]}})
            await asyncio.sleep(c.retry_period)

    async def hold(self) -> None:
        """Renew every retry period; return when leadership is lost (not renewed within
        the renew deadline, or the Lease is someone else's)."""
        c = self.config
        while True:
            await asyncio.sleep(c.retry_period)
            try:
                renewed = await asyncio.wait_for(self._try(), c.renew_deadline)
            except (ApiException, OSError, TimeoutError) as e:
                log.info("leader election: renew failed", extra={"kv": {"error": str(e)[:200]}})
                renewed = False
            if renewed:
                continue
            if self._observed is not None and self._observed.holder not in ("", self.me):
                break  # someone else holds it now
            if time.monotonic() - self.last_renew >= c.renew_deadline:
                break
        log.warning("leader election lost", extra={"kv": {"lease": f"{c.namespace}/{c.name}"}})

    async def release(self) -> None:
        """On a clean stop: give the Lease up at once, so another takes over without
        waiting out the lease duration (upstream's ReleaseOnCancel)."""
        c = self.config
        with contextlib.suppress(ApiException, OSError, TimeoutError):
            lease = await self.client.get(LEASE, c.namespace, c.name)
            if (lease.get("spec") or {}).get("holderIdentity") == self.me:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                await self.client.update(LEASE, {**lease, "spec": spec})
