"""The wiring of one running ketch: the Api, settings, and what components plug in.

Components (controllers, the kubelet, pipelines, serving...) each get this object at start-up and add
routes, background tasks and hooks to it; nothing else is global.

Background tasks are the cluster's work (controllers, the kubelet): with several ketch processes on one
database only the one holding the controllers' Lease runs them (``election``, runtime/leader.py), starting
them when it becomes leader and stopping them if it stops being one; every process serves the API. Tasks
added with ``every_server=True`` (caches that admission reads) run in every process. Requests that only
the leader's in-memory state can answer (its kubelet's processes, its gateway's routing table) are
declared with ``forward_to_leader``; the other processes forward them to the leader (server/forward.py).
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
    server_tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # run in every process
    stand_down_hooks: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    # Who may run ``tasks``: None, this process alone (one ketch); else an elector with
    # ``async run(lead, stand_down)`` that calls ``lead()`` on winning the Lease and ``stand_down()`` on losing it.
    election: Any = None
    # (matches(scope), serve_here_if_unreachable): requests the leader answers (see forward_to_leader)
    leader_only: list[tuple[Callable[[dict], bool], bool]] = field(default_factory=list)
    _running: list[asyncio.Task] = field(default_factory=list)
    _leading: list[asyncio.Task] = field(default_factory=list)

    def add_routes(self, routes: list[Any]) -> None:
        self.routes.extend(routes)

    def add_task(self, fn: Callable[[], Awaitable[None]], every_server: bool = False) -> None:
        """Run ``fn`` in the background: in the leader only, unless ``every_server``."""
        (self.server_tasks if every_server else self.tasks).append(fn)

    def forward_to_leader(self, matches: Callable[[dict], bool], serve_here_if_unreachable: bool = False) -> None:
        """Requests whose ASGI scope ``matches`` need the leader's state: a process that does not lead
        forwards them to the one that does, after authenticating and authorizing them itself. With
        ``serve_here_if_unreachable`` this process answers them itself when the leader cannot be reached
        (what it can answer from the shared home, such as a Pod's log files)."""
        self.leader_only.append((matches, serve_here_if_unreachable))

    def on_shutdown(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        self.shutdown_hooks.append(fn)

    def on_stand_down(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``fn`` when this process stops leading (after its tasks were cancelled): let go of what the
        new leader takes over, without ending it (the kubelet leaves its Pods' processes running)."""
        self.stand_down_hooks.append(fn)

    async def start_tasks(self) -> None:
        for fn in self.server_tasks:
            self._running.append(asyncio.create_task(_guard(fn), name=getattr(fn, "__qualname__", "task")))
        if self.election is None:
            self._lead()
        else:
            self._running.append(asyncio.create_task(self.election.run(self._lead, self._stand_down), name="leader-election"))

    def _lead(self) -> None:
        for fn in self.tasks:
            self._leading.append(asyncio.create_task(_guard(fn), name=getattr(fn, "__qualname__", "task")))

    async def _stand_down(self) -> None:
        await _cancel_all(self._leading)
        await _run_hooks(self.stand_down_hooks, "stand-down")

    async def stop(self) -> None:
        await _run_hooks(self.shutdown_hooks, "shutdown")
        await _cancel_all(self._leading)
        await _cancel_all(self._running)  # the elector, cancelled last, releases the Lease


async def _run_hooks(hooks: list[Callable[[], Awaitable[None] | None]], what: str) -> None:
    for fn in reversed(hooks):
        try:
            r = fn()
            if asyncio.iscoroutine(r):
                await r
        except Exception:
            log.exception("%s hook failed", what)


async def _cancel_all(tasks: list[asyncio.Task]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        # Cancel again until done: Python 3.11's wait_for can swallow a cancel that races with its
        # inner future completing, which would otherwise hang shutdown forever.
        while not t.done():
            await asyncio.wait({t}, timeout=0.5)
            if not t.done():
                t.cancel()
        if not t.cancelled():
            t.exception()  # retrieved, so asyncio does not log it as never retrieved
    tasks.clear()


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
