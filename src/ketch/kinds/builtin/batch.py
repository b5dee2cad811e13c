"""batch/v1 Job: what Katib trials and many pipelines run as."""

from __future__ import annotations

from ketch.kinds.builtin._common import OPEN, age_column
from ketch.kinds.builtin.pod import POD_MERGE_KEYS, default_pod_spec, validate_pod_spec
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.meta import get_condition, new_uid, parse_time


def _default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    tmpl = spec.setdefault("template", {})
    tmpl.setdefault("metadata", {})
    default_pod_spec(tmpl.setdefault("spec", {}))
    tmpl["spec"].setdefault("restartPolicy", "Never")
    if not spec.get("selector"):
        uid = obj["metadata"].setdefault("uid", new_uid())
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": obj["metadata"]["name"],
            "controller-uid": uid,
            "job-name": obj["metadata"]["name"],
        }
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        tl = tmpl["metadata"].setdefault("labels", {})
        for k, v in labels.items():
            tl.setdefault(k, v)


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    tmpl = (spec.get("template") or {}).get("spec") or {}
    errs = validate_pod_spec(tmpl, "spec.template.spec")
    rp = tmpl.get("restartPolicy")
    if rp not in ("OnFailure", "Never"):
        errs.append(FieldError("spec.template.spec.restartPolicy", "FieldValueNotSupported", 'supported values: "OnFailure", "Never"', rp))
    for f in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or v < 0):
            errs.append(FieldError(f"spec.{f}", "FieldValueInvalid", "must be greater than or equal to 0", v))
    if spec.get("completionMode") not in ("NonIndexed", "Indexed"):
        errs.append(FieldError("spec.completionMode", "FieldValueNotSupported", 'supported values: "NonIndexed", "Indexed"', spec.get("completionMode")))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        errs.append(FieldError("spec.completions", "FieldValueRequired", "when completion mode is Indexed"))
    if old is not None:
        if (old.get("spec") or {}).get("template") != spec.get("template") and not (old.get("spec") or {}).get("suspend"):
            errs.append(FieldError("spec.template", "FieldValueInvalid", "field is immutable", "object"))
        if (old.get("spec") or {}).get("completions") != spec.get("completions"):
            errs.append(FieldError("spec.completions", "FieldValueInvalid", "field is immutable", spec.get("completions")))
    return errs


def _status(o: dict) -> str:
    for t in ("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet"):
        c = get_condition(o, t)
        if c and c.get("status") == "True":
            return {"FailureTarget": "Failed", "SuccessCriteriaMet": "Complete"}.get(t, t)
    return "Running"


def _duration(o: dict) -> str:
    st = o.get("status") or {}
    a, b = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    if not a:
        return ""
    if not b:
        import datetime as dt

        b = dt.datetime.now(dt.UTC)
    s = int((b - a).total_seconds())
    return f"{s}s" if s < 120 else f"{s // 60}m"


DEFINITIONS = [
    ResourceDefinition(
        group="batch",
        kind="Job",
        plural="jobs",
        singular="job",
        namespaced=True,
        categories=["all"],
        versions=[
            VersionDef(
                "v1",
                schema=OPEN,
                status_subresource=True,
                printer_columns=[
                    PrinterColumn("Status", fn=_status),
                    PrinterColumn("Completions", fn=lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/{(o.get('spec') or {}).get('completions', 1)}"),
                    PrinterColumn("Duration", fn=_duration),
                    age_column(),
                ],
            )
        ],
        merge_keys={**POD_MERGE_KEYS},
        defaulter=_default,
        validator=_validate,
    )
]
