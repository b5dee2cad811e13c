"""core/v1 ReplicationController: the ReplicaSet's predecessor, with an equality-only selector (a plain map)
that defaults to the template's labels. Run by the ReplicaSet controller's engine
(``ketch/controllers/replicaset.py``)."""

from __future__ import annotations

from ketch.kinds.builtin._common import age_column
from ketch.kinds.builtin.apps import MERGE_KEYS, default_template, validate_workload
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef

SCALE = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".spec.selector"}


def _default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    default_template(spec)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not spec.get("selector") and labels:
        spec["selector"] = dict(labels)
    md = obj.setdefault("metadata", {})
    if not md.get("labels") and labels:
        md["labels"] = dict(labels)


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if sel is not None and not isinstance(sel, dict):
        return [FieldError("spec.selector", "FieldValueInvalid", "must be a map of labels", sel)]
    as_label_selector = {**obj, "spec": {**spec, "selector": {"matchLabels": sel} if sel else None}}
    old_sel = {**old, "spec": {**(old.get("spec") or {}), "selector": {"matchLabels": sel}}} if old is not None else None
    return validate_workload(as_label_selector, old_sel)  # the selector of a ReplicationController may change


DEFINITIONS = [
    ResourceDefinition(
        group="",
        kind="ReplicationController",
        plural="replicationcontrollers",
        singular="replicationcontroller",
        namespaced=True,
        short_names=["rc"],
        categories=["all"],
        versions=[VersionDef(
            "v1", schema={"type": "object", "x-kubernetes-preserve-unknown-fields": True}, status_subresource=True, scale_subresource=SCALE,
            printer_columns=[
                PrinterColumn("Desired", "integer", fn=lambda o: int((o.get("spec") or {}).get("replicas", 1))),
                PrinterColumn("Current", "integer", fn=lambda o: int((o.get("status") or {}).get("replicas") or 0)),
                PrinterColumn("Ready", "integer", fn=lambda o: int((o.get("status") or {}).get("readyReplicas") or 0)),
                age_column(),
            ],
        )],
        merge_keys=MERGE_KEYS,
        defaulter=_default,
        validator=_validate,
    )
]
