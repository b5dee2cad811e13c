"""metrics.k8s.io/v1beta1 PodMetrics and NodeMetrics: read-only, never stored. The kubelet samples its
containers' process trees and serves these (``ketch/kubelet/metrics.py``); they are registered here so
discovery and OpenAPI list the group, which is how ``kubectl top`` finds it."""

from __future__ import annotations

from ketch.kinds.builtin._common import OPEN
from ketch.kinds.definitions import PrinterColumn, ResourceDefinition, VersionDef

READ_ONLY = ["get", "list"]

DEFINITIONS = [
    ResourceDefinition(
        group="metrics.k8s.io", kind="PodMetrics", plural="pods", singular="", namespaced=True, verbs=READ_ONLY,
        versions=[VersionDef("v1beta1", schema=OPEN, printer_columns=[PrinterColumn("Window", fn=lambda o: o.get("window", ""))])],
    ),
    ResourceDefinition(
        group="metrics.k8s.io", kind="NodeMetrics", plural="nodes", singular="", namespaced=False, verbs=READ_ONLY,
        versions=[VersionDef("v1beta1", schema=OPEN, printer_columns=[PrinterColumn("Window", fn=lambda o: o.get("window", ""))])],
    ),
]
