"""Garbage collection through ownerReferences: background, foreground and orphan propagation.

Watches every change: when an owner goes, its dependents go (unless another owner remains); an owner
deleted in the foreground keeps its ``foregroundDeletion`` finalizer until its blocking dependents are gone;
one deleted with ``orphan`` has its dependents released first. A sweep at start-up and every 30 s catches
whatever a crash interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ketch.machinery.client import Client
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.store.base import Change

log = logging.getLogger(__name__)
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


class GarbageCollector:
    def __init__(self, ctx: Context) -> None:
        self.api = ctx.api
        self.store = ctx.api.store
        self.client = Client(ctx.api, "ketch-garbage-collector")

    def _rd(self, key: str):  # noqa: ANN202
        return self.api.registry.by_key(key)

    def _exists(self, uid: str) -> bool:
        return self.store.find_by_uid(uid) is not None

    def _delete(self, key: str, obj: dict, propagation: str) -> None:
        rd = self._rd(key)
        if rd is None:
            return
        md = obj["metadata"]
        try:
            self.api.delete(rd, md.get("namespace", ""), md["name"], propagation, preconditions={"uid": md["uid"]})
        except StatusError as e:
            if e.code not in (404, 409):
                raise

    def _drop_owner(self, key: str, obj: dict, uids: set[str]) -> None:
        rd = self._rd(key)
        if rd is None:
            return
        md = obj["metadata"]
        refs = [o for o in md.get("ownerReferences") or [] if o.get("uid") not in uids]
        try:
            self.api.patch(rd, md.get("namespace", ""), md["name"], "application/merge-patch+json",
                           {"metadata": {"ownerReferences": refs or None}})
        except StatusError as e:
            if e.code != 404:
                raise

    def collect_dependents(self, owner_uid: str) -> None:
        """The owner is gone: delete dependents left with no live owner, release the others."""
        for key, dep in self.store.dependents_of(owner_uid):
            refs = dep["metadata"].get("ownerReferences") or []
            live = [o for o in refs if o.get("uid") != owner_uid and self._exists(o["uid"])]
            if live:
                self._drop_owner(key, dep, {o["uid"] for o in refs if o not in live})
            elif not dep["metadata"].get("deletionTimestamp"):
                self._delete(key, dep, "Background")

    def process_owner(self, key: str, owner: dict) -> None:
        md = owner["metadata"]
        fins = md.get("finalizers") or []
        if not md.get("deletionTimestamp"):
            return
        uid = md["uid"]
        if ORPHAN in fins:
            for dkey, dep in self.store.dependents_of(uid):
                self._drop_owner(dkey, dep, {uid})
            self._remove_finalizer(key, owner, ORPHAN)
        elif FOREGROUND in fins:
            blocking = 0
            for dkey, dep in self.store.dependents_of(uid):
                if not dep["metadata"].get("deletionTimestamp"):
                    self._delete(dkey, dep, "Foreground")
                refs = [o for o in dep["metadata"].get("ownerReferences") or [] if o.get("uid") == uid]
                if any(o.get("blockOwnerDeletion") for o in refs):
                    blocking += 1
            if blocking == 0:
                self._remove_finalizer(key, owner, FOREGROUND)

    def _remove_finalizer(self, key: str, obj: dict, fin: str) -> None:
        rd = self._rd(key)
        if rd is None:
            return
        cur = self.store.get(key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if cur is None or fin not in (cur["metadata"].get("finalizers") or []):
            return
        cur = self.api._out(rd, None, cur)
        try:
            self.client.remove_finalizer(cur, fin)
        except StatusError as e:
            if e.code not in (404, 409):
                raise

    def handle(self, ch: Change) -> None:
        md = ch.obj["metadata"]
        if ch.type == "DELETED":
            self.collect_dependents(md["uid"])
            # a dependent going may unblock an owner waiting in the foreground
            for o in md.get("ownerReferences") or []:
                found = self.store.find_by_uid(o.get("uid", ""))
                if found and FOREGROUND in (found[1]["metadata"].get("finalizers") or []):
                    self.process_owner(found[0], found[1])
        elif md.get("deletionTimestamp") and {FOREGROUND, ORPHAN} & set(md.get("finalizers") or []):
            self.process_owner(ch.key, ch.obj)

    def sweep(self) -> None:
        for key, obj in self.store.all_with_owners():
            refs = obj["metadata"].get("ownerReferences") or []
            if refs and not any(self._exists(o["uid"]) for o in refs if o.get("uid")):
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(key, obj, "Background")
        for rd in self.api.registry.all():
            items, _ = self.store.list(rd.key)
            for o in items:
                if o["metadata"].get("deletionTimestamp") and {FOREGROUND, ORPHAN} & set(o["metadata"].get("finalizers") or []):
                    self.process_owner(rd.key, o)

    async def run(self) -> None:
        sub = self.api.hub.subscribe(None)
        try:
            self._safe(self.sweep)
            while True:
                try:
                    ch = await asyncio.wait_for(sub.queue.get(), 30.0)
                except TimeoutError:
                    self._safe(self.sweep)
                    continue
                if ch is None:
                    sub = self.api.hub.subscribe(None)
                    self._safe(self.sweep)
                    continue
                self._safe(lambda ch=ch: self.handle(ch))
        finally:
            self.api.hub.unsubscribe(sub)

    def _safe(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("garbage collector step failed")


def _factory(ctx: Context) -> Callable[[], Awaitable[None]]:
    gc = GarbageCollector(ctx)
    ctx.services["garbage-collector"] = gc
    return gc.run


TASKS = [_factory]
