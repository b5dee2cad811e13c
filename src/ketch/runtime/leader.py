"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection package does.

Several ``ketch up`` processes on one PostgreSQL database serve one cluster: each serves the API, and
exactly one at a time runs the controllers, the tasks and the kubelet (machinery/context.py decides what
that covers). Which one is decided by the Lease ``kube-system/ketch-controller-manager``:

- a candidate takes the Lease when it does not exist, names no holder (released), or has not been renewed
  for ``leaseDurationSeconds`` as this candidate measures it: the time is counted on this process's
  monotonic clock from when it last saw the Lease's record change, never read off ``renewTime``, so
  clocks that disagree cannot shorten a lease (client-go does the same);
- the holder renews it every ``retry_period``; if no renewal has succeeded for ``renew_deadline`` (shorter
  than the lease, so it lets go before anyone may take over) it stops its controllers and becomes a
  candidate again;
- every write is a compare-and-swap on the Lease's resourceVersion, so of two candidates racing for an
  expired lease one wins and the other gets a 409;
- a holder that stops cleanly releases the Lease (no holder), so another takes over at once instead of
  after the lease runs out;
- the holder names where it serves in the annotation ``ketch.dev/leader-url`` (``ADDRESS``), written in
  the same compare-and-swap as each acquire and renewal (and dropped on release), so the annotation always
  belongs to the ``holderIdentity`` beside it; the spec stays client-go's. The other processes read it on
  each of their retries and forward to it what only the leader can answer (server/forward.py).

``leader_election_master_status{name}`` on /metrics is 1 in the process that leads, as in
kube-controller-manager.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Gauge

from ketch.kinds.meta import now_micro
from ketch.machinery.api import Api
from ketch.machinery.client import Client
from ketch.machinery.errors import StatusError
from ketch.runtime.metrics import metric

log = logging.getLogger(__name__)
LEASE = ("coordination.k8s.io/v1", "Lease")
ADDRESS = "ketch.dev/leader-url"
JITTER = 1.2  # client-go's JitterFactor: retries are spread over [retry, retry * JITTER)

master_status = metric(Gauge, "leader_election_master_status", "1 while this process holds the Lease", ("name",))


def default_identity(port: int | None = None) -> str:
    """The host and the port this process serves: no two running processes share both, and a ketch
    restarted in the same place (kill -9, then ``ketch up`` again) is the same candidate, so it takes its
    own unexpired Lease back at once instead of waiting out the lease its previous life held."""
    host = socket.gethostname().split(".")[0] or "ketch"
    return f"{host}_{port}" if port else f"{host}_{uuid.uuid4().hex[:8]}"


@dataclass
class ElectionConfig:
    """What to elect through and how fast; the defaults are kube-controller-manager's (15 s / 10 s / 2 s)."""

    identity: str = field(default_factory=default_identity)
    namespace: str = "kube-system"
    name: str = "ketch-controller-manager"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    url: str = ""  # where this process serves (its https URL), published while it holds the Lease

    def __post_init__(self) -> None:
        if self.retry_period <= 0:
            raise ValueError(f"leader election: retry period must be greater than zero (got {self.retry_period})")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(f"leader election: renew deadline ({self.renew_deadline}s) must be greater than "
                             f"{JITTER} x the retry period ({self.retry_period}s)")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(f"leader election: lease duration ({self.lease_duration}s) must be greater than the "
                             f"renew deadline ({self.renew_deadline}s)")
        if not self.identity:
            raise ValueError("leader election: identity must not be empty")


class LeaderElector:
    """Campaigns for the Lease for as long as it runs; ``lead()`` when it wins, ``stand_down()`` when it
    loses (both awaited before it goes on)."""

    def __init__(self, api: Api, config: ElectionConfig) -> None:
        self.cfg = config
        self.client = Client(api, manager="ketch-leader-election")
        self.leading = False
        self._observed: tuple | None = None  # the Lease record last seen, and when (monotonic)
        self._observed_at = 0.0
        self.holder = ""  # the holder the Lease named when last read
        self.holder_url = ""  # and the address it published with it
        self._status = master_status.labels(config.name)
        self._status.set(0)

    # -- one attempt -----------------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease once; False when another holds it, or the write lost a race or failed."""
        cfg, t = self.cfg, time.monotonic()
        stamp = now_micro()
        try:
            lease = self.client.get(LEASE, cfg.namespace, cfg.name)
            if lease is None:
                self.client.create({
                    "apiVersion": LEASE[0], "kind": LEASE[1],
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace, "annotations": self._annotations({})},
                    "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": self._duration_field(),
                             "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0},
                })
                self._observe(None, t)
                self.holder, self.holder_url = cfg.identity, cfg.url
                return True
            spec = dict(lease.get("spec") or {})
            holder = self.holder = spec.get("holderIdentity") or ""
            self.holder_url = ((lease["metadata"].get("annotations") or {}).get(ADDRESS) or "") if holder else ""
            self._observe(spec, t)
            if holder and holder != cfg.identity and self._observed_at + float(spec.get("leaseDurationSeconds") or cfg.lease_duration) > t:
                return False  # held by another, and not yet expired by our clock
            if holder != cfg.identity:
                spec["acquireTime"] = stamp
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1  # as client-go counts them
            spec.update({"holderIdentity": cfg.identity, "leaseDurationSeconds": self._duration_field(), "renewTime": stamp})
            lease["spec"] = spec
            lease["metadata"]["annotations"] = self._annotations(lease["metadata"].get("annotations") or {})
            self.client.update(lease)  # compare-and-swap: the resourceVersion read above
            self.holder, self.holder_url = cfg.identity, cfg.url
            return True
        except StatusError as e:
            log.debug("leader election: %s/%s: %s", cfg.namespace, cfg.name, e.message)
            return False
        except Exception:  # the store is unreachable: no renewal this time
            log.warning("leader election: reading or writing the Lease failed", exc_info=True)
            return False

    def _annotations(self, current: dict) -> dict:
        """The Lease's annotations with this process's address (none if it has none: a previous holder's
        must never stand beside this holder's name)."""
        out = {k: v for k, v in current.items() if k != ADDRESS}
        if self.cfg.url:
            out[ADDRESS] = self.cfg.url
        return out

    def leader_url(self) -> str | None:
        """Where the leader serves, as last read (every retry period), when it is another process; None
        while this process leads, or no holder (or no address) is known."""
        if self.leading or not self.holder or self.holder == self.cfg.identity:
            return None
        return self.holder_url or None

    def _duration_field(self) -> int:
        return max(1, math.ceil(self.cfg.lease_duration))

    def _observe(self, spec: dict | None, t: float) -> None:
        rec = None if spec is None else tuple(spec.get(k) for k in ("holderIdentity", "renewTime", "acquireTime", "leaseTransitions"))
        if rec != self._observed or spec is None:
            self._observed, self._observed_at = rec, t

    def release(self) -> None:
        """Give the Lease up (no holder) so another process takes over now rather than when it expires."""
        cfg = self.cfg
        try:
            lease = self.client.get(LEASE, cfg.namespace, cfg.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            stamp = now_micro()
            lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": stamp, "acquireTime": stamp}
            lease["metadata"]["annotations"] = {k: v for k, v in (lease["metadata"].get("annotations") or {}).items() if k != ADDRESS}
            self.client.update(lease)
            log.info("leader election: released %s/%s", cfg.namespace, cfg.name)
        except Exception:
            log.warning("leader election: could not release the Lease; another process takes over when it expires", exc_info=True)

    # -- the campaign ----------------------------------------------------------------------------------------

    async def run(self, lead: Callable[[], Awaitable[None] | None], stand_down: Callable[[], Awaitable[None]]) -> None:
        cfg = self.cfg
        log.info("leader election: %s campaigning for %s/%s", cfg.identity, cfg.namespace, cfg.name)
        try:
            while True:
                while not self.try_acquire_or_renew():
                    await asyncio.sleep(cfg.retry_period * random.uniform(1.0, JITTER))
                self._set_leading(True)
                log.info("leader election: %s became the leader (%s/%s): starting controllers and the kubelet",
                            cfg.identity, cfg.namespace, cfg.name)
                r = lead()
                if asyncio.iscoroutine(r):
                    await r
                renewed = time.monotonic()
                while True:
                    await asyncio.sleep(cfg.retry_period)
                    if self.try_acquire_or_renew():
                        renewed = time.monotonic()
                    elif self.holder not in ("", cfg.identity) or time.monotonic() - renewed >= cfg.renew_deadline:
                        break  # another process holds it now, or it could not be renewed in time
                log.warning("leader election: %s lost %s/%s (not renewed for %.1fs): stopping controllers and the kubelet",
                            cfg.identity, cfg.namespace, cfg.name, time.monotonic() - renewed)
                self._set_leading(False)
                await stand_down()
        finally:
            if self.leading:
                self._set_leading(False)
                self.release()

    def _set_leading(self, v: bool) -> None:
        self.leading = v
        self._status.set(1 if v else 0)
