"""The REST data plane as a bare ASGI app: KServe's V1 and V2 (Open Inference Protocol) routes.

A bare ASGI callable with orjson, rather than a framework, because the protocol layer is where Python
model servers lose their time (KServe adds about 0.4 ms per request over a plain handler). Answers match
KServe's: ``{"error": "..."}`` bodies with its status codes (400 invalid input, 404 unknown model, 503 not
ready, 501 not implemented, 500 inference errors), V1 ``{"predictions": [...]}``, V2 responses with typed
outputs named ``output-0``. Departures, on purpose: a JSON body is accepted without Content-Type (as
tritonclient and curl send it), and malformed or incomplete bodies answer 400 ``{"error"}`` naming the
field, not FastAPI's 422 ``{"detail"}`` or a 500.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import time
import uuid
from typing import Any

import orjson

from ketch.serving.modelserver.batcher import Batcher
from ketch.serving.modelserver.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    NotImplementedByServer,
    ServingError,
)
from ketch.serving.modelserver.metrics import Metrics
from ketch.serving.modelserver.model import ArrayModel, Model, v1_instances
from ketch.serving.modelserver.reqlog import RequestLogger, request_id
from ketch.serving.modelserver.tensors import (
    InferOutput,
    InferRequest,
    InferResponse,
    encode_infer_response,
    parse_infer_request,
)

log = logging.getLogger("ketch.serving.modelserver")
SERVER_NAME = "kserve"  # what GET /v2 reports; clients (tritonclient, kserve SDK) only read it back
SERVER_VERSION = "0.21.0"
JSON = [(b"content-type", b"application/json")]


class Registry:
    """The models one server answers for, with each model's batcher when batching is on."""

    def __init__(self, metrics: Metrics) -> None:
        self.models: dict[str, Model] = {}
        self.batchers: dict[str, Batcher] = {}
        self.metrics = metrics

    def add(self, model: Model, max_batch_size: int = 0, max_latency_ms: float = 500.0) -> None:
        self.models[model.name] = model
        if max_batch_size > 1 and isinstance(model, ArrayModel):
            hist = self.metrics.child(self.metrics.predict, model.name)
            batch = self.metrics.child(self.metrics.batch, model.name)

            def observe(rows: int, secs: float) -> None:
                hist.observe(secs)
                batch.observe(rows)

            self.batchers[model.name] = Batcher(model, max_batch_size, max_latency_ms, observe)

    def get(self, name: str) -> Model:
        m = self.models.get(name)
        if m is None:
            raise ModelNotFound(name)
        return m

    def ready(self, name: str) -> Model:
        m = self.get(name)
        if not m.ready:
            raise ModelNotReady(name)
        return m


def _fast(model: Model) -> bool:
    """A built-in format with the default pipeline: decode straight to numpy and (maybe) batch."""
    t = type(model)
    return isinstance(model, ArrayModel) and t.preprocess is Model.preprocess and t.postprocess is Model.postprocess and t.predict is ArrayModel.predict


async def _call(fn: Any, *args: Any) -> Any:
    r = fn(*args)
    if inspect.isawaitable(r):
        r = await r
    return r


class ModelServerApp:
    def __init__(self, registry: Registry, access_log: bool = True, request_logger: RequestLogger | None = None) -> None:
        self.registry = registry
        self.metrics = registry.metrics
        self.access_log = access_log
        self.reqlog = request_logger
        self.live = True

    # -- ASGI ----------------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    msg = await receive()
                    if msg["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif msg["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        t0 = time.perf_counter()
        method = scope["method"]
        body = b""
        if method in ("POST", "PUT"):
            msg = await receive()
            body = msg.get("body", b"")
            while msg.get("more_body"):
                msg = await receive()
                body += msg.get("body", b"")
        extra: list = []
        try:
            status, payload, extra = await self.route(method, scope["path"], scope, body)
        except ServingError as e:
            status, payload = e.status, orjson.dumps({"error": e.message})
        except Exception as e:  # noqa: BLE001 - every failure answers {"error"}, never a bare 500 page
            log.exception("unhandled error serving %s %s", method, scope["path"])
            status, payload = 500, orjson.dumps({"error": f"{type(e).__name__} : {e}"})
        headers = (extra or JSON) + [(b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if self.access_log:
            client = scope.get("client") or ("-", 0)
            sys.stderr.write(f'{client[0]}:{client[1]} - "{method} {scope["path"]} HTTP/{scope.get("http_version", "1.1")}" {status} {(time.perf_counter() - t0) * 1000:.2f}ms\n')

    # -- routing -------------------------------------------------------------------------------------------

    async def route(self, method: str, path: str, scope: dict, body: bytes) -> tuple[int, bytes, list]:
        if path.startswith("/v1/models"):
            rest = path[len("/v1/models"):]
            if rest in ("", "/"):
                self._only(method, "GET")
                return 200, orjson.dumps({"models": list(self.registry.models)}), []
            rest = rest[1:]
            if ":" in rest:
                self._only(method, "POST")
                name, _, verb = rest.rpartition(":")
                if verb == "predict":
                    return await self.v1_predict(name, body, scope)
                if verb == "explain":
                    return await self.v1_explain(name, body, scope)
                return 404, orjson.dumps({"detail": "Not Found"}), []
            self._only(method, "GET")
            m = self.registry.get(rest)
            if not m.ready:
                raise ModelNotReady(rest)
            return 200, orjson.dumps({"name": rest, "ready": True}), []
        if path.startswith("/v2"):
            return await self.v2(method, path[3:].strip("/").split("/") if path != "/v2" else [], scope, body)
        if path == "/" or path == "":
            return 200, b'{"status":"alive"}', []
        if path == "/metrics":
            data, ctype = self.metrics.render()
            return 200, data, [(b"content-type", ctype.encode())]
        return 404, b'{"detail":"Not Found"}', []

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise _MethodNotAllowed()

    async def v2(self, method: str, seg: list[str], scope: dict, body: bytes) -> tuple[int, bytes, list]:
        if seg == [] or seg == [""]:
            self._only(method, "GET")
            return 200, orjson.dumps({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["model_repository_extension", "binary_tensor_data"]}), []
        if seg[0] == "health" and len(seg) == 2:
            self._only(method, "GET")
            if seg[1] == "live":
                if not self.live:
                    return 503, b'{"error":"Server is not live."}', []
                return 200, b'{"live":true}', []
            if seg[1] == "ready":
                ready = all(m.ready for m in self.registry.models.values())
                if not ready:
                    return 503, b'{"error":"Server is not ready."}', []
                return 200, b'{"ready":true}', []
        if seg[0] == "models":
            if len(seg) == 1:
                self._only(method, "GET")
                return 200, orjson.dumps({"models": list(self.registry.models)}), []
            name, rest = seg[1], seg[2:]
            version = None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if rest == ["infer"]:
                self._only(method, "POST")
                return await self.v2_infer(name, version, body, scope)
            if rest == ["ready"]:
                self._only(method, "GET")
                m = self.registry.get(name)
                return 200, orjson.dumps({"name": name, "ready": bool(m.ready)}), []
            if rest == []:
                self._only(method, "GET")
                m = self.registry.get(name)
                if version is not None:
                    raise NotImplementedByServer("Model versioning not supported yet.")
                return 200, orjson.dumps({"name": name, "versions": None, "platform": "", "inputs": m.get_input_types(), "outputs": m.get_output_types()}), []
        if seg[0] == "repository" and len(seg) == 4 and seg[1] == "models" and seg[3] in ("load", "unload"):
            self._only(method, "POST")
            m = self.registry.get(seg[2])
            if seg[3] == "load":
                if not m.ready:
                    await asyncio.get_running_loop().run_in_executor(None, m.load)
                return 200, orjson.dumps({"name": seg[2], "load": True}), []
            m.ready = False
            return 200, orjson.dumps({"name": seg[2], "unload": True}), []
        return 404, b'{"detail":"Not Found"}', []

    # -- inference -----------------------------------------------------------------------------------------

    async def _predict_array(self, model: ArrayModel, x: Any) -> Any:
        b = self.registry.batchers.get(model.name)
        if b is not None and getattr(x, "ndim", 0) >= 2:
            return await b.submit(x)
        t0 = time.perf_counter()
        y = model.run(x)
        self.metrics.child(self.metrics.predict, model.name).observe(time.perf_counter() - t0)
        return y

    async def _pipeline(self, model: Model, payload: Any, headers: dict) -> Any:
        m, name = self.metrics, model.name
        t0 = time.perf_counter()
        payload = await _call(model.preprocess, payload, headers)
        t1 = time.perf_counter()
        result = await _call(model.predict, payload, headers)
        t2 = time.perf_counter()
        result = await _call(model.postprocess, result, headers)
        t3 = time.perf_counter()
        m.child(m.preprocess, name).observe(t1 - t0)
        m.child(m.predict, name).observe(t2 - t1)
        m.child(m.postprocess, name).observe(t3 - t2)
        return result

    def _done(self, name: str, protocol: str, code: int, t0: float) -> None:
        if name not in self.registry.models:
            return  # no series per unknown name: a client cannot grow the registry
        m = self.metrics
        m.child(m.requests, name, protocol, str(code)).inc()
        m.child(m.latency, name, protocol).observe(time.perf_counter() - t0)

    async def v1_predict(self, name: str, body: bytes, scope: dict) -> tuple[int, bytes, list]:
        t0 = time.perf_counter()
        code = 500
        try:
            model = self.registry.ready(name)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise InvalidInput(f"Unrecognized request format: {e}") from None
            rid, md = self._log_request(scope, body, json_ok=True)
            if _fast(model):
                y = await self._predict_array(model, v1_instances(doc))  # type: ignore[arg-type]
                out = orjson.dumps({"predictions": y if y.dtype.kind in "biuf" else y.tolist()}, option=orjson.OPT_SERIALIZE_NUMPY)
            else:
                res = await self._pipeline(model, doc, _headers(scope))
                out = res if isinstance(res, bytes) else orjson.dumps(res, option=orjson.OPT_SERIALIZE_NUMPY)
            code = 200
            self._log_response(rid, md, out, json_ok=True)
            return 200, out, []
        except ServingError as e:
            code = e.status
            raise
        finally:
            self._done(name, "v1", code, t0)

    async def v1_explain(self, name: str, body: bytes, scope: dict) -> tuple[int, bytes, list]:
        model = self.registry.ready(name)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"Unrecognized request format: {e}") from None
        t0 = time.perf_counter()
        res = await _call(model.explain, doc, _headers(scope))
        self.metrics.child(self.metrics.explain, name).observe(time.perf_counter() - t0)
        return 200, orjson.dumps(res, option=orjson.OPT_SERIALIZE_NUMPY), []

    async def v2_infer(self, name: str, version: str | None, body: bytes, scope: dict) -> tuple[int, bytes, list]:
        t0 = time.perf_counter()
        code = 500
        try:
            model = self.registry.ready(name)
            hlen = None
            for k, v in scope["headers"]:
                if k == b"inference-header-content-length":
                    hlen = v.decode()
            req = parse_infer_request(name, body, hlen)
            if req.id is None:
                req.id = str(uuid.uuid4())
            rid, md = self._log_request(scope, body, req.id, json_ok=hlen is None)
            if _fast(model):
                y = await self._predict_array(model, req.as_numpy())  # type: ignore[arg-type]
                resp = InferResponse(name, [InferOutput.from_numpy("output-0", y)], req.id, version)
            else:
                resp = await self._pipeline(model, req, _headers(scope))
                if isinstance(resp, dict):
                    resp = _dict_response(name, resp, req.id)
            out, n = encode_infer_response(resp, req)
            code = 200
            self._log_response(rid, md, out, json_ok=n is None)
            if n is None:
                return 200, out, []
            return 200, out, [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", str(n).encode())]
        except ServingError as e:
            code = e.status
            raise
        finally:
            self._done(name, "v2", code, t0)

    def _log_request(self, scope: dict, body: bytes, rid: str | None = None, json_ok: bool = False) -> tuple[str, dict | None]:
        """Log a request (``json_ok``: the body is known to be valid JSON); (request id, metadata) for its response."""
        if self.reqlog is None:
            return rid or "", None
        rid = rid or _header(scope, b"x-request-id") or request_id()
        md = self.reqlog.metadata(scope.get("headers"))
        self.reqlog.log("request", rid, body, metadata=md, json_ok=json_ok)
        return rid, md

    def _log_response(self, rid: str, md: dict | None, out: bytes, json_ok: bool = False) -> None:
        if self.reqlog is not None:
            self.reqlog.log("response", rid, out, metadata=md, json_ok=json_ok)


class _MethodNotAllowed(ServingError):
    status = 405

    def __init__(self) -> None:
        super().__init__("Method Not Allowed")


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _dict_response(name: str, doc: dict, rid: str | None) -> InferResponse:
    """A custom model may answer a V2 request with a plain dict in the V2 response shape."""
    outs = [InferOutput(o["name"], o["shape"], o["datatype"], o.get("data"), o.get("parameters")) for o in doc.get("outputs", [])]
    return InferResponse(doc.get("model_name", name), outs, doc.get("id", rid))


__all__ = ["ModelServerApp", "Registry", "InferRequest"]
