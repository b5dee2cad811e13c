"""apiregistration.k8s.io/v1 APIService: the registration of an API group version. ketch serves every
group itself (no aggregated API servers), so each served group version is listed as a local APIService
(``spec.service`` unset, Available), as kube-apiserver lists its own; user-created APIServices are stored
but nothing is proxied to them (their Available condition says so)."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.meta import validate_dns_subdomain


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    name = obj["metadata"].get("name", "")
    errs = []
    if not spec.get("version"):
        errs.append(FieldError("spec.version", "FieldValueRequired", ""))
    want = f"{spec.get('version')}.{spec.get('group')}" if spec.get("group") else f"{spec.get('version')}."
    if spec.get("version") and name != want:
        errs.append(FieldError("metadata.name", "FieldValueInvalid", f'must be spec.version+"."+spec.group: "{want}"', name))
    for f in ("groupPriorityMinimum", "versionPriority"):
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or v <= 0):
            errs.append(FieldError(f"spec.{f}", "FieldValueInvalid", "must be positive and less than 1000000" if f == "versionPriority" else "must be positive and less than 20000", v))
    return errs


def _available(o: dict) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return c.get("status", "") + (f" ({c['reason']})" if c.get("status") != "True" and c.get("reason") else "")
    return "Unknown"


DEFINITIONS = [
    ResourceDefinition(
        group="apiregistration.k8s.io", kind="APIService", plural="apiservices", singular="apiservice", namespaced=False,
        versions=[VersionDef("v1", schema=OPEN, status_subresource=True, printer_columns=[
            PrinterColumn("Service", fn=lambda o: "Local" if not (o.get("spec") or {}).get("service") else f"{o['spec']['service'].get('namespace')}/{o['spec']['service'].get('name')}"),
            PrinterColumn("Available", fn=_available),
            age_column(),
        ])],
        merge_keys={**META_MERGE_KEYS, "status.conditions": "type"},
        validator=_validate,
        name_validator=lambda n: validate_dns_subdomain(n.removesuffix(".")),  # "v1." names the core group
        initial_status=lambda obj: {"conditions": [{"type": "Available", "status": "False", "reason": "ServiceNotFound" if (obj.get("spec") or {}).get("service") else "Local", "message": "ketch serves no aggregated API servers"}]},
    )
]
