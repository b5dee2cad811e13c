"""Choosing what runs a predictor: a named runtime, an auto-selected ServingRuntime or
ClusterServingRuntime (KServe's rules: the format listed, ``autoSelect``, the protocol supported, highest
``priority``), or ketch's own model server, which serves every built-in format over V1, V2 and gRPC.

KServe's shipped runtime names (``kserve-sklearnserver``, ``kserve-mlserver``...) name ketch's model server,
so manifests written for KServe work unchanged.
"""

from __future__ import annotations

import sys

BUILTIN_FORMATS = ("sklearn", "scikit-learn", "xgboost", "lightgbm", "onnx", "pytorch", "torchscript", "custom", "python")
BUILTIN_NAMES = ("ketch-modelserver", "kserve-sklearnserver", "kserve-xgbserver", "kserve-lgbserver", "kserve-mlserver",
                 "kserve-tritonserver", "kserve-torchserve", "kserve-predictiveserver")


def _supports(rt: dict, fmt: str, version: str | None, protocol: str, auto: bool) -> int | None:
    spec = rt.get("spec") or {}
    if spec.get("disabled"):
        return None
    protos = spec.get("protocolVersions") or ["v1"]
    if protocol not in protos:
        return None
    best = None
    for f in spec.get("supportedModelFormats") or []:
        if f.get("name") != fmt:
            continue
        if version and f.get("version") != version:
            continue
        if auto and not f.get("autoSelect"):
            continue
        best = max(best or 0, int(f.get("priority") or 1))
    return best


def select(model: dict, namespaced: list[dict], cluster: list[dict]) -> tuple[str, dict | None]:
    """(runtime name, runtime object or None for ketch's server); raises ValueError with KServe's reason."""
    fmt = model["modelFormat"]["name"]
    version = model["modelFormat"].get("version")
    protocol = model.get("protocolVersion") or "v1"
    name = model.get("runtime")
    if name:
        for rt in namespaced + cluster:
            if rt["metadata"]["name"] == name:
                if _supports(rt, fmt, version, protocol, auto=False) is None:
                    raise ValueError(f"specified runtime {name} does not support model format {fmt} with protocol {protocol}")
                return name, rt
        if name in BUILTIN_NAMES:
            return name, None
        raise ValueError(f"specified runtime {name} does not exist")
    scored = []
    for i, rt in enumerate(namespaced + cluster):
        pr = _supports(rt, fmt, version, protocol, auto=True)
        if pr is not None:
            scored.append((pr, -i, rt))  # namespaced runtimes win ties, as in KServe
    if scored:
        scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
        rt = scored[0][2]
        return rt["metadata"]["name"], rt
    if fmt.lower() in BUILTIN_FORMATS:
        return "ketch-modelserver", None
    raise ValueError(f"No runtime found to support predictor with model type: {fmt}")


def template(args: list[str], values: dict[str, str]) -> list[str]:
    out = []
    for a in args:
        for k, v in values.items():
            a = a.replace("{{." + k + "}}", v)
        out.append(a)
    return out


def python() -> str:
    return sys.executable
