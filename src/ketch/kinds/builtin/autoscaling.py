"""autoscaling/v2 HorizontalPodAutoscaler: scale anything with a scale subresource on CPU/memory
utilisation (metrics.k8s.io, from the kubelet's samples), with ``behavior`` (stabilization windows and
rate policies). Its controller is ``ketch/controllers/horizontal_pod_autoscaler.py``."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef

METRIC_TYPES = ("Resource", "ContainerResource", "Pods", "Object", "External")


def _default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):  # as the v1 API's default: 80% of requested CPU
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    ref = spec.get("scaleTargetRef") or {}
    for f in ("kind", "name"):
        if not ref.get(f):
            errs.append(FieldError(f"spec.scaleTargetRef.{f}", "FieldValueRequired", ""))
    mn, mx = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if not isinstance(mx, int) or mx < 1:
        errs.append(FieldError("spec.maxReplicas", "FieldValueInvalid", "must be greater than or equal to 1", mx))
    if not isinstance(mn, int) or mn < 1:
        errs.append(FieldError("spec.minReplicas", "FieldValueInvalid", "must be greater than or equal to 1", mn))
    elif isinstance(mx, int) and mn > mx:
        errs.append(FieldError("spec.maxReplicas", "FieldValueInvalid", "must be greater than or equal to `minReplicas`", mx))
    for i, m in enumerate(spec.get("metrics") or []):
        t = (m or {}).get("type")
        if t not in METRIC_TYPES:
            errs.append(FieldError(f"spec.metrics[{i}].type", "FieldValueNotSupported", ", ".join(f'"{x}"' for x in METRIC_TYPES), t))
            continue
        if t in ("Resource", "ContainerResource"):
            src = m.get("resource" if t == "Resource" else "containerResource") or {}
            tgt = src.get("target") or {}
            if not src.get("name"):
                errs.append(FieldError(f"spec.metrics[{i}].{'resource' if t == 'Resource' else 'containerResource'}.name", "FieldValueRequired", ""))
            if tgt.get("type") not in ("Utilization", "AverageValue", "Value"):
                errs.append(FieldError(f"spec.metrics[{i}].resource.target.type", "FieldValueNotSupported", '"Utilization", "Value", "AverageValue"', tgt.get("type")))
            elif tgt["type"] == "Utilization" and not (isinstance(tgt.get("averageUtilization"), int) and tgt["averageUtilization"] > 0):
                errs.append(FieldError(f"spec.metrics[{i}].resource.target.averageUtilization", "FieldValueInvalid", "must be greater than 0", tgt.get("averageUtilization")))
    for d in ("scaleUp", "scaleDown"):
        rules = ((spec.get("behavior") or {}).get(d)) or {}
        w = rules.get("stabilizationWindowSeconds")
        if w is not None and (not isinstance(w, int) or not 0 <= w <= 3600):
            errs.append(FieldError(f"spec.behavior.{d}.stabilizationWindowSeconds", "FieldValueInvalid", "must be between 0 and 3600", w))
        if rules.get("selectPolicy") not in (None, "Max", "Min", "Disabled"):
            errs.append(FieldError(f"spec.behavior.{d}.selectPolicy", "FieldValueNotSupported", '"Disabled", "Max", "Min"', rules.get("selectPolicy")))
        for j, p in enumerate(rules.get("policies") or []):
            if p.get("type") not in ("Pods", "Percent"):
                errs.append(FieldError(f"spec.behavior.{d}.policies[{j}].type", "FieldValueNotSupported", '"Percent", "Pods"', p.get("type")))
            if not isinstance(p.get("value"), int) or p["value"] <= 0:
                errs.append(FieldError(f"spec.behavior.{d}.policies[{j}].value", "FieldValueInvalid", "must be greater than zero", p.get("value")))
            if not isinstance(p.get("periodSeconds"), int) or not 0 < p["periodSeconds"] <= 1800:
                errs.append(FieldError(f"spec.behavior.{d}.policies[{j}].periodSeconds", "FieldValueInvalid", "must be greater than zero and less than or equal to 1800", p.get("periodSeconds")))
    return errs


def _targets(o: dict) -> str:
    cur = {(m.get("resource") or {}).get("name"): m for m in (o.get("status") or {}).get("currentMetrics") or [] if m.get("type") == "Resource"}
    out = []
    for m in (o.get("spec") or {}).get("metrics") or []:
        if m.get("type") != "Resource":
            out.append(f"<{m.get('type', '?').lower()}>")
            continue
        r = m.get("resource") or {}
        tgt = r.get("target") or {}
        now = ((cur.get(r.get("name")) or {}).get("resource") or {}).get("current") or {}
        if tgt.get("type") == "Utilization":
            c = f"{now['averageUtilization']}%" if "averageUtilization" in now else "<unknown>"
            out.append(f"{r.get('name')}: {c}/{tgt.get('averageUtilization')}%")
        else:
            out.append(f"{r.get('name')}: {now.get('averageValue', '<unknown>')}/{tgt.get('averageValue') or tgt.get('value')}")
    return ", ".join(out) or "<none>"


DEFINITIONS = [
    ResourceDefinition(
        group="autoscaling",
        kind="HorizontalPodAutoscaler",
        plural="horizontalpodautoscalers",
        singular="horizontalpodautoscaler",
        namespaced=True,
        short_names=["hpa"],
        categories=["all"],
        versions=[VersionDef("v2", schema=OPEN, status_subresource=True, printer_columns=[
            PrinterColumn("Reference", fn=lambda o: f"{((o.get('spec') or {}).get('scaleTargetRef') or {}).get('kind', '')}/{((o.get('spec') or {}).get('scaleTargetRef') or {}).get('name', '')}"),
            PrinterColumn("Targets", fn=_targets),
            PrinterColumn("MinPods", "integer", fn=lambda o: (o.get("spec") or {}).get("minReplicas", 1)),
            PrinterColumn("MaxPods", "integer", fn=lambda o: (o.get("spec") or {}).get("maxReplicas", 0)),
            PrinterColumn("Replicas", "integer", fn=lambda o: (o.get("status") or {}).get("currentReplicas", 0)),
            age_column(),
        ])],
        merge_keys={**META_MERGE_KEYS, "status.conditions": "type"},
        defaulter=_default,
        validator=_validate,
    )
]
