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

Logging never slows or fails inference: events go through a bounded queue (100 for an HTTP sink posting
each event, like KServe's; 10,000 for batching HTTP sinks, the store and files, which send in bulk) and
are dropped when the sink cannot keep up, counted in ``kserve_logger_events_dropped_total``; deliveries are
counted in ``kserve_logger_events_sent_total`` / ``..._failed_total`` and timed, KServe's logger metrics.
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

from ketch.serving.payloads import SCHEME, PayloadWriter

log = logging.getLogger("ketch.serving.logger")
QUEUE = 100  # HTTP sinks, as KServe's agent
FILE_QUEUE = 10_000  # the payload store and files: written in bulk, so a deeper queue costs little
FILE_COALESCE = 0.005  # seconds a file sink gathers events before one write


class LoggerMetrics:
    """KServe's logger metric names, in the model server's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.sent = Counter("kserve_logger_events_sent", "CloudEvents delivered to the log sink", ["type"], registry=registry)
        self.failed = Counter("kserve_logger_events_failed", "CloudEvents that failed to deliver to the log sink", ["type"], registry=registry)
        self.dropped = Counter("kserve_logger_events_dropped", "log events dropped because the queue was full", ["type"], registry=registry)
        self.duration = Histogram("kserve_logger_delivery_duration_seconds", "time to deliver a batch of CloudEvents to the sink", ["type"], registry=registry)
        self.depth = Gauge("kserve_logger_work_queue_depth", "log events waiting in the queue", registry=registry)


class RequestLogger:
    def __init__(self, url: str, mode: str = "all", model_name: str = "", service: str = "", namespace: str = "", component: str = "predictor",
                 batch_size: int = 1, batch_interval: float = 1.0, metadata_headers: list[str] | None = None, endpoint: str = "default",
                 metrics: LoggerMetrics | None = None) -> None:
        self.url = url
        self.mode = mode or "all"
        self.source = f"http://localhost/{service or model_name}"
        self.ext = {"inferenceservicename": service or model_name, "namespace": namespace, "component": component, "endpoint": endpoint}
        self.batch_size = max(1, batch_size)
        self.batch_interval = batch_interval
        self.metadata_headers = [h.lower() for h in metadata_headers or []]
        self.metrics = metrics
        self._q: collections.deque = collections.deque()
        # KServe's bound for one-POST-per-event; a batching or bulk-written sink buffers more
        self._bound = QUEUE if url.startswith(("http://", "https://")) and self.batch_size == 1 else FILE_QUEUE
        self._idle = False
        self._heads: dict[tuple[str, str], bytes] = {}
        self._dropped: dict[str, Any] = {}
        self._task: asyncio.Task | None = None
        self._client: Any = None
        self._writer: PayloadWriter | None = None
        self.component = component

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
        if len(q) >= self._bound:
            if self.metrics is not None:
                self._dropped[kind].inc()
            else:
                log.warning("request logger queue full; dropping a %s event", kind)
            return
        q.append((kind, request_id, body, content_type, time.time(), metadata, json_ok))
        if self._idle:
            self._idle = False
            self._wake.set()

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())
        if self.metrics is not None:
            self.metrics.depth.set_function(lambda: len(self._q))
            self._dropped = {k: self.metrics.dropped.labels(_ce_type(k)) for k in ("request", "response")}

    async def _next(self, timeout: float | None = None) -> bool:
        """Wait until something is queued (or ``timeout`` passed): whether there is."""
        while not self._q:
            self._idle = True
            self._wake.clear()
            try:
                if timeout is None:
                    await self._wake.wait()
                else:
                    await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return bool(self._q)
        return True

    async def _run(self) -> None:
        q = self._q
        loop = asyncio.get_running_loop()
        http = self.url.startswith(("http://", "https://"))
        # an HTTP sink without batching gets one POST per event (KServe's binary mode); files take whatever
        # is queued in one write; a batching HTTP sink waits up to batchInterval for a full batch
        cap = self.batch_size if http else FILE_QUEUE
        wait = self.batch_interval if http and self.batch_size > 1 else 0.0
        sent = failed = None
        if self.metrics is not None:
            sent = {k: self.metrics.sent.labels(_ce_type(k)) for k in ("request", "response")}
            failed = {k: self.metrics.failed.labels(_ce_type(k)) for k in ("request", "response")}
        while True:
            await self._next()
            if not http:
                await asyncio.sleep(FILE_COALESCE)  # one write for what arrives meanwhile, not a syscall per event
            batch = [q.popleft() for _ in range(min(cap, len(q)))]
            if wait and len(batch) < cap:
                deadline = loop.time() + wait
                while len(batch) < cap:
                    left = deadline - loop.time()
                    if left <= 0 or not await self._next(left):
                        break
                    batch.extend(q.popleft() for _ in range(min(cap - len(batch), len(q))))
            t0 = loop.time()
            ok = True
            try:
                await self._send(batch)
            except Exception as e:  # noqa: BLE001 - a sink failure must not stop the server
                ok = False
                log.warning("request logger: cannot deliver %d event(s) to %s: %s", len(batch), self.url, e)
            if self.metrics is not None:
                counters = sent if ok else failed
                n_req = sum(1 for item in batch if item[0] == "request")
                if n_req:
                    counters["request"].inc(n_req)
                if len(batch) - n_req:
                    counters["response"].inc(len(batch) - n_req)
                self.metrics.duration.labels(_ce_type(batch[0][0])).observe(loop.time() - t0)

    def _structured(self, kind: str, rid: str, body: bytes, ctype: str, ts: float, md: dict | None, json_ok: bool) -> bytes:
        """One structured CloudEvent as JSON bytes; a body known to be JSON is spliced in as ``data``."""
        head = self._heads.get((kind, ctype))
        if head is None:
            ev = {"specversion": "1.0", "type": _ce_type(kind), "source": self.source, "datacontenttype": ctype, **self.ext}
            head = self._heads[(kind, ctype)] = orjson.dumps(ev)[:-1]
        out = head + b',"id":' + orjson.dumps(rid) + b',"time":"' + _iso(ts).encode() + b'"'
        if md is not None:
            out += b',"metadata":' + orjson.dumps(orjson.dumps(md).decode())
        if json_ok and b"\n" not in body and b"\r" not in body:  # a pretty-printed body would break a JSON-lines file
            return out + b',"data":' + body + b"}"
        try:
            return out + b',"data":' + orjson.dumps(orjson.loads(body)) + b"}"
        except orjson.JSONDecodeError:
            return out + b',"data_base64":"' + base64.b64encode(body) + b'"}'

    async def _send(self, batch: list[tuple]) -> None:
        if self.url.startswith(("http://", "https://")):
            import httpx

            if self._client is None:
                self._client = httpx.AsyncClient(timeout=10)
            if self.batch_size == 1:
                kind, rid, body, ctype, ts, md, _ok = batch[0]
                headers = {"ce-specversion": "1.0", "ce-id": rid, "ce-type": _ce_type(kind), "ce-source": self.source,
                           "ce-time": _iso(ts), "content-type": ctype, **{f"ce-{k}": v for k, v in self.ext.items()}}
                headers["ce-metadata"] = orjson.dumps(md).decode() if md is not None else "null"
                r = await self._client.post(self.url, content=body, headers=headers)
            else:
                data = b"[" + b",".join(self._structured(*item) for item in batch) + b"]"
                r = await self._client.post(self.url, content=data, headers={"content-type": "application/cloudevents-batch+json"})
            if r.status_code >= 300:
                raise RuntimeError(f"sink answered {r.status_code}")
            return
        data = b"".join(self._structured(*item) + b"\n" for item in batch)
        if self.url.startswith(SCHEME):
            if self._writer is None:
                self._writer = PayloadWriter(self.url[len(SCHEME):], self.component)
            self._writer.write_bytes(data)
            return
        path = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)


_second: list = [0, ""]


def _iso(ts: float) -> str:
    """RFC 3339 with microseconds, UTC; the date-time part is formatted once a second."""
    sec = int(ts)
    if _second[0] != sec:
        _second[0], _second[1] = sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((ts - sec) * 1e6):06d}+00:00"


def request_id() -> str:
    """A random (version 4) UUID string, cheaper than ``str(uuid.uuid4())`` on the hot path."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def _ce_type(kind: str) -> str:
    return f"org.kubeflow.serving.inference.{kind}"
