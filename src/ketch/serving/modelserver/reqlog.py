"""Request logging (InferenceService ``logger``): every request and/or response as a CloudEvent, POSTed to
a URL (as KServe's agent does) or appended as one JSON line to a file (``file://`` or a path).

Logging never slows or fails inference: events go through a bounded queue (100, like KServe's) and are
dropped with a warning when the sink cannot keep up.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from datetime import UTC, datetime

import orjson

log = logging.getLogger("ketch.serving.logger")


class RequestLogger:
    def __init__(self, url: str, mode: str = "all", model_name: str = "", service: str = "", namespace: str = "", component: str = "predictor") -> None:
        self.url = url
        self.mode = mode or "all"
        self.source = f"http://localhost/{service or model_name}"
        self.ext = {"inferenceservicename": service or model_name, "namespace": namespace, "component": component, "endpoint": "default"}
        self.queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._client = None

    def wants(self, kind: str) -> bool:
        return self.mode == "all" or self.mode == kind

    def log(self, kind: str, request_id: str, body: bytes, content_type: str = "application/json") -> None:
        if not self.wants(kind):
            return
        if self.queue is None:
            self.queue = asyncio.Queue(100)
            self._task = asyncio.ensure_future(self._run())
        try:
            self.queue.put_nowait((kind, request_id, body, content_type, datetime.now(UTC).isoformat()))
        except asyncio.QueueFull:
            log.warning("request logger queue full; dropping a %s event", kind)

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            item = await self.queue.get()
            try:
                await self._send(*item)
            except Exception as e:  # noqa: BLE001 - a sink failure must not stop the server
                log.warning("request logger: cannot deliver to %s: %s", self.url, e)

    async def _send(self, kind: str, rid: str, body: bytes, ctype: str, ts: str) -> None:
        ce_type = f"org.kubeflow.serving.inference.{kind}"
        if self.url.startswith(("http://", "https://")):
            import httpx

            if self._client is None:
                self._client = httpx.AsyncClient(timeout=10)
            headers = {"ce-specversion": "1.0", "ce-id": rid, "ce-type": ce_type, "ce-source": self.source,
                       "ce-time": ts, "content-type": ctype, **{f"ce-{k}": v for k, v in self.ext.items()}}
            await self._client.post(self.url, content=body, headers=headers)
            return
        path = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = {"base64": base64.b64encode(body).decode()}
        line = orjson.dumps({"specversion": "1.0", "id": rid, "type": ce_type, "source": self.source, "time": ts, **self.ext, "data": data})
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "ab") as f:
            f.write(line + b"\n")
