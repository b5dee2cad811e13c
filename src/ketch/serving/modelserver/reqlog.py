"""Request logging (InferenceService ``logger``): every request and/or response as a CloudEvent.

Sinks, by URL:
- ``http(s)://``: POSTed as KServe's agent does, binary content mode: the payload is the body and the
  event's attributes are headers (``Ce-Specversion``, ``Ce-Id`` (the request id, the same on a request and
  its response), ``Ce-Type`` ``org.kubeflow.serving.inference.request|response``, ``Ce-Source``,
  ``Ce-Time``, ``Ce-Inferenceservicename``, ``Ce-Namespace``, ``Ce-Component``, ``Ce-Endpoint``,
  ``Ce-Metadata`` (the request headers named in ``metadataHeaders``, as JSON)). With a batch size > 1
  events go in CloudEvents' batched content mode instead: one POST of
  ``application/cloudevents-batch+json``, a JSON array of structured events, when the batch is full or
  ``batchInterval`` passed;
- ``payloads://<dir>``: ketch's built-in store (ketch/serving/payloads.py), bounded and rotated, what
  detectors and the dashboard read; the default when the logger names no URL;
- ``file://`` or a path: one structured event per JSON line, appended.

Logging never slows or fails inference: events go through a bounded queue (10,000 events queued or being
delivered, ``--logger-queue-size``) and are dropped when the sink cannot keep up, counted in
``kserve_logger_events_dropped_total``; deliveries are
counted in ``kserve_logger_events_sent_total`` / ``..._failed_total`` and timed, KServe's logger metrics.

What one event costs is taken from inference (the logger shares the model server's core), so the request
path only appends to the queue and the worker does the rest in bulk: HTTP sinks get their POSTs over one
keep-alive connection, pipelined, with each request head pre-encoded per event type so that only
``Ce-Id``, ``Ce-Time``, ``Ce-Metadata`` and the length are formatted per event (sinkhttp.py). With
``agent=True`` (``--logger-agent``) an HTTP sink is delivered by a child process instead (logagent.py).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from ketch.serving.modelserver.sinkhttp import SinkConnection
from ketch.serving.payloads import SCHEME, PayloadWriter

log = logging.getLogger("ketch.serving.logger")
QUEUE = 10_000  # events queued or in flight at most; sinks are written in bulk, so a deep queue costs little
FILE_QUEUE = QUEUE  # most events a file sink takes in one write
FILE_COALESCE = 0.005  # seconds a file sink gathers events before one write
PIPELINE = 256  # most POSTs of single events written at once on the sink's connection
HTTP_COALESCE = 0.002  # seconds an HTTP sink's worker gathers events before writing them at once
BATCHES = 8  # most batchSize POSTs a batching HTTP sink's worker writes at once
INFLIGHT = 8  # most groups of POSTs awaiting the sink's answers at once


class LoggerMetrics:
    """KServe's logger metric names, in the model server's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.sent = Counter("kserve_logger_events_sent", "CloudEvents delivered to the log sink", ["type"], registry=registry)
        self.failed = Counter("kserve_logger_events_failed", "CloudEvents that failed to deliver to the log sink", ["type"], registry=registry)
        self.dropped = Counter("kserve_logger_events_dropped", "log events dropped because the queue was full", ["type"], registry=registry)
        self.duration = Histogram("kserve_logger_delivery_duration_seconds", "time to deliver a batch of CloudEvents to the sink", ["type"], registry=registry)
        self.depth = Gauge("kserve_logger_work_queue_depth", "log events queued or being delivered", registry=registry)


class RequestLogger:
    def __init__(self, url: str, mode: str = "all", model_name: str = "", service: str = "", namespace: str = "", component: str = "predictor",
                 batch_size: int = 1, batch_interval: float = 1.0, metadata_headers: list[str] | None = None, endpoint: str = "default",
                 metrics: LoggerMetrics | None = None, queue_size: int = 0, agent: bool = False) -> None:
        self.url = url
        self.mode = mode or "all"
        self.source = f"http://localhost/{service or model_name}"
        self.ext = {"inferenceservicename": service or model_name, "namespace": namespace, "component": component, "endpoint": endpoint}
        self.batch_size = max(1, batch_size)
        self.batch_interval = batch_interval
        self.metadata_headers = [h.lower() for h in metadata_headers or []]
        self.metrics = metrics
        self._q: collections.deque = collections.deque()
        # events queued plus those being delivered: what the logger holds is bounded, whatever the sink does
        self._bound = queue_size or QUEUE
        self._inflight_n = 0
        self._idle = False
        self._wake_at = 1  # queued events that wake the worker: 1 when idle, a full batch while one fills
        self._heads: dict[tuple[str, str], bytes] = {}
        self._dropped: dict[str, Any] = {}
        self._task: asyncio.Task | None = None
        # an http(s) URL is checked now, so a bad one fails the server's start, not each delivery
        self._client = SinkConnection(url) if url.startswith(("http://", "https://")) else None
        self._writer: PayloadWriter | None = None
        self.component = component
        # an HTTP sink's deliveries in a process of their own (logagent.py), started now, before the loop
        self._agent = None
        if agent and self._client is not None:
            from ketch.serving.modelserver import logagent

            self._agent = logagent.spawn({"url": url, "mode": self.mode, "model_name": model_name, "service": service, "namespace": namespace,
                                          "component": component, "batch_size": self.batch_size, "batch_interval": batch_interval,
                                          "endpoint": endpoint, "queue_size": self._bound})

    def wants(self, kind: str) -> bool:
        return self.mode == "all" or self.mode == kind

    def metadata(self, headers: list[tuple[bytes, bytes]] | None) -> dict[str, list[str]] | None:
        if not self.metadata_headers or not headers:
            return None
        out: dict[str, list[str]] = {}
        for k, v in headers:
            name = k.decode("latin-1").lower()
            if name in self.metadata_headers:
                out.setdefault(name, []).append(v.decode("latin-1"))
        return out or None

    def log(self, kind: str, request_id: str, body: bytes, content_type: str = "application/json", metadata: dict | None = None,
            json_ok: bool = False) -> None:
        """Queue one event. The hot path: an append to a bounded deque (the worker formats everything).
        ``json_ok``: the body is known to be valid JSON and is spliced into structured events unparsed."""
        if self.mode != "all" and self.mode != kind:
            return
        q = self._q
        if self._task is None:
            self._start()
        if len(q) + self._inflight_n >= self._bound:
            if self.metrics is not None:
                self._dropped[kind].inc()
            else:
                log.warning("request logger queue full; dropping a %s event", kind)
            return
        q.append((kind, request_id, body, content_type, time.time(), metadata, json_ok))
        if self._idle and len(q) >= self._wake_at:
            self._idle = False
            self._wake.set()

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())
        if self.metrics is not None:
            self.metrics.depth.set_function(lambda: len(self._q) + self._inflight_n)
            self._dropped = {k: self.metrics.dropped.labels(_ce_type(k)) for k in ("request", "response")}

    async def _next(self, timeout: float | None = None, want: int = 1) -> bool:
        """Wait until ``want`` events are queued (or ``timeout`` passed): whether any is."""
        while len(self._q) < want:
            self._idle = True
            self._wake_at = want
            self._wake.clear()
            try:
                if timeout is None:
                    await self._wake.wait()
                else:
                    await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                break
            finally:
                self._wake_at = 1
        return bool(self._q)

    def put(self, item: tuple) -> None:
        """Queue an event already made by another logger's ``log`` (the agent's input)."""
        if self._task is None:
            self._start()
        if len(self._q) + self._inflight_n >= self._bound:
            if self.metrics is not None:
                self._dropped[item[0]].inc()
            return
        self._q.append(item)
        if self._idle and len(self._q) >= self._wake_at:
            self._idle = False
            self._wake.set()

    def idle(self) -> bool:
        return not self._q and not self._inflight_n

    async def _run(self) -> None:
        if self._agent is not None:
            from ketch.serving.modelserver import logagent

            try:
                await logagent.feed(self, self._agent)
            except Exception as e:  # noqa: BLE001 - the agent gone: deliver from here
                log.error("request logger: the delivery agent failed (%s); delivering from the model server", e)
            self._agent = None
        q = self._q
        http = self.url.startswith(("http://", "https://"))
        # an HTTP sink without batching gets one POST per event (KServe's binary mode), all those queued
        # written at once (pipelined); files take whatever is queued in one write; a batching HTTP sink
        # waits up to batchInterval for a full batch
        cap = (self.batch_size * BATCHES if self.batch_size > 1 else PIPELINE) if http else FILE_QUEUE
        wait = self.batch_interval if http and self.batch_size > 1 else 0.0
        sent = failed = None
        if self.metrics is not None:
            sent = {k: self.metrics.sent.labels(_ce_type(k)) for k in ("request", "response")}
            failed = {k: self.metrics.failed.labels(_ce_type(k)) for k in ("request", "response")}
        inflight: set[asyncio.Future] = set()
        while True:
            await self._next()
            if wait:  # a batch: until batchSize events are queued or batchInterval passed, one wake-up
                if len(q) < self.batch_size:
                    await self._next(wait, want=self.batch_size)
            else:  # one write for what arrives meanwhile, not a system call per event
                await asyncio.sleep(FILE_COALESCE if not http else HTTP_COALESCE)
            batch = [q.popleft() for _ in range(min(cap, len(q)))]
            self._inflight_n += len(batch)
            if http:
                # the sink's answers are awaited by a task of their own, so the next events are written
                # while earlier ones are in flight (pipelined on the one connection), up to INFLIGHT groups
                t = asyncio.ensure_future(self._deliver(batch, sent, failed))
                inflight.add(t)
                t.add_done_callback(inflight.discard)
                if len(inflight) >= INFLIGHT:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            else:
                await self._deliver(batch, sent, failed)

    async def _deliver(self, batch: list[tuple], sent: dict | None, failed: dict | None) -> None:
        t0 = time.perf_counter()
        try:
            failed_at = await self._send(batch)
        except Exception as e:  # noqa: BLE001 - a sink failure must not stop the server
            failed_at = set(range(len(batch)))
            log.warning("request logger: cannot deliver %d event(s) to %s: %s", len(batch), self.url, e)
        finally:
            self._inflight_n -= len(batch)
        if self.metrics is not None and sent is not None and failed is not None:
            n_req = sum(1 for item in batch if item[0] == "request")
            bad_req = sum(1 for j in failed_at if batch[j][0] == "request")
            for k, n, bad in (("request", n_req, bad_req), ("response", len(batch) - n_req, len(failed_at) - bad_req)):
                if n - bad:
                    sent[k].inc(n - bad)
                if bad:
                    failed[k].inc(bad)
            self.metrics.duration.labels(_ce_type(batch[0][0])).observe(time.perf_counter() - t0)

    def _structured(self, kind: str, rid: str, body: bytes, ctype: str, ts: float, md: dict | None, json_ok: bool) -> bytes:
        """One structured CloudEvent as JSON bytes; a body known to be JSON is spliced in as ``data``."""
        head = self._heads.get((kind, ctype))
        if head is None:
            ev = {"specversion": "1.0", "type": _ce_type(kind), "source": self.source, "datacontenttype": ctype, **self.ext}
            head = self._heads[(kind, ctype)] = orjson.dumps(ev)[:-1]
        if md is None and json_ok and b"\n" not in body and b"\r" not in body:  # the common case, in one format
            return b'%s,"id":%s,"time":"%s","data":%s}' % (head, orjson.dumps(rid), _iso(ts), body)
        out = head + b',"id":' + orjson.dumps(rid) + b',"time":"' + _iso(ts) + b'"'
        if md is not None:
            out += b',"metadata":' + orjson.dumps(orjson.dumps(md).decode())
        if json_ok and b"\n" not in body and b"\r" not in body:  # a pretty-printed body would break a JSON-lines file
            return out + b',"data":' + body + b"}"
        try:
            return out + b',"data":' + orjson.dumps(orjson.loads(body)) + b"}"
        except orjson.JSONDecodeError:
            return out + b',"data_base64":"' + base64.b64encode(body) + b'"}'

    async def _send(self, batch: list[tuple]) -> set[int]:
        """Deliver ``batch``: the positions of the events that failed (a status >= 300 or no answer)."""
        if self.url.startswith(("http://", "https://")):
            assert self._client is not None
            if self.batch_size == 1:
                reqs = [self._binary(*item) for item in batch]
                statuses = await self._client.send(reqs)
                return {j for j, st in enumerate(statuses) if not 200 <= st < 300}
            # what was queued, in POSTs of batchSize events each (the last one may be short), pipelined
            head = self._heads.get(("batch", "")) or self._heads.setdefault(("batch", ""), self._client.head(
                [("Content-Type", "application/cloudevents-batch+json")]))
            n = self.batch_size
            reqs = []
            for j in range(0, len(batch), n):
                data = b"[" + b",".join(self._structured(*item) for item in batch[j:j + n]) + b"]"
                reqs.append(head + b"Content-Length: %d\r\n\r\n" % len(data) + data)
            bad: set[int] = set()
            for k, st in enumerate(await self._client.send(reqs)):
                if not 200 <= st < 300:
                    log.warning("request logger: %s answered %d to a batch of %d event(s)", self.url, st, min(n, len(batch) - k * n))
                    bad.update(range(k * n, min(len(batch), (k + 1) * n)))
            return bad
        data = b"".join(self._structured(*item) + b"\n" for item in batch)
        if self.url.startswith(SCHEME):
            if self._writer is None:
                self._writer = PayloadWriter(self.url[len(SCHEME):], self.component)
            self._writer.write_bytes(data)
            return set()
        path = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
        return set()

    def _binary(self, kind: str, rid: str, body: bytes, ctype: str, ts: float, md: dict | None, _json_ok: bool) -> bytes:
        """One event as a complete POST in binary content mode: the head fixed per (type, content type) is
        encoded once; Ce-Id, Ce-Time, Ce-Metadata and the length are the per-event part."""
        head = self._heads.get(("binary-" + kind, ctype))
        if head is None:
            assert self._client is not None
            head = self._heads[("binary-" + kind, ctype)] = self._client.head(
                [("Ce-Specversion", "1.0"), ("Ce-Type", _ce_type(kind)), ("Ce-Source", self.source),
                 *((f"Ce-{k.capitalize()}", v) for k, v in self.ext.items()), ("Content-Type", ctype)])
        rid_b = rid.encode()
        if b"\r" in rid_b or b"\n" in rid_b:  # an id from a request body must not inject headers
            rid_b = rid_b.replace(b"\r", b" ").replace(b"\n", b" ")
        md_b = b"null" if md is None else orjson.dumps(md)
        return head + b"Ce-Id: %s\r\nCe-Time: %s\r\nCe-Metadata: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            rid_b, _iso(ts), md_b, len(body), body)


_second: list = [0, b""]


def _iso(ts: float) -> bytes:
    """RFC 3339 with microseconds, UTC; the date-time part is formatted once a second."""
    sec = int(ts)
    if _second[0] != sec:
        _second[0], _second[1] = sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
    return b"%s.%06d+00:00" % (_second[1], (ts - sec) * 1e6)


_ids = [os.urandom(10).hex(), 0]
os.register_at_fork(after_in_child=lambda: _ids.__setitem__(0, os.urandom(10).hex()))


def request_id() -> str:
    """A UUID-shaped id for a request that brings none: 80 random bits drawn once per process, then a
    counter. Ids must be unique, not unguessable, and this is a fifth of ``str(uuid.uuid4())``'s cost
    (whose ``os.urandom`` is a system call per request), on the request path of every logged request."""
    _ids[1] += 1
    h = _ids[0]
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-8{h[15:18]}-{h[18:20]}{_ids[1] & 0xFFFFFFFFFF:010x}"


def _ce_type(kind: str) -> str:
    return f"org.kubeflow.serving.inference.{kind}"
