"""node.k8s.io/v1 RuntimeClass: which container runtime runs a Pod (``spec.runtimeClassName``).

A RuntimeClass names a ``handler``; ketch's kubelet knows the handlers ``podman``, ``docker`` and ``oci``
(whichever of the two is installed, podman first) and runs the Pods that select one as OCI containers
(kubelet/containers.py). Pods without a runtimeClassName stay processes (docs/kubelet.md).
"""

from __future__ import annotations

import re

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    h = obj.get("handler")
    errs = []
    if not h:
        errs.append(FieldError("handler", "FieldValueRequired", "Required value"))
    elif not isinstance(h, str) or len(h) > 63 or not _DNS_LABEL.match(h):
        errs.append(FieldError("handler", "FieldValueInvalid", "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'", h))
    if old is not None and old.get("handler") != h:
        errs.append(FieldError("handler", "FieldValueInvalid", "field is immutable", h))
    for k, v in ((obj.get("overhead") or {}).get("podFixed") or {}).items():
        if not isinstance(v, (str, int, float)):
            errs.append(FieldError(f"overhead.podFixed[{k}]", "FieldValueInvalid", "must be a quantity", v))
    return errs


DEFINITIONS = [
    ResourceDefinition(
        group="node.k8s.io",
        kind="RuntimeClass",
        plural="runtimeclasses",
        singular="runtimeclass",
        namespaced=False,
        versions=[
            VersionDef(
                "v1",
                schema=OPEN,
                printer_columns=[PrinterColumn("Handler", fn=lambda o: o.get("handler", "")), age_column()],
            )
        ],
        merge_keys={**META_MERGE_KEYS},
        validator=_validate,
    )
]
