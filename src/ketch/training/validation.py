"""Admission checks for the v1 job kinds: what the training operator's validating webhook refuses.

Registered with ``Api.add_validator`` so a bad job is refused at creation with a message naming
the field, instead of being stored and failing later.
"""

from __future__ import annotations

from ketch.kinds.definitions import FieldError
from ketch.training.frameworks.base import Framework

RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")


def validator_for(fw: Framework):  # noqa: ANN201 - returns an admission validator
    def validate(obj: dict, old: dict | None) -> list[FieldError]:
        spec = obj.get("spec") or {}
        base = f"spec.{fw.specs_field}"
        raw = spec.get(fw.specs_field)
        errs: list[FieldError] = []
        strategy = ((obj.get("metadata") or {}).get("annotations") or {}).get("ketch.dev/placement-strategy")
        if strategy is not None and str(strategy).strip().upper() not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            errs.append(FieldError("metadata.annotations[ketch.dev/placement-strategy]", "FieldValueNotSupported",
                                   'supported values: "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"', strategy))
        if not isinstance(raw, dict) or not raw:
            return [FieldError(base, "FieldValueRequired", f"{fw.kind} needs at least one replica spec ({', '.join(fw.replica_types)})")]
        seen: dict[str, str] = {}
        for key, rs in raw.items():
            p = f"{base}.{key}"
            canon = fw.canonical(key)
            if canon is None:
                errs.append(FieldError(base, "FieldValueNotSupported", f"unsupported replica type {key!r} for {fw.kind}; supported: {', '.join(fw.replica_types)}", key))
                continue
            if canon in seen:
                errs.append(FieldError(p, "FieldValueDuplicate", f"replica type {canon} is given twice ({seen[canon]!r} and {key!r})", key))
                continue
            seen[canon] = key
            if not isinstance(rs, dict):
                errs.append(FieldError(p, "FieldValueInvalid", "must be an object", str(rs)))
                continue
            n = rs.get("replicas", 1)
            if canon in fw.extra.get("single", ()) and n != 1:
                errs.append(FieldError(f"{p}.replicas", "FieldValueInvalid", f"{fw.kind} {canon} replicas must be 1", n))
            rp = rs.get("restartPolicy")
            if rp is not None and rp not in RESTART_POLICIES:
                errs.append(FieldError(f"{p}.restartPolicy", "FieldValueNotSupported", 'supported values: "Always", "OnFailure", "Never", "ExitCode"', rp))
            tspec = ((rs.get("template") or {}).get("spec")) or {}
            containers = tspec.get("containers") or []
            if not containers:
                errs.append(FieldError(f"{p}.template.spec.containers", "FieldValueRequired", "a replica needs at least one container"))
                continue
            if fw.container and not any(isinstance(c, dict) and c.get("name") == fw.container for c in containers):
                errs.append(FieldError(f"{p}.template.spec.containers", "FieldValueRequired", f"there is no container named {fw.container!r} in {canon}: the operator wires that one"))
            for i, c in enumerate(containers):
                if isinstance(c, dict) and not c.get("image"):
                    errs.append(FieldError(f"{p}.template.spec.containers[{i}].image", "FieldValueRequired", "image is required (ketch runs the command in its Python environment)"))
            tp = tspec.get("restartPolicy")
            if rp is not None and tp is not None and rp != "ExitCode" and tp != rp:
                errs.append(FieldError(f"{p}.template.spec.restartPolicy", "FieldValueInvalid", f"conflicts with {p}.restartPolicy ({rp}); set one of them", tp))
        for req in fw.extra.get("required", ()):
            if req not in seen and not errs:
                errs.append(FieldError(f"{base}.{req}", "FieldValueRequired", f"{fw.kind} requires a {req} replica"))
        errs.extend(fw.validate(spec))
        return errs

    return validate
