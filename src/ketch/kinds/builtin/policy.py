"""policy/v1 PodDisruptionBudget: how many of a set of Pods may be down by choice. Its status
(expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed) is kept by the disruption controller
(``ketch/controllers/disruption.py``) and read by the ``pods/eviction`` subresource."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef


def _int_or_pct(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 0
    return isinstance(v, str) and v.endswith("%") and v[:-1].isdigit() and int(v[:-1]) <= 100


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = []
    if "minAvailable" in spec and "maxUnavailable" in spec:
        errs.append(FieldError("spec", "FieldValueInvalid", "minAvailable and maxUnavailable cannot be both set", "object"))
    for f in ("minAvailable", "maxUnavailable"):
        if f in spec and not _int_or_pct(spec[f]):
            errs.append(FieldError(f"spec.{f}", "FieldValueInvalid", "must be a non-negative integer or a percentage between 0% and 100%", spec[f]))
    pol = spec.get("unhealthyPodEvictionPolicy")
    if pol is not None and pol not in ("IfHealthyBudget", "AlwaysAllow"):
        errs.append(FieldError("spec.unhealthyPodEvictionPolicy", "FieldValueNotSupported", 'supported values: "AlwaysAllow", "IfHealthyBudget"', pol))
    return errs


def _initial(obj: dict) -> dict:
    return {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0, "observedGeneration": 0}


DEFINITIONS = [
    ResourceDefinition(
        group="policy",
        kind="PodDisruptionBudget",
        plural="poddisruptionbudgets",
        singular="poddisruptionbudget",
        namespaced=True,
        short_names=["pdb"],
        versions=[VersionDef("v1", schema=OPEN, status_subresource=True, printer_columns=[
            PrinterColumn("Min Available", fn=lambda o: str((o.get("spec") or {}).get("minAvailable", "N/A"))),
            PrinterColumn("Max Unavailable", fn=lambda o: str((o.get("spec") or {}).get("maxUnavailable", "N/A"))),
            PrinterColumn("Allowed Disruptions", "integer", fn=lambda o: int((o.get("status") or {}).get("disruptionsAllowed") or 0)),
            age_column(),
        ])],
        merge_keys={**META_MERGE_KEYS, "status.conditions": "type"},
        validator=_validate,
        initial_status=_initial,
    )
]
