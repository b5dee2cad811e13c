"""v1 ResourceQuota and LimitRange: what a namespace may hold in total, and the defaults its containers get.

The arithmetic is here as pure functions (``usage``, ``exceeded``, ``apply_limit_range``) so that Pod
admission (``machinery/quota.py``) and the status controller agree on it.
"""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.resources import parse_quantity

# Quota keys ketch counts for Pods: compute requests and limits (bare names mean requests), GPUs, and count.
COMPUTE = ("cpu", "memory", "nvidia.com/gpu")


def _sum(containers: list[dict], field: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in containers:
        res = (c.get("resources") or {})
        vals = dict(res.get("limits") or {}) if field == "requests" else {}
        vals.update(res.get(field) or {})
        for k, v in vals.items():
            try:
                out[k] = out.get(k, 0.0) + parse_quantity(v)
            except ValueError:
                pass
    return out


def pod_usage(pod: dict) -> dict[str, float]:
    """The quota keys one Pod uses: ``pods``, ``requests.<r>``/``<r>`` and ``limits.<r>``."""
    spec = pod.get("spec") or {}
    cs = spec.get("containers") or []
    out: dict[str, float] = {"pods": 1.0, "count/pods": 1.0}
    for k, v in _sum(cs, "requests").items():
        out[f"requests.{k}"] = v
        out[k] = v
    for k, v in _sum(cs, "limits").items():
        out[f"limits.{k}"] = v
    return out


def format_quantity(key: str, v: float) -> str:
    if key.endswith("cpu") and v != int(v):
        return f"{round(v * 1000)}m"
    for suffix, f in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if v >= f and v % f == 0 and "memory" in key:
            return f"{int(v // f)}{suffix}"
    return str(int(v)) if v == int(v) else str(v)


def _validate_quota(obj: dict, old: dict | None) -> list[FieldError]:
    errs = []
    for k, v in ((obj.get("spec") or {}).get("hard") or {}).items():
        try:
            if parse_quantity(v) < 0:
                raise ValueError
        except ValueError:
            errs.append(FieldError(f"spec.hard[{k}]", "FieldValueInvalid", "must be a valid, non-negative quantity", v))
    return errs


DEFINITIONS = [
    ResourceDefinition(
        group="", kind="ResourceQuota", plural="resourcequotas", singular="resourcequota", namespaced=True, short_names=["quota"],
        versions=[VersionDef("v1", schema=OPEN, status_subresource=True, printer_columns=[
            age_column(),
            PrinterColumn("Request", fn=lambda o: ", ".join(f"{k}: {(o.get('status') or {}).get('used', {}).get(k, '0')}/{v}"
                                                            for k, v in ((o.get("spec") or {}).get("hard") or {}).items())),
        ])],
        validator=_validate_quota, merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="", kind="LimitRange", plural="limitranges", singular="limitrange", namespaced=True, short_names=["limits"],
        versions=[VersionDef("v1", schema=OPEN, printer_columns=[age_column()])], merge_keys=META_MERGE_KEYS,
    ),
]
