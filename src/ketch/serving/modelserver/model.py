"""The model contract: what a built-in format or a user's custom model implements.

``Model`` mirrors KServe's ``kserve.Model`` so custom code ports over: ``load()`` sets ``ready``;
``preprocess`` -> ``predict`` -> ``postprocess`` run for every request (each may be sync or async);
``payload`` is the V1 JSON dict or an :class:`InferRequest` for V2/gRPC. A model with ``predictor_host``
set is a transformer: its default ``predict`` forwards the preprocessed payload to that predictor.

``ArrayModel`` is what the built-in formats subclass: they only implement ``predict_array(X)``; the server
then skips the generic pipeline, decodes straight to numpy and can batch concurrent requests into one call.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ketch.serving.modelserver.errors import InferenceError, InvalidInput, NotImplementedByServer
from ketch.serving.modelserver.tensors import InferOutput, InferRequest, InferResponse


class Model:
    """Base class for custom models and transformers. Override ``load`` and any of the three steps."""

    def __init__(self, name: str, predictor_host: str | None = None, protocol: str = "v1") -> None:
        self.name = name
        self.ready = False
        self.predictor_host = predictor_host  # "host:port" or a URL; makes this model a transformer
        self.protocol = protocol
        self._client: Any = None

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return payload

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if self.predictor_host:
            return self._forward(payload, headers)
        raise NotImplementedByServer("predict is not implemented by this model")

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        return result

    def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedByServer("Could not find explainer_host.")

    def get_input_types(self) -> list[dict]:
        return []

    def get_output_types(self) -> list[dict]:
        return []

    # -- transformer plumbing ------------------------------------------------------------------------------

    async def _forward(self, payload: Any, headers: dict[str, str] | None) -> Any:
        import httpx

        base = self.predictor_host if "://" in (self.predictor_host or "") else f"http://{self.predictor_host}"
        if self._client is None:
            import os

            from ketch.kinds.incluster import ssl_context_for
            from ketch.kinds.mounts import bearer

            # Through ketch's gateway the pod authenticates as its ServiceAccount; its token never goes
            # to any other host.
            own = os.environ.get("KETCH_SERVER")
            mine = bool(own and base.startswith(own))
            # ketch's CA (from the Pod's kubeconfig) when KETCH_SERVER is https: ketch reached beyond loopback
            self._client = httpx.AsyncClient(timeout=60, headers=bearer() if mine else {}, verify=(ssl_context_for(base) if mine else None) or True)
        if isinstance(payload, InferRequest):
            body = {"id": payload.id, "parameters": payload.parameters, "inputs": [
                {"name": i.name, "shape": i.shape, "datatype": i.datatype,
                 "data": i.data.reshape(-1).tolist() if isinstance(i.data, np.ndarray) else i.data} for i in payload.inputs]}
            r = await self._client.post(f"{base}/v2/models/{self.name}/infer", json=body)
            _raise_for(r)
            doc = r.json()
            return InferResponse(doc["model_name"], [InferOutput(o["name"], o["shape"], o["datatype"], o.get("data"), o.get("parameters"))
                                                     for o in doc.get("outputs", [])], doc.get("id"))
        r = await self._client.post(f"{base}/v1/models/{self.name}:predict", json=payload)
        _raise_for(r)
        return r.json()


def _raise_for(r: Any) -> None:
    if r.status_code >= 400:
        try:
            msg = r.json().get("error", r.text)
        except ValueError:
            msg = r.text
        err = InvalidInput(msg) if r.status_code == 400 else InferenceError(msg)
        err.status = r.status_code
        raise err


class ArrayModel(Model):
    """A model that maps an input matrix to an output array; the built-in formats subclass this."""

    #: file suffixes this format loads from the model directory, in order of preference
    suffixes: tuple[str, ...] = ()

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir

    def model_file(self) -> str:
        """The one file in the model dir with one of ``suffixes`` (KServe: exactly one, else an error)."""
        if os.path.isfile(self.model_dir):
            return self.model_dir
        found = []
        for root, _dirs, files in os.walk(self.model_dir):
            for f in sorted(files):
                if f.endswith(self.suffixes):
                    found.append(os.path.join(root, f))
        if not found:
            raise RuntimeError(f"no model file ending in {', '.join(self.suffixes)} found in {self.model_dir}")
        if len(found) > 1:
            raise RuntimeError(f"more than one model file found in {self.model_dir}: {[os.path.basename(f) for f in found]}")
        return found[0]

    def predict_array(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            out = self.run(payload.as_numpy())
            return InferResponse(self.name, [InferOutput.from_numpy("output-0", out)], payload.id)
        return {"predictions": self.run(v1_instances(payload)).tolist()}

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.predict_array(x))
        except (InvalidInput, NotImplementedByServer):
            raise
        except Exception as e:
            if _is_input_error(e):
                raise InvalidInput(str(e)) from None  # the client's input, the model's message: a 400
            raise InferenceError(str(e)) from None


# What the frameworks raise for input of the wrong shape, feature count or type (sklearn, xgboost, numpy:
# ValueError/TypeError/IndexError; onnxruntime: InvalidArgument; lightgbm/xgboost: their own errors
# naming the features or the shape).
_INPUT_ERROR_NAMES = {"InvalidArgument"}
_INPUT_ERROR_WORDS = ("feature", "shape", "dimension", "expected", "expecting")


def _is_input_error(e: Exception) -> bool:
    if isinstance(e, ValueError | TypeError | IndexError) or type(e).__name__ in _INPUT_ERROR_NAMES:
        return True
    return type(e).__name__ in ("LightGBMError", "XGBoostError") and any(w in str(e).lower() for w in _INPUT_ERROR_WORDS)


def v1_instances(body: Any) -> np.ndarray:
    """The V1 ``instances`` (or ``inputs``) list as a matrix, with an error naming the field."""
    if not isinstance(body, dict):
        raise InvalidInput("Unrecognized request format: expected a JSON object")
    inst = body.get("instances", body.get("inputs"))
    if inst is None:
        raise InvalidInput('Expected "instances" or "inputs" in the request body')
    if not isinstance(inst, list):
        raise InvalidInput('Expected "instances" to be a list')
    if inst and isinstance(inst[0], dict):
        # A list of records: one column per key of the first record, in its order.
        keys = list(inst[0])
        try:
            inst = [[_scalar(r[k]) for k in keys] for r in inst]
        except (KeyError, TypeError) as e:
            raise InvalidInput(f"instances: every record needs the keys {keys}: missing {e}") from None
    try:
        return np.asarray(inst)
    except ValueError as e:
        raise InvalidInput(f"instances: {e}") from None


def _scalar(v: Any) -> Any:
    return v[0] if isinstance(v, list) and len(v) == 1 else v
