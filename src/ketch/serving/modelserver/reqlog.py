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

Logging never slows or fails inference: events go through a bounded queue (100, like KServe's) and are
dropped when the sink cannot keep up, counted in ``kserve_logger_events_dropped_total``; deliveries are
counted in ``kserve_logger_events_sent_total`` / ``..._failed_total`` and timed, KServe's logger metrics.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from datetime import UTC, datetime
from typing import Any

import orjson

from ketch.serving.payloads import SCHEME, PayloadWriter

log = logging.getLogger("ketch.serving.logger")
QUEUE = 100


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
        self.queue: asyncio.Queue | None = None
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

    def log(self, kind: str, request_id: str, body: bytes, content_type: str = "application/json", metadata: dict | None = None) -> None:
        if not self.wants(kind):
            return
        if self.queue is None:
            self.queue = asyncio.Queue(QUEUE)
            self._task = asyncio.ensure_future(self._run())
        try:
            self.queue.put_nowait((kind, request_id, body, content_type, datetime.now(UTC).isoformat(), metadata))
        except asyncio.QueueFull:
            if self.metrics is not None:
                self.metrics.dropped.labels(_ce_type(kind)).inc()
            else:
                log.warning("request logger queue full; dropping a %s event", kind)
        if self.metrics is not None:
            self.metrics.depth.set(self.queue.qsize())

    async def _run(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            if self.batch_size > 1:
                deadline = loop.time() + self.batch_interval
                while len(batch) < self.batch_size:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self.queue.get(), left))
                    except TimeoutError:
                        break
            if self.metrics is not None:
                self.metrics.depth.set(self.queue.qsize())
            t0 = loop.time()
            ok = True
            try:
                await self._send(batch)
            except Exception as e:  # noqa: BLE001 - a sink failure must not stop the server
                ok = False
                log.warning("request logger: cannot deliver %d event(s) to %s: %s", len(batch), self.url, e)
            if self.metrics is not None:
                dt = loop.time() - t0
                for item in batch:
                    t = _ce_type(item[0])
                    (self.metrics.sent if ok else self.metrics.failed).labels(t).inc()
                self.metrics.duration.labels(_ce_type(batch[0][0])).observe(dt)

    def _structured(self, kind: str, rid: str, body: bytes, ctype: str, ts: str, md: dict | None) -> dict:
        ev: dict[str, Any] = {"specversion": "1.0", "id": rid, "type": _ce_type(kind), "source": self.source, "time": ts,
                              "datacontenttype": ctype, **self.ext}
        if md is not None:
            ev["metadata"] = orjson.dumps(md).decode()
        try:
            ev["data"] = orjson.loads(body)
        except orjson.JSONDecodeError:
            ev["data_base64"] = base64.b64encode(body).decode()
        return ev

    async def _send(self, batch: list[tuple]) -> None:
        if self.url.startswith(("http://", "https://")):
            import httpx

            if self._client is None:
                self._client = httpx.AsyncClient(timeout=10)
            if self.batch_size == 1:
                kind, rid, body, ctype, ts, md = batch[0]
                headers = {"ce-specversion": "1.0", "ce-id": rid, "ce-type": _ce_type(kind), "ce-source": self.source,
                           "ce-time": ts, "content-type": ctype, **{f"ce-{k}": v for k, v in self.ext.items()}}
                headers["ce-metadata"] = orjson.dumps(md).decode() if md is not None else "null"
                r = await self._client.post(self.url, content=body, headers=headers)
            else:
                data = orjson.dumps([self._structured(*item) for item in batch])
                r = await self._client.post(self.url, content=data, headers={"content-type": "application/cloudevents-batch+json"})
            if r.status_code >= 300:
                raise RuntimeError(f"sink answered {r.status_code}")
            return
        lines = [orjson.dumps(self._structured(*item)) for item in batch]
        if self.url.startswith(SCHEME):
            if self._writer is None:
                self._writer = PayloadWriter(self.url[len(SCHEME):], self.component)
            self._writer.write(lines)
            return
        path = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "ab") as f:
            f.write(b"".join(ln + b"\n" for ln in lines))


def _ce_type(kind: str) -> str:
    return f"org.kubeflow.serving.inference.{kind}"
