"""Adaptive batching: concurrent requests for the same model are merged into one predict call.

While the model is busy, arriving requests queue; as soon as it is free, everything queued (up to
``max_batch_size`` rows) goes in one call. An idle model never waits, so a lone request pays nothing, and
under load the batch grows to match the arrival rate: a 100-tree forest costs little more for 64 rows
than for one. ``max_latency`` (ms) bounds how long a request may sit in the queue before the batcher stops
merging and runs what it has. Predict runs on one worker thread, so the event loop keeps reading requests
(and filling the next batch) meanwhile. A failing batch is retried row group by row group, so one bad
request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ketch.serving.modelserver.model import ArrayModel


class Batcher:
    def __init__(self, model: ArrayModel, max_batch_size: int = 32, max_latency_ms: float = 500.0, observe=None) -> None:  # noqa: ANN001
        self.model = model
        self.max_batch_size = max(1, max_batch_size)
        self.max_latency = max_latency_ms / 1000.0
        self.observe = observe  # callable(batch_rows, seconds)
        self._pending: list[tuple[np.ndarray, asyncio.Future, float]] = []
        self._running = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"predict-{model.name}")

    async def submit(self, x: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((x, fut, time.monotonic()))
        if not self._running:
            self._running = True
            loop.call_soon(lambda: asyncio.ensure_future(self._drain()))
        return await fut

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future, float]]:
        """The next batch: queued requests of the first one's row shape and dtype, up to max rows."""
        first = self._pending[0][0]
        key = (first.shape[1:], first.dtype)
        batch, rest, rows = [], [], 0
        for item in self._pending:
            x = item[0]
            if (x.shape[1:], x.dtype) == key and (rows + len(x) <= self.max_batch_size or not batch):
                batch.append(item)
                rows += len(x)
            else:
                rest.append(item)
        self._pending = rest
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._take()
                xs = [b[0] for b in batch]
                t0 = time.perf_counter()
                try:
                    y = await loop.run_in_executor(self._pool, self._run, xs)
                except Exception as e:  # noqa: BLE001 - delivered to the waiting requests
                    y = e
                if self.observe is not None:
                    self.observe(sum(len(x) for x in xs), time.perf_counter() - t0)
                self._deliver(batch, y)
        finally:
            self._running = False

    def _run(self, xs: list[np.ndarray]) -> list[np.ndarray | Exception]:
        if len(xs) == 1:
            return [self.model.run(xs[0])]
        try:
            y = self.model.run(np.concatenate(xs))
            if len(y) == sum(len(x) for x in xs):
                return np.split(y, np.cumsum([len(x) for x in xs])[:-1])
        except Exception:  # noqa: BLE001 - isolate the failing request below
            pass
        out: list[np.ndarray | Exception] = []
        for x in xs:
            try:
                out.append(self.model.run(x))
            except Exception as e:  # noqa: BLE001
                out.append(e)
        return out

    @staticmethod
    def _deliver(batch: list, y: object) -> None:
        for i, (_x, fut, _t) in enumerate(batch):
            if fut.done():
                continue
            r = y if isinstance(y, Exception) else y[i]  # type: ignore[index]
            if isinstance(r, Exception):
                fut.set_exception(r)
            else:
                fut.set_result(r)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
