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
# Labels and annotations a component's Pods carry in both deployment modes (serverless and raw)
POD = ("v1", "Pod")
L_ISVC = "serving.kserve.io/inferenceservice"
L_COMP = "component"
A_PORT = "serving.ketch.io/port"
A_GRPC_PORT = "serving.ketch.io/grpc-port"
TRAFFIC_ONLY = ("canaryTrafficPercent",)


class SpecError(ValueError):
    """An invalid spec; the message names the field, as an admission error would."""


SCHEDULING_FIELDS = ("nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "nodeName", "priorityClassName")


def pod_scheduling(spec: dict) -> dict:
    """The PodSpec fields of a component's spec that say where its Pods may run (KServe inlines PodSpec in
    each component), copied onto the predictor Pods so a kubelet with several Nodes places them."""
    return {k: copy.deepcopy(spec[k]) for k in SCHEDULING_FIELDS if spec.get(k)}


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


CANARY_FORBIDDEN = ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling", "workerSpec")


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, objects merged key by key, anything else replaced (mergo's override)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def canaries(isvc: dict, stable: dict) -> list[tuple[str, str, dict, int]]:
    """KServe's ``spec.canary[]`` (Standard mode): (component key ``canary-<name>``, name, the canary's
    predictor spec, traffic percent) for each entry. A canary's predictor is the stable one with the
    entry's fields on top (a per-framework form is read as ``model``), its autoscaling fields dropped and a
    fixed replica count: its ``minReplicas``, else ``ceil(stable minReplicas x percent / 100)`` (at least 1)."""
    entries = (isvc.get("spec") or {}).get("canary") or []
    out: list[tuple[str, str, dict, int]] = []
    total = 0
    seen: set[str] = set()
    stable_name = ((isvc.get("spec") or {}).get("predictor") or {}).get("name") or ""
    for i, e in enumerate(entries):
        path = f"spec.canary[{i}]"
        pred = copy.deepcopy(e.get("predictor") or {})
        name = pred.pop("name", None)
        if not name:
            raise SpecError(f"{path}.predictor.name: Required value (a canary is named)")
        if name in seen:
            raise SpecError(f"{path}.predictor.name: Duplicate value: {name!r}")
        if stable_name and name == stable_name:
            raise SpecError(f"{path}.predictor.name: Invalid value: {name!r}: must differ from spec.predictor.name")
        seen.add(name)
        for f in CANARY_FORBIDDEN:
            if f in pred:
                raise SpecError(f"{path}.predictor.{f}: Forbidden: a canary has a fixed replica count")
        pct = int(e.get("trafficPercent") or 0)
        total += pct
        for f in FRAMEWORKS:
            if pred.get(f) is not None:
                pred["model"] = {"modelFormat": {"name": f}, **(pred.pop(f) or {})}
        merged = _merge({k: v for k, v in stable.items() if k not in ("canaryTrafficPercent", *CANARY_FORBIDDEN)}, pred)
        if "model" in pred and "containers" in merged:
            merged.pop("containers")
        try:
            merged = normalize_predictor(merged)
        except SpecError as err:
            raise SpecError(str(err).replace("spec.predictor", f"{path}.predictor")) from None
        lo = pred.get("minReplicas")
        n = int(lo) if lo is not None else max(1, -(-int(stable.get("minReplicas") if stable.get("minReplicas") is not None else 1) * pct // 100))
        merged["minReplicas"] = merged["maxReplicas"] = n
        out.append((f"canary-{name}", name, merged, pct))
    if total > 100:
        raise SpecError(f"spec.canary: Invalid value: {total}: the canaries' trafficPercent must sum to at most 100")
    return out
