"""Watch fan-out: every committed change reaches each interested watcher's queue, in commit order.

The store calls ``publish`` from whatever thread committed (in resourceVersion order, one commit at a
time); queues belong to the event loop, so events from other threads hop onto the loop through its FIFO
of callbacks, and one published on the loop's own thread goes straight to the queue unless some from
other threads are still in flight (then it queues behind them, never ahead).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from ketch.store.base import Change


@dataclass(eq=False)
class Subscription:
    key: str | None
    namespace: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    # Changes handed to the loop from other threads, and those of them put on the queue: while any are in
    # flight, a change published on the loop's own thread queues behind them rather than jumping ahead.
    scheduled: int = 0
    delivered: int = 0

    def wants(self, ch: Change) -> bool:
        if self.key is not None and ch.key != self.key:
            return False
        if self.namespace and ch.namespace != self.namespace:
            return False
        return True


class WatchHub:
    MAX_QUEUE = 100_000  # a watcher this far behind is dropped; it re-lists, as client-go does

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()

    def subscribe(self, key: str | None, namespace: str | None = None) -> Subscription:
        sub = Subscription(key, namespace, asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, ch: Change) -> None:
        with self._lock:
            subs = [s for s in self._subs if s.wants(ch)]
        for s in subs:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is s.loop and s.scheduled == s.delivered:
                self._put(s, ch)
            else:
                s.scheduled += 1  # one publisher at a time: the store publishes from its commit
                try:
                    if running is s.loop:  # behind the ones still in flight (the same FIFO of callbacks)
                        s.loop.call_soon(self._put_later, s, ch)
                    else:
                        s.loop.call_soon_threadsafe(self._put_later, s, ch)
                except RuntimeError:  # loop closed
                    self.unsubscribe(s)

    def _put_later(self, s: Subscription, ch: Change) -> None:
        s.delivered += 1
        self._put(s, ch)

    def _put(self, s: Subscription, ch: Change) -> None:
        if s.queue.qsize() >= self.MAX_QUEUE:
            s.overflowed = True
            s.queue.put_nowait(None)
            self.unsubscribe(s)
            return
        s.queue.put_nowait(ch)
