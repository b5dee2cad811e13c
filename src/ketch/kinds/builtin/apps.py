"""apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet and ControllerRevision, with Kubernetes'
defaults, the validation a user meets first (selector required and matching the template, restartPolicy
Always, immutable selectors), kubectl's columns, and the scale subresource where Kubernetes has one.

Their controllers live in ``ketch/controllers/`` (deployment.py, replicaset.py, statefulset.py,
daemonset.py).
"""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.builtin.pod import POD_MERGE_KEYS, default_pod_spec, validate_pod_spec
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.labels import selector_matches
from ketch.kinds.meta import selector_string

# Scale reads spec.replicas and status.replicas; the selector is the spec's, as a string.
SCALE = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".spec.selector"}
MERGE_KEYS = {**POD_MERGE_KEYS, "status.conditions": "type"}


def default_template(spec: dict) -> None:
    tmpl = spec.setdefault("template", {})
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        default_pod_spec(tmpl.setdefault("spec", {}))


def _st(o: dict, f: str) -> int:
    return int((o.get("status") or {}).get(f) or 0)


def _spec(o: dict, f: str, default: int = 1) -> int:
    v = (o.get("spec") or {}).get(f)
    return default if v is None else int(v)


def _containers(o: dict) -> list[dict]:
    return ((((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []


def wide_columns() -> list[PrinterColumn]:
    return [
        PrinterColumn("Containers", fn=lambda o: ",".join(c.get("name", "") for c in _containers(o)), priority=1),
        PrinterColumn("Images", fn=lambda o: ",".join(c.get("image", "") for c in _containers(o)), priority=1),
        PrinterColumn("Selector", fn=lambda o: selector_string((o.get("spec") or {}).get("selector")) or "<none>", priority=1),
    ]


def validate_workload(obj: dict, old: dict | None, restart_always: bool = True, claim_volumes: list[str] | None = None) -> list[FieldError]:
    """What every pod-template workload checks: a non-empty selector that selects the template's labels,
    a valid pod template, non-negative counts, and (apps/v1) a selector that never changes."""
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if not sel or not ((sel.get("matchLabels") or {}) or (sel.get("matchExpressions") or [])):
        errs.append(FieldError("spec.selector", "FieldValueRequired", ""))
    elif not selector_matches(sel, labels):
        errs.append(FieldError("spec.template.metadata.labels", "FieldValueInvalid", "`selector` does not match template `labels`", labels))
    pspec = tmpl.get("spec") or {}
    if claim_volumes and isinstance(pspec, dict):  # a StatefulSet's claims are volumes its Pods will have
        have = {(v or {}).get("name") for v in pspec.get("volumes") or []}
        pspec = {**pspec, "volumes": [*(pspec.get("volumes") or []), *({"name": n} for n in claim_volumes if n not in have)]}
    errs.extend(validate_pod_spec(pspec, "spec.template.spec"))
    rp = (tmpl.get("spec") or {}).get("restartPolicy")
    if restart_always and rp != "Always":
        errs.append(FieldError("spec.template.spec.restartPolicy", "FieldValueNotSupported", 'supported values: "Always"', rp))
    for f in ("replicas", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            errs.append(FieldError(f"spec.{f}", "FieldValueInvalid", "must be greater than or equal to 0", v))
    if old is not None and (old.get("spec") or {}).get("selector") != sel:
        errs.append(FieldError("spec.selector", "FieldValueInvalid", "field is immutable", sel))
    return errs


def _int_or_percent(v: object, path: str) -> list[FieldError]:
    if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return []
    if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit():
        return []
    return [FieldError(path, "FieldValueInvalid", "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')" if isinstance(v, str) else "must be greater than or equal to 0", v)]


# -- Deployment -----------------------------------------------------------------------------------------------


def _deploy_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    st = spec.setdefault("strategy", {})
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = st.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    default_template(spec)


def _deploy_validate(obj: dict, old: dict | None) -> list[FieldError]:
    errs = validate_workload(obj, old)
    st = (obj.get("spec") or {}).get("strategy") or {}
    if st.get("type") not in ("RollingUpdate", "Recreate"):
        errs.append(FieldError("spec.strategy.type", "FieldValueNotSupported", 'supported values: "Recreate", "RollingUpdate"', st.get("type")))
    if st.get("type") == "Recreate" and st.get("rollingUpdate"):
        errs.append(FieldError("spec.strategy.rollingUpdate", "FieldValueForbidden", "may not be specified when strategy `type` is 'Recreate'"))
    ru = st.get("rollingUpdate") or {}
    errs += _int_or_percent(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
    errs += _int_or_percent(ru.get("maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable")
    if st.get("type") == "RollingUpdate" and ru.get("maxSurge") in (0, "0%") and ru.get("maxUnavailable") in (0, "0%"):
        errs.append(FieldError("spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid", "may not be 0 when `maxSurge` is 0", ru.get("maxUnavailable")))
    return errs


# -- ReplicaSet -----------------------------------------------------------------------------------------------


def _rs_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    default_template(spec)


# -- StatefulSet ----------------------------------------------------------------------------------------------


def _sts_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    pr = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    pr.setdefault("whenDeleted", "Retain")
    pr.setdefault("whenScaled", "Retain")
    for t in spec.get("volumeClaimTemplates") or []:
        if isinstance(t, dict):
            t.setdefault("apiVersion", "v1")
            t.setdefault("kind", "PersistentVolumeClaim")
            ts = t.setdefault("spec", {})
            ts.setdefault("accessModes", ["ReadWriteOnce"])
            ts.setdefault("volumeMode", "Filesystem")
            t.setdefault("status", {"phase": "Pending"})
    default_template(spec)


def _sts_validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    claims = [((t or {}).get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or []]
    errs = validate_workload(obj, old, claim_volumes=[n for n in claims if n])
    if spec.get("podManagementPolicy") not in ("OrderedReady", "Parallel"):
        errs.append(FieldError("spec.podManagementPolicy", "FieldValueNotSupported", 'supported values: "OrderedReady", "Parallel"', spec.get("podManagementPolicy")))
    us = spec.get("updateStrategy") or {}
    if us.get("type") not in ("RollingUpdate", "OnDelete"):
        errs.append(FieldError("spec.updateStrategy.type", "FieldValueNotSupported", 'supported values: "OnDelete", "RollingUpdate"', us.get("type")))
    part = (us.get("rollingUpdate") or {}).get("partition")
    if part is not None and (not isinstance(part, int) or part < 0):
        errs.append(FieldError("spec.updateStrategy.rollingUpdate.partition", "FieldValueInvalid", "must be greater than or equal to 0", part))
    names = set()
    for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
        n = ((t or {}).get("metadata") or {}).get("name")
        if not n:
            errs.append(FieldError(f"spec.volumeClaimTemplates[{i}].metadata.name", "FieldValueRequired", ""))
        names.add(n)
    if old is not None:
        # Only these may change on a StatefulSet, as in Kubernetes.
        mutable = {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "revisionHistoryLimit", "serviceName"}
        a = {k: v for k, v in spec.items() if k not in mutable}
        b = {k: v for k, v in (old.get("spec") or {}).items() if k not in mutable}
        if a != b and not any(e.path == "spec.selector" for e in errs):
            errs.append(FieldError("spec", "FieldValueForbidden", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errs


# -- DaemonSet ------------------------------------------------------------------------------------------------


def _ds_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = us.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    default_template(spec)


def _ds_validate(obj: dict, old: dict | None) -> list[FieldError]:
    errs = validate_workload(obj, old)
    us = ((obj.get("spec") or {}).get("updateStrategy")) or {}
    if us.get("type") not in ("RollingUpdate", "OnDelete"):
        errs.append(FieldError("spec.updateStrategy.type", "FieldValueNotSupported", 'supported values: "OnDelete", "RollingUpdate"', us.get("type")))
    ru = us.get("rollingUpdate") or {}
    errs += _int_or_percent(ru.get("maxSurge"), "spec.updateStrategy.rollingUpdate.maxSurge")
    errs += _int_or_percent(ru.get("maxUnavailable"), "spec.updateStrategy.rollingUpdate.maxUnavailable")
    return errs


def _v1(cols: list[PrinterColumn], scale: bool = True, status: bool = True) -> list[VersionDef]:
    return [VersionDef("v1", schema=OPEN, printer_columns=cols, status_subresource=status, scale_subresource=SCALE if scale else None)]


DEFINITIONS = [
    ResourceDefinition(
        group="apps",
        kind="Deployment",
        plural="deployments",
        singular="deployment",
        namespaced=True,
        short_names=["deploy"],
        categories=["all"],
        versions=_v1([
            PrinterColumn("Ready", fn=lambda o: f"{_st(o, 'readyReplicas')}/{_spec(o, 'replicas')}"),
            PrinterColumn("Up-to-date", "integer", fn=lambda o: _st(o, "updatedReplicas")),
            PrinterColumn("Available", "integer", fn=lambda o: _st(o, "availableReplicas")),
            age_column(),
            *wide_columns(),
        ]),
        merge_keys=MERGE_KEYS,
        defaulter=_deploy_default,
        validator=_deploy_validate,
    ),
    ResourceDefinition(
        group="apps",
        kind="ReplicaSet",
        plural="replicasets",
        singular="replicaset",
        namespaced=True,
        short_names=["rs"],
        categories=["all"],
        versions=_v1([
            PrinterColumn("Desired", "integer", fn=lambda o: _spec(o, "replicas")),
            PrinterColumn("Current", "integer", fn=lambda o: _st(o, "replicas")),
            PrinterColumn("Ready", "integer", fn=lambda o: _st(o, "readyReplicas")),
            age_column(),
            *wide_columns(),
        ]),
        merge_keys=MERGE_KEYS,
        defaulter=_rs_default,
        validator=lambda obj, old: validate_workload(obj, old),
    ),
    ResourceDefinition(
        group="apps",
        kind="StatefulSet",
        plural="statefulsets",
        singular="statefulset",
        namespaced=True,
        short_names=["sts"],
        categories=["all"],
        versions=_v1([
            PrinterColumn("Ready", fn=lambda o: f"{_st(o, 'readyReplicas')}/{_spec(o, 'replicas')}"),
            age_column(),
            *wide_columns()[:2],
        ]),
        merge_keys=MERGE_KEYS,
        defaulter=_sts_default,
        validator=_sts_validate,
    ),
    ResourceDefinition(
        group="apps",
        kind="DaemonSet",
        plural="daemonsets",
        singular="daemonset",
        namespaced=True,
        short_names=["ds"],
        categories=["all"],
        versions=_v1([
            PrinterColumn("Desired", "integer", fn=lambda o: _st(o, "desiredNumberScheduled")),
            PrinterColumn("Current", "integer", fn=lambda o: _st(o, "currentNumberScheduled")),
            PrinterColumn("Ready", "integer", fn=lambda o: _st(o, "numberReady")),
            PrinterColumn("Up-to-date", "integer", fn=lambda o: _st(o, "updatedNumberScheduled")),
            PrinterColumn("Available", "integer", fn=lambda o: _st(o, "numberAvailable")),
            PrinterColumn("Node Selector", fn=lambda o: ",".join(f"{k}={v}" for k, v in (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector", {}).items()) or "<none>"),
            age_column(),
            *wide_columns(),
        ], scale=False),
        merge_keys=MERGE_KEYS,
        defaulter=_ds_default,
        validator=_ds_validate,
    ),
    ResourceDefinition(
        group="apps",
        kind="ControllerRevision",
        plural="controllerrevisions",
        singular="controllerrevision",
        namespaced=True,
        versions=_v1([
            PrinterColumn("Controller", fn=lambda o: next((f"{r.get('kind', '').lower()}.apps/{r.get('name')}" for r in o["metadata"].get("ownerReferences") or [] if r.get("controller")), "<none>")),
            PrinterColumn("Revision", "integer", fn=lambda o: o.get("revision", 0)),
            age_column(),
        ], scale=False, status=False),
        merge_keys=META_MERGE_KEYS,
        immutable_fields=["data"],
    ),
]
