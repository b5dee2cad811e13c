"""coordination.k8s.io/v1 Lease: what leader election and node heartbeats write (client-go's and the
kubernetes client's leader election lock on it)."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = []
    for f in ("leaseDurationSeconds", "leaseTransitions"):
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or v < (1 if f == "leaseDurationSeconds" else 0)):
            errs.append(FieldError(f"spec.{f}", "FieldValueInvalid", f"must be greater than {'0' if f == 'leaseDurationSeconds' else 'or equal to 0'}", v))
    return errs


DEFINITIONS = [
    ResourceDefinition(
        group="coordination.k8s.io",
        kind="Lease",
        plural="leases",
        singular="lease",
        namespaced=True,
        versions=[VersionDef("v1", schema=OPEN, printer_columns=[
            PrinterColumn("Holder", fn=lambda o: (o.get("spec") or {}).get("holderIdentity", "")),
            age_column(),
        ])],
        merge_keys=META_MERGE_KEYS,
        validator=_validate,
    )
]
