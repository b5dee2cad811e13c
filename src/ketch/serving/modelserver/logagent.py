"""The request logger's delivery agent: a process of its own that sends an HTTP sink's events.

KServe runs its logger in an agent container beside the model server, so delivering payloads does not take
CPU from inference. ketch does the same with a child process: the model server's logger worker hands it
the events queued (the raw tuples, ``marshal``-ed, a length-prefixed frame per few milliseconds, through a
pipe), and the agent formats and delivers them with the same code (reqlog.RequestLogger over
sinkhttp.SinkConnection), on whatever core is free. What the agent delivered, failed or dropped comes back
as JSON lines on its stdout, every 100 ms, and is counted in the model server's own metrics
(``kserve_logger_*``); events handed over and not yet reported count toward the model server's bound and
queue depth, so the pair holds at most ``--logger-queue-size`` events. The agent ends when the pipe does
(the model server exited), after delivering what it holds (5 s at most).

    python -m ketch.serving.modelserver.logagent '<json: RequestLogger arguments>'
"""

from __future__ import annotations

import asyncio
import collections
import json
import marshal
import os
import subprocess
import sys
import time
from typing import Any

REPORT = 0.1  # seconds between the agent's reports
FLUSH = 0.002  # seconds the model server gathers events before one frame


def spawn(cfg: dict) -> subprocess.Popen:
    """Start the agent (before the model server's event loop runs, so it is there from the start)."""
    return subprocess.Popen([sys.executable, "-m", "ketch.serving.modelserver.logagent", json.dumps(cfg)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=False)


async def feed(rl: Any, proc: subprocess.Popen) -> None:
    """The model server's side: hand queued events to the agent, apply its reports to the metrics."""
    loop = asyncio.get_running_loop()
    assert proc.stdin is not None and proc.stdout is not None
    w_transport, w_proto = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, proc.stdin)
    writer = asyncio.StreamWriter(w_transport, w_proto, None, loop)
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    reports = asyncio.ensure_future(_apply_reports(rl, reader))
    q = rl._q
    try:
        while True:
            await rl._next()
            await asyncio.sleep(FLUSH)
            batch = [q.popleft() for _ in range(len(q))]
            rl._inflight_n += len(batch)  # until the agent reports them
            frame = marshal.dumps(batch)
            writer.write(len(frame).to_bytes(4, "big") + frame)
            await writer.drain()  # an agent behind: the queue fills here and drops are counted
            if reports.done():
                reports.result()
                raise ConnectionError("the agent stopped reporting")
    finally:
        reports.cancel()


async def _apply_reports(rl: Any, reader: asyncio.StreamReader) -> None:
    m = rl.metrics
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("the agent exited")
        r = json.loads(line)
        n = 0
        for key in ("sent", "failed", "dropped"):
            for t, k in r.get(key, {}).items():
                n += k
                if m is not None:
                    getattr(m, key).labels(t).inc(k)
        if m is not None:
            for t, d in r.get("duration", []):
                m.duration.labels(t).observe(d)
        rl._inflight_n -= n


class _Count:
    def __init__(self, into: collections.Counter, label: str) -> None:
        self.into, self.label = into, label

    def inc(self, n: float = 1) -> None:
        self.into[self.label] += n


class _Family:
    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()

    def labels(self, label: str) -> _Count:
        return _Count(self.counts, label)


class _Durations:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def labels(self, label: str) -> Any:
        seen = self.seen
        return type("Obs", (), {"observe": staticmethod(lambda v: seen.append((label, v)))})


class Tally:
    """What the agent's logger counts (LoggerMetrics' shape), reported to the model server and reset."""

    def __init__(self) -> None:
        self.sent, self.failed, self.dropped = _Family(), _Family(), _Family()
        self.duration = _Durations()
        self.depth = type("Depth", (), {"set_function": staticmethod(lambda f: None)})

    def take(self) -> dict | None:
        out = {k: dict(getattr(self, k).counts) for k in ("sent", "failed", "dropped") if getattr(self, k).counts}
        if self.duration.seen:
            out["duration"] = self.duration.seen
        if not out:
            return None
        for k in ("sent", "failed", "dropped"):
            getattr(self, k).counts.clear()
        self.duration.seen = []
        return out


async def serve(cfg: dict) -> None:
    from ketch.serving.modelserver.reqlog import RequestLogger

    loop = asyncio.get_running_loop()
    tally = Tally()
    rl = RequestLogger(**cfg, metrics=tally)  # type: ignore[arg-type]
    out = sys.stdout.buffer

    def report() -> None:
        r = tally.take()
        if r is not None:
            out.write(json.dumps(r).encode() + b"\n")
            out.flush()

    async def reporter() -> None:
        while True:
            await asyncio.sleep(REPORT)
            report()

    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    rep = asyncio.ensure_future(reporter())
    try:
        while True:
            try:
                n = int.from_bytes(await reader.readexactly(4), "big")
                batch = marshal.loads(await reader.readexactly(n))
            except asyncio.IncompleteReadError:
                break
            for item in batch:
                rl.put(item)
        deadline = time.monotonic() + 5
        while not rl.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        rep.cancel()
        try:
            report()
        except (BrokenPipeError, OSError):
            pass


def main() -> None:
    cfg = json.loads(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(cfg))
    else:
        uvloop.run(serve(cfg))
    os._exit(0)


if __name__ == "__main__":
    main()
