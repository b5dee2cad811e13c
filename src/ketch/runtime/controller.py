"""Controller runtime: watch-fed work queues and level-triggered reconcile loops, in the manner of
Kubernetes' controller-runtime.

A controller names its primary kind, the kinds it owns (their events map to the owning object through the
controller ownerReference) and optional extra watches with a mapping function. The runtime lists and watches
them, queues object keys (deduplicated, never the same key in two workers at once), and calls
``reconcile(key)``. Reconcile reads the world and steps it toward the spec; it keeps no memory between calls,
so a restart of ketch with work half done simply reconciles again. Errors requeue with exponential backoff;
a ``Result(requeue_after=s)`` asks to look again later.

As controller-runtime's informers do, the watch of each owned kind also fills an in-memory cache indexed by
controller owner, so ``owned()`` answers "which Pods does this run own" without a read of the store; a
watch can carry a predicate (old, new) that drops events the controller does not care about; and the
event caused by the controller's own ``update_status`` is not fed back to it as new work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ketch.machinery.api import Api
from ketch.machinery.client import Client, KindRef
from ketch.machinery.errors import StatusError
from ketch.runtime.controller_metrics import QueueMetrics, ReconcileMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Key:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass
class Result:
    requeue_after: float | None = None


Mapper = Callable[[dict], Iterable[Key]]


Predicate = Callable[[dict | None, dict], bool]


@dataclass
class Watch:
    """A watched kind: ``mapper`` turns an object into keys to reconcile; ``predicate(old, new)`` (old from
    the cache, None when unknown or just added) may drop an ADDED or MODIFIED event (never a deletion);
    ``cache`` keeps the objects for ``owned()``."""

    ref: KindRef
    mapper: Mapper
    predicate: Predicate | None = None
    cache: bool = False


class Informer:
    """The objects of one watched kind as its watch last delivered them, indexed by controller owner uid.
    Treat what it returns as read-only: the dicts are shared."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.by_owner: dict[str, set[tuple[str, str]]] = {}
        self.synced = False

    def reset(self) -> None:
        self.objects.clear()
        self.by_owner.clear()
        self.synced = False

    @staticmethod
    def _owner(obj: dict) -> str | None:
        for o in obj["metadata"].get("ownerReferences") or []:
            if o.get("controller"):
                return o.get("uid")
        return None

    def put(self, obj: dict) -> dict | None:
        md = obj["metadata"]
        k = (md.get("namespace", ""), md["name"])
        old = self.objects.get(k)
        if old is not None:
            self._unindex(k, old)
        self.objects[k] = obj
        uid = self._owner(obj)
        if uid:
            self.by_owner.setdefault(uid, set()).add(k)
        return old

    def remove(self, obj: dict) -> None:
        md = obj["metadata"]
        k = (md.get("namespace", ""), md["name"])
        old = self.objects.pop(k, None)
        if old is not None:
            self._unindex(k, old)

    def _unindex(self, k: tuple[str, str], obj: dict) -> None:
        uid = self._owner(obj)
        if uid and uid in self.by_owner:
            self.by_owner[uid].discard(k)
            if not self.by_owner[uid]:
                del self.by_owner[uid]

    def owned_by(self, uid: str) -> list[dict]:
        return [self.objects[k] for k in sorted(self.by_owner.get(uid, ()))]


class WorkQueue:
    """A rate-limited, deduplicating queue of keys (client-go's workqueue, in asyncio)."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 60.0, name: str = "") -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._m = QueueMetrics.named(name or "unnamed")
        self._added: dict[Key, float] = {}
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: Key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        self._m.adds.inc()
        if key not in self._processing:
            self._enqueue(key)

    def _enqueue(self, key: Key) -> None:
        self._added.setdefault(key, time.monotonic())
        self._queue.put_nowait(key)
        self._m.depth.set(self._queue.qsize())

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        old = self._timers.get(key)
        if old is not None:
            if old.when() <= loop.time() + delay:
                return
            old.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Key) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self._m.retries.inc()
        self.add_after(key, min(self.base_delay * (2**n), self.max_delay))

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._m.depth.set(self._queue.qsize())
        t = self._added.pop(key, None)
        if t is not None:
            self._m.queue_duration.observe(time.monotonic() - t)
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._enqueue(key)

    def shutdown(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()


def key_of(obj: dict) -> Key:
    md = obj["metadata"]
    return Key(md.get("namespace", ""), md["name"])


def owner_mapper(owner_kind: str, owner_api_version: str | None = None) -> Mapper:
    """Map an owned object to its controller owner of the given kind."""

    def m(obj: dict) -> Iterable[Key]:
        md = obj["metadata"]
        for o in md.get("ownerReferences") or []:
            if o.get("controller") and o.get("kind") == owner_kind and (owner_api_version is None or o.get("apiVersion") == owner_api_version):
                yield Key(md.get("namespace", ""), o["name"])

    return m


class Controller:
    """Subclass and set ``name``, ``kind`` (the primary (apiVersion, kind)), ``owns`` and ``reconcile``."""

    name: str = "controller"
    kind: KindRef = ("v1", "Pod")
    owns: list[KindRef] = []
    workers: int = 2

    def __init__(self, api: Api) -> None:
        self.api = api
        self.client = Client(api, manager=f"ketch-{self.name}")
        self.queue = WorkQueue(name=self.name)
        self._rm = ReconcileMetrics.named(self.name)
        self.watches: list[Watch] = [Watch(self.kind, lambda o: [key_of(o)], cache=self.cache_primary)]
        for ref in self.owns:
            self.watches.append(Watch(ref, owner_mapper(self.kind[1], self.kind[0]), self.owned_predicate, cache=True))
        self.watches.extend(self.extra_watches())
        self.informers: dict[KindRef, Informer] = {w.ref: Informer() for w in self.watches if w.cache}
        self._own_writes: dict[Key, str] = {}
        self.reconciles = 0

    # A predicate for the owned kinds' events, (old, new) -> enqueue the owner?; None: every event.
    owned_predicate: Predicate | None = None
    # Keep the primary kind in an informer too (for mappers that must scan it, see ``cached``).
    cache_primary: bool = False

    def extra_watches(self) -> list[Watch]:
        return []

    async def reconcile(self, key: Key) -> Result | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers for subclasses ----------------------------------------------------------------------------

    def get(self, key: Key, ref: KindRef | None = None) -> dict | None:
        return self.client.get(ref or self.kind, key.namespace, key.name)

    def owned(self, ref: KindRef, owner: dict) -> list[dict]:
        """The objects of an owned kind whose controller is ``owner``: from the informer once it has
        synced, else read from the API. Read-only; may lag a write this controller just made."""
        uid = owner["metadata"]["uid"]
        inf = self.informers.get(ref)
        if inf is not None and inf.synced:
            return inf.owned_by(uid)
        items = self.client.list(ref, owner["metadata"].get("namespace") or None)
        return [o for o in items if Informer._owner(o) == uid]

    def cached(self, ref: KindRef, ns: str | None = None) -> list[dict]:
        """Every object of a cached kind (in ``ns``), from its informer once synced, else from the API."""
        inf = self.informers.get(ref)
        if inf is not None and inf.synced:
            return [o for (ons, _), o in sorted(inf.objects.items()) if ns is None or ons == ns]
        return self.client.list(ref, ns)

    def update_status(self, obj: dict) -> dict:
        """Write the primary object's status; the watch event this write causes is not fed back as work
        (the reconcile that wrote it already knows the outcome)."""
        out = self.client.update_status(obj)
        self._own_writes[key_of(out)] = out["metadata"].get("resourceVersion", "")
        return out

    # -- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        feeders = [asyncio.create_task(self._feed(w), name=f"{self.name}-watch-{w.ref[1]}") for w in self.watches]
        workers = [asyncio.create_task(self._work(i), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
        try:
            await asyncio.gather(*feeders, *workers)
        finally:
            for t in feeders + workers:
                t.cancel()
            self.queue.shutdown()

    async def _feed(self, w: Watch) -> None:
        """List then watch ``w.ref`` forever; on 410 Gone or a lost stream, list again."""
        while True:
            try:
                rd = self.api.rd(*w.ref)
            except StatusError:
                await asyncio.sleep(1.0)  # kind not registered yet (CRD still coming)
                continue
            inf = self.informers.get(w.ref)
            if inf is not None:
                inf.reset()
            primary = w is self.watches[0]
            try:
                async for typ, obj in self.api.watch(rd, None, w.ref[0].split("/")[-1], send_initial=inf is not None):
                    if typ == "ERROR":
                        break
                    if typ == "INITIAL_END":
                        if inf is not None:
                            inf.synced = True
                        continue
                    old = None
                    if inf is not None:
                        if typ == "DELETED":
                            inf.remove(obj)
                        else:
                            old = inf.put(obj)
                    if typ == "MODIFIED" and primary and self._own_writes.get(key_of(obj)) == obj["metadata"].get("resourceVersion"):
                        del self._own_writes[key_of(obj)]
                        continue
                    if typ != "DELETED" and w.predicate is not None and not w.predicate(old, obj):
                        continue
                    for k in w.mapper(obj):
                        self.queue.add(k)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: watch on %s failed; re-listing", self.name, w.ref)
            await asyncio.sleep(0.2)

    async def _work(self, i: int) -> None:
        m = self._rm
        while True:
            key = await self.queue.get()
            t0 = time.perf_counter()
            m.active.inc()
            try:
                res = await self.reconcile(key)
                self.queue.forget(key)
                if res is not None and res.requeue_after is not None:
                    self.queue.add_after(key, res.requeue_after)
                    m.requeue_after.inc()
                else:
                    m.success.inc()
            except asyncio.CancelledError:
                raise
            except StatusError as e:
                if e.code == 409:
                    log.debug("%s: conflict reconciling %s; retrying", self.name, key)
                else:
                    log.warning("%s: reconcile %s failed: %s", self.name, key, e.message)
                m.error.inc()
                m.errors.inc()
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: reconcile %s failed", self.name, key)
                m.error.inc()
                m.errors.inc()
                self.queue.add_rate_limited(key)
            finally:
                m.active.dec()
                self.reconciles += 1
                self.queue.done(key)
                dt = time.perf_counter() - t0
                m.time.observe(dt)
                self.queue._m.work_duration.observe(dt)
                if dt > 1.0:
                    log.info("%s: slow reconcile of %s: %.2fs", self.name, key, dt)


@dataclass
class Manager:
    """Runs a set of controllers as background tasks of the process."""

    controllers: list[Controller] = field(default_factory=list)

    def add(self, c: Controller) -> None:
        self.controllers.append(c)
