"""The wiring of one running ketch: the Api, settings, and what components plug in.

Components (controllers, the kubelet, pipelines, serving...) each get this object at start-up and add
routes, background tasks and hooks to it; nothing else is global.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ketch.config import Settings
from ketch.machinery.api import Api

log = logging.getLogger(__name__)


@dataclass
class Context:
    api: Api
    settings: Settings
    routes: list[Any] = field(default_factory=list)  # starlette routes mounted before the k8s API
    tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown_hooks: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)  # named seams: "kubelet", "logs", ...
    _running: list[asyncio.Task] = field(default_factory=list)

    def add_routes(self, routes: list[Any]) -> None:
        self.routes.extend(routes)

    def add_task(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.tasks.append(fn)

    def on_shutdown(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        self.shutdown_hooks.append(fn)

    async def start_tasks(self) -> None:
        for fn in self.tasks:
            self._running.append(asyncio.create_task(_guard(fn), name=getattr(fn, "__qualname__", "task")))

    async def stop(self) -> None:
        for fn in reversed(self.shutdown_hooks):
            try:
                r = fn()
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                log.exception("shutdown hook failed")
        for t in self._running:
            t.cancel()
        for t in self._running:
            # Cancel again until done: Python 3.11's wait_for can swallow a cancel that races with its
            # inner future completing, which would otherwise hang shutdown forever.
            while not t.done():
                await asyncio.wait({t}, timeout=0.5)
                if not t.done():
                    t.cancel()
            if not t.cancelled():
                t.exception()  # retrieved, so asyncio does not log it as never retrieved
        self._running.clear()


async def _guard(fn: Callable[[], Awaitable[None]]) -> None:
    """Run a background task forever: a crash is logged and the task restarted after a pause."""
    while True:
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s crashed; restarting", getattr(fn, "__qualname__", fn))
            await asyncio.sleep(1.0)
