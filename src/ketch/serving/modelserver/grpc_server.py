"""The gRPC data plane: ``inference.GRPCInferenceService`` of the Open Inference Protocol.

It runs grpcio's threaded server beside the REST event loop and hands each inference to that loop, so
gRPC and REST requests share one model, one batcher and one set of metrics. Status codes follow KServe:
invalid input -> INVALID_ARGUMENT, unknown model -> NOT_FOUND (ModelReady too), not ready -> UNAVAILABLE,
anything else -> INTERNAL. Outputs come back as ``raw_output_contents``, as KServe sends them.
"""

from __future__ import annotations

import asyncio
import os
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from ketch.serving.modelserver.errors import InvalidInput, ModelNotFound, ServingError
from ketch.serving.modelserver.oip import open_inference_pb2 as pb
from ketch.serving.modelserver.oip import open_inference_pb2_grpc as pbg
from ketch.serving.modelserver.rest import SERVER_NAME, SERVER_VERSION, ModelServerApp, _fast
from ketch.serving.modelserver.tensors import (
    NP_BY_DATATYPE,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    _decode_binary,
    _encode_binary,
)

_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
             "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _param(p: Any) -> Any:
    return getattr(p, p.WhichOneof("parameter_choice")) if p.WhichOneof("parameter_choice") else None


def to_infer_request(req: Any) -> InferRequest:
    if req.raw_input_contents and len(req.raw_input_contents) != len(req.inputs):
        raise InvalidInput("the number of raw_input_contents must match the number of inputs")
    inputs = []
    for i, t in enumerate(req.inputs):
        if t.datatype not in NP_BY_DATATYPE:
            raise InvalidInput(f"inputs[{i}].datatype: invalid datatype {t.datatype!r}")
        if req.raw_input_contents:
            if t.HasField("contents"):
                raise InvalidInput("contents field must not be specified when using raw_input_contents")
            data: Any = _decode_binary(memoryview(req.raw_input_contents[i]), t.datatype, t.name)
        else:
            field = _CONTENTS.get(t.datatype)
            if field is None:
                raise InvalidInput(f"input {t.name!r}: datatype {t.datatype} needs raw_input_contents")
            data = list(getattr(t.contents, field))
            if t.datatype == "BYTES":
                data = np.array(data, dtype=np.object_)
        inputs.append(InferInput(t.name, list(t.shape), t.datatype, data, {k: _param(v) for k, v in t.parameters.items()} or None))
    outs = [{"name": o.name, "parameters": {k: _param(v) for k, v in o.parameters.items()}} for o in req.outputs]
    return InferRequest(req.model_name, inputs, req.id or None, {k: _param(v) for k, v in req.parameters.items()} or None, outs, from_grpc=True)


def to_grpc_response(resp: InferResponse, request: InferRequest) -> Any:
    out = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version or "", id=resp.id or request.id or "")
    wanted = {o["name"] for o in request.request_outputs}
    for o in resp.outputs:
        if wanted and o.name not in wanted:
            continue
        arr = o.data if isinstance(o.data, np.ndarray) else np.asarray(o.data, dtype=NP_BY_DATATYPE.get(o.datatype))
        t = out.outputs.add(name=o.name, datatype=o.datatype, shape=list(o.shape))
        blob = _encode_binary(arr, o.datatype)
        t.parameters["binary_data_size"].int64_param = len(blob)
        out.raw_output_contents.append(blob)
    return out


class Servicer(pbg.GRPCInferenceServiceServicer):
    def __init__(self, app: ModelServerApp, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop

    def _abort(self, context: Any, e: ServingError) -> None:
        context.abort(getattr(grpc.StatusCode, e.grpc_code), e.message)

    def ServerLive(self, request, context):  # noqa: ANN001, ANN201, N802
        return pb.ServerLiveResponse(live=self.app.live)

    def ServerReady(self, request, context):  # noqa: ANN001, ANN201, N802
        return pb.ServerReadyResponse(ready=all(m.ready for m in self.app.registry.models.values()))

    def ModelReady(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            return pb.ModelReadyResponse(ready=bool(self.app.registry.get(request.name).ready))
        except ModelNotFound as e:
            self._abort(context, e)

    def ServerMetadata(self, request, context):  # noqa: ANN001, ANN201, N802
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=["model_repository_extension"])

    def ModelMetadata(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            m = self.app.registry.get(request.name)
        except ModelNotFound as e:
            self._abort(context, e)
        r = pb.ModelMetadataResponse(name=request.name, platform="")
        for t in m.get_input_types():
            r.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for t in m.get_output_types():
            r.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return r

    def ModelInfer(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            fut = asyncio.run_coroutine_threadsafe(self._infer(request), self.loop)
            return fut.result()
        except ServingError as e:
            self._abort(context, e)
        except Exception as e:  # noqa: BLE001
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__} : {e}")

    async def _infer(self, request: Any) -> Any:
        app = self.app
        name = request.model_name
        model = app.registry.ready(name)
        req = to_infer_request(request)
        if _fast(model):
            y = await app._predict_array(model, req.as_numpy())  # type: ignore[arg-type]
            resp = InferResponse(name, [InferOutput.from_numpy("output-0", y)], req.id)
        else:
            resp = await app._pipeline(model, req, {})
        return to_grpc_response(resp, req)


def start(app: ModelServerApp, loop: asyncio.AbstractEventLoop, port: int, workers: int = 8) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    pbg.add_GRPCInferenceServiceServicer_to_server(Servicer(app, loop), server)
    bound = server.add_insecure_port(f"{os.environ.get('KETCH_BIND_HOST') or '127.0.0.1'}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind gRPC port {port}")
    server.start()
    return server
