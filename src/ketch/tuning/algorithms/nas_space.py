"""Katib's ``nasConfig``: the search space of Neural Architecture Search, as its NAS suggestions read it.

``graphConfig`` gives ``numLayers`` (and the network's ``inputSizes`` / ``outputSizes``, passed through to
trials). Each operation (``operationType`` with ``parameters``, each a feasible space) expands into one
candidate per combination of its parameter values, numbered in order: a convolution with
``filter_size: [3, 5]`` and ``num_filter: [8, 16]`` is four operations. Trials get the result as Katib's
ENAS suggestion hands it out: ``nn_config`` (num_layers, input_sizes, output_sizes and the ``embedding``
of every operation id) and ``architecture``, with double quotes replaced by single ones as Katib does.
"""

from __future__ import annotations

import itertools
import json
import math

from ketch.kinds.definitions import FieldError


def _values(p: dict) -> list[str]:
    fs = p.get("feasibleSpace") or {}
    t = p.get("parameterType")
    if t in ("categorical", "discrete"):
        return [str(v) for v in fs.get("list") or []]
    lo, hi = float(fs["min"]), float(fs["max"])
    step = float(fs.get("step") or (1 if t == "int" else 0))
    if step <= 0:
        raise ValueError(f"double parameter {p.get('name')!r} of a NAS operation needs a step")
    n = math.floor((hi - lo) / step + 1e-9) + 1
    return [str(int(lo + i * step)) if t == "int" else repr(lo + i * step) for i in range(n)]


def operations(nas: dict) -> list[dict]:
    """Every candidate operation: ``{"opt_id", "opt_type", "opt_params"}``."""
    out = []
    for op in nas.get("operations") or []:
        params = op.get("parameters") or []
        names = [p["name"] for p in params]
        for combo in itertools.product(*[_values(p) for p in params]):
            out.append({"opt_id": len(out), "opt_type": op["operationType"], "opt_params": dict(zip(names, combo, strict=True))})
    return out


def nn_config(nas: dict) -> str:
    g = nas.get("graphConfig") or {}
    cfg = {"num_layers": int(g.get("numLayers", 0)), "input_sizes": g.get("inputSizes") or [], "output_sizes": g.get("outputSizes") or [],
           "embedding": {str(o["opt_id"]): o for o in operations(nas)}}
    return json.dumps(cfg).replace('"', "'")


def architecture(arch: list[list[int]]) -> str:
    return json.dumps(arch)


def parse_architecture(s: str) -> list[list[int]]:
    return json.loads(s.replace("'", '"'))


def validate(nas: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    g = nas.get("graphConfig") or {}
    if not isinstance(g.get("numLayers"), int) or g["numLayers"] < 1:
        errs.append(FieldError("spec.nasConfig.graphConfig.numLayers", "FieldValueRequired", "numLayers must be a positive integer", g.get("numLayers")))
    ops = nas.get("operations") or []
    if not ops:
        errs.append(FieldError("spec.nasConfig.operations", "FieldValueRequired", "nasConfig needs at least one operation"))
    for i, op in enumerate(ops):
        if not op.get("operationType"):
            errs.append(FieldError(f"spec.nasConfig.operations[{i}].operationType", "FieldValueRequired", "operationType is required"))
        for j, p in enumerate(op.get("parameters") or []):
            path = f"spec.nasConfig.operations[{i}].parameters[{j}]"
            if not p.get("name"):
                errs.append(FieldError(f"{path}.name", "FieldValueRequired", "parameter name is required"))
            try:
                if not _values(p):
                    errs.append(FieldError(f"{path}.feasibleSpace", "FieldValueRequired", "the feasible space gives no values"))
            except (KeyError, ValueError, TypeError) as e:
                errs.append(FieldError(f"{path}.feasibleSpace", "FieldValueInvalid", f"cannot expand the feasible space: {e}"))
    return errs
