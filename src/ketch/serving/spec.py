"""Reading an InferenceService's spec the way KServe's webhook does: the per-framework predictor forms
(``sklearn:``, ``xgboost:``, ...) become ``model: {modelFormat: {name}}``, the one-of rules are checked with
errors naming the field, and each component's revision hash is computed.

A revision is the component's spec minus ``canaryTrafficPercent``: changing anything else (the model, its
storage, scaling, batching...) makes a new revision, while moving the traffic split does not.
"""

from __future__ import annotations

import copy
import hashlib

import orjson

FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "pytorch", "onnx", "tensorflow", "triton", "huggingface", "pmml", "paddle")
V2_BY_DEFAULT = ("triton", "onnx", "huggingface")
COMPONENTS = ("predictor", "transformer", "explainer")
TRAFFIC_ONLY = ("canaryTrafficPercent",)


class SpecError(ValueError):
    """An invalid spec; the message names the field, as an admission error would."""


def normalize_predictor(pred: dict) -> dict:
    p = copy.deepcopy(pred)
    impls = [f for f in (*FRAMEWORKS, "model") if p.get(f) is not None]
    if p.get("containers"):
        impls.append("containers")
    if len(impls) != 1:
        raise SpecError(f"spec.predictor: exactly one of [{', '.join((*FRAMEWORKS, 'model', 'containers'))}] must be specified in PredictorSpec"
                        + (f" (found {', '.join(impls)})" if impls else ""))
    impl = impls[0]
    if impl in FRAMEWORKS:
        ext = p.pop(impl) or {}
        if not isinstance(ext, dict):
            raise SpecError(f"spec.predictor.{impl} must be an object")
        model = {"modelFormat": {"name": impl}, **ext}
        if impl in V2_BY_DEFAULT:
            model.setdefault("protocolVersion", "v2")
        p["model"] = model
    if impl != "containers":
        m = p["model"]
        fmt = m.get("modelFormat") or {}
        if not fmt.get("name"):
            raise SpecError("spec.predictor.model.modelFormat.name: Required value")
        if not m.get("storageUri") and not m.get("storageUris") and not p.get("storageUris"):
            raise SpecError("spec.predictor.model.storageUri: Required value")
    return p


def components(isvc: dict) -> dict[str, dict]:
    spec = isvc.get("spec") or {}
    if not isinstance(spec.get("predictor"), dict):
        raise SpecError("spec.predictor: Required value")
    out = {"predictor": normalize_predictor(spec["predictor"])}
    for c in ("transformer", "explainer"):
        s = spec.get(c)
        if s is None:
            continue
        if not isinstance(s, dict) or not s.get("containers"):
            raise SpecError(f"spec.{c}.containers: Required value (a {c} is a custom container)")
        cont = s["containers"][0]
        if not cont.get("command") and not cont.get("args"):
            raise SpecError(f"spec.{c}.containers[0].command: Required value (ketch runs containers as local processes)")
        out[c] = copy.deepcopy(s)
    for name, s in out.items():
        lo, hi = s.get("minReplicas"), s.get("maxReplicas")
        if lo is not None and hi and hi < lo:
            raise SpecError(f"spec.{name}.maxReplicas: Invalid value: {hi}: must be >= minReplicas ({lo})")
    return out


def revision_hash(spec: dict) -> str:
    s = {k: v for k, v in spec.items() if k not in TRAFFIC_ONLY}
    return hashlib.sha256(orjson.dumps(s, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
