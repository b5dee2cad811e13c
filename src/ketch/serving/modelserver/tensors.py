"""Open Inference Protocol tensors: typed JSON data, the binary tensor data extension, and the request and
response objects handed to models (KServe's ``InferRequest``/``InferResponse`` contract, kept small).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ketch.serving.modelserver.errors import InvalidInput

NP_BY_DATATYPE: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}
DATATYPE_BY_KIND = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64", np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
}


def datatype_of(arr: np.ndarray) -> str:
    dt = DATATYPE_BY_KIND.get(arr.dtype)
    if dt is not None:
        return dt
    if arr.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    raise InvalidInput(f"unsupported output dtype {arr.dtype}")


@dataclass
class InferInput:
    name: str
    shape: list[int]
    datatype: str
    data: Any = None  # a list (JSON) or an ndarray (binary / gRPC raw contents)
    parameters: dict | None = None

    def as_numpy(self) -> np.ndarray:
        dt = NP_BY_DATATYPE.get(self.datatype)
        if dt is None:
            raise InvalidInput(f"invalid datatype {self.datatype!r} for input {self.name!r}")
        if isinstance(self.data, np.ndarray):
            arr = self.data
        else:
            try:
                arr = np.asarray(self.data, dtype=dt)
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"input {self.name!r}: data does not match datatype {self.datatype}: {e}") from None
        try:
            return arr.reshape(self.shape)
        except ValueError as e:
            raise InvalidInput(f"input {self.name!r}: {e}") from None


@dataclass
class InferOutput:
    name: str
    shape: list[int]
    datatype: str
    data: Any
    parameters: dict | None = None

    @classmethod
    def from_numpy(cls, name: str, arr: np.ndarray) -> InferOutput:
        arr = np.asarray(arr)
        return cls(name, list(arr.shape), datatype_of(arr), arr)


@dataclass
class InferRequest:
    model_name: str
    inputs: list[InferInput]
    id: str | None = None
    parameters: dict | None = None
    request_outputs: list[dict] = field(default_factory=list)
    from_grpc: bool = False

    def as_numpy(self) -> np.ndarray:
        """The model's input matrix: the single input, or the inputs side by side as columns."""
        if not self.inputs:
            raise InvalidInput("no inputs in the request")
        if len(self.inputs) == 1:
            return self.inputs[0].as_numpy()
        return np.column_stack([i.as_numpy() for i in self.inputs])


@dataclass
class InferResponse:
    model_name: str
    outputs: list[InferOutput]
    id: str | None = None
    model_version: str | None = None
    parameters: dict | None = None


# -- JSON / binary encodings -------------------------------------------------------------------------------

def _check_str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise InvalidInput(f"{what} must be a string")
    return v


def parse_infer_request(model_name: str, body: bytes, header_length: str | None) -> InferRequest:
    """Decode a V2 REST body. Without ``Inference-Header-Content-Length`` the body is JSON whatever the
    Content-Type says (tritonclient and curl send none); with it, raw tensors follow the JSON header."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length must be an integer") from None
        if n < 0 or n > len(body):
            raise InvalidInput("Inference-Header-Content-Length is larger than the body")
        head, raw = body[:n], memoryview(body)[n:]
    else:
        head, raw = body, None
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"Unrecognized request format: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("Unrecognized request format: expected a JSON object")
    ins = doc.get("inputs")
    if not isinstance(ins, list) or not ins:
        raise InvalidInput("Field 'inputs' is required and must be a non-empty list")
    inputs: list[InferInput] = []
    offset = 0
    for i, d in enumerate(ins):
        if not isinstance(d, dict):
            raise InvalidInput(f"inputs[{i}] must be an object")
        for f in ("name", "shape", "datatype"):
            if f not in d:
                raise InvalidInput(f"inputs[{i}].{f} is required")
        name = _check_str(d["name"], f"inputs[{i}].name")
        dtype = _check_str(d["datatype"], f"inputs[{i}].datatype")
        if dtype not in NP_BY_DATATYPE:
            raise InvalidInput(f"inputs[{i}].datatype: invalid datatype {dtype!r}")
        shape = d["shape"]
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise InvalidInput(f"inputs[{i}].shape must be a list of non-negative integers")
        params = d.get("parameters") or None
        if params is not None and not isinstance(params, dict):
            raise InvalidInput(f"inputs[{i}].parameters must be an object")
        size = params.get("binary_data_size") if params else None
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise InvalidInput(f"inputs[{i}].parameters.binary_data_size must be a non-negative integer")
        if size is not None:
            if raw is None:
                raise InvalidInput("received byte inputs, but the 'inference-header-content-length' header is missing.")
            chunk = raw[offset:offset + int(size)]
            if len(chunk) != int(size):
                raise InvalidInput(f"inputs[{i}]: binary_data_size {size} exceeds the body")
            offset += int(size)
            data: Any = _decode_binary(chunk, dtype, name)
        else:
            if "data" not in d:
                raise InvalidInput(f"inputs[{i}].data is required")
            data = d["data"]
        inputs.append(InferInput(name, shape, dtype, data, params))
    outs = doc.get("outputs") or []
    if not isinstance(outs, list):
        raise InvalidInput("outputs must be a list")
    for i, o in enumerate(outs):
        if not isinstance(o, dict) or not isinstance(o.get("parameters") or {}, dict):
            raise InvalidInput(f"outputs[{i}] must be an object whose parameters are an object")
    if not isinstance(doc.get("parameters") or {}, dict):
        raise InvalidInput("parameters must be an object")
    return InferRequest(model_name, inputs, doc.get("id"), doc.get("parameters") or None, outs)


def _decode_binary(chunk: memoryview, dtype: str, name: str) -> np.ndarray:
    if dtype == "BYTES":
        items, b, o = [], bytes(chunk), 0
        while o < len(b):
            if o + 4 > len(b):
                raise InvalidInput(f"input {name!r}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", b, o)
            items.append(b[o + 4:o + 4 + n])
            o += 4 + n
        return np.array(items, dtype=np.object_)
    try:
        return np.frombuffer(chunk, dtype=np.dtype(NP_BY_DATATYPE[dtype]).newbyteorder("<"))
    except ValueError as e:
        raise InvalidInput(f"input {name!r}: {e}") from None


def _encode_binary(arr: np.ndarray, dtype: str) -> bytes:
    if dtype == "BYTES":
        out = bytearray()
        for v in arr.reshape(-1):
            b = v if isinstance(v, bytes) else str(v).encode()
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return np.ascontiguousarray(arr, dtype=np.dtype(NP_BY_DATATYPE[dtype]).newbyteorder("<")).tobytes()


def _json_data(arr: Any, dtype: str) -> Any:
    if not isinstance(arr, np.ndarray):
        return arr
    flat = arr.reshape(-1)
    if dtype == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()


def encode_infer_response(resp: InferResponse, request: InferRequest | None) -> tuple[bytes, int | None]:
    """The V2 REST body, and the JSON header's length when binary outputs follow it."""
    wanted = {o.get("name"): (o.get("parameters") or {}) for o in (request.request_outputs if request else []) if isinstance(o, dict)}
    all_binary = bool(request and (request.parameters or {}).get("binary_data_output"))
    outputs, blobs = [], []
    for o in resp.outputs:
        if wanted and o.name not in wanted:
            continue
        binary = wanted.get(o.name, {}).get("binary_data", all_binary)
        params = dict(o.parameters) if o.parameters else None
        if binary and isinstance(o.data, np.ndarray):
            blob = _encode_binary(o.data, o.datatype)
            blobs.append(blob)
            params = {**(params or {}), "binary_data_size": len(blob)}
            outputs.append({"name": o.name, "shape": o.shape, "datatype": o.datatype, "parameters": params})
        else:
            outputs.append({"name": o.name, "shape": o.shape, "datatype": o.datatype, "parameters": params, "data": _json_data(o.data, o.datatype)})
    doc = {"model_name": resp.model_name, "model_version": resp.model_version, "id": resp.id or str(uuid.uuid4()),
           "parameters": resp.parameters, "outputs": outputs}
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if blobs:
        return head + b"".join(blobs), len(head)
    return head, None
