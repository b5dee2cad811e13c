"""events.k8s.io/v1 Event: the structured Event (regarding, note, reportingController, series) that
client-go's new recorder and ``kubectl events`` speak.

Kubernetes serves one stored Event through both core/v1 and events.k8s.io/v1, converting fields
(involvedObject <-> regarding, message <-> note, ...). ketch stores events.k8s.io Events as their own
kind: what is written through one group is read back through that group (documented in docs/status.md).
"""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.meta import human_age


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    errs = []
    if not obj.get("eventTime"):
        errs.append(FieldError("eventTime", "FieldValueRequired", ""))
    if obj.get("type") not in ("Normal", "Warning"):
        errs.append(FieldError("type", "FieldValueNotSupported", 'supported values: "Normal", "Warning"', obj.get("type")))
    for f in ("reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(f):
            errs.append(FieldError(f, "FieldValueRequired", ""))
    if len(obj.get("note") or "") > 1024:
        errs.append(FieldError("note", "FieldValueTooLong", "can have at most 1024 characters", "<note>"))
    return errs


DEFINITIONS = [
    ResourceDefinition(
        group="events.k8s.io",
        kind="Event",
        plural="events",
        singular="event",
        namespaced=True,
        versions=[VersionDef("v1", schema=OPEN, printer_columns=[
            PrinterColumn("Last Seen", fn=lambda o: human_age(((o.get("series") or {}).get("lastObservedTime")) or o.get("eventTime") or o["metadata"].get("creationTimestamp"))),
            PrinterColumn("Type", fn=lambda o: o.get("type", "")),
            PrinterColumn("Reason", fn=lambda o: o.get("reason", "")),
            PrinterColumn("Object", fn=lambda o: f"{((o.get('regarding') or {}).get('kind') or '').lower()}/{(o.get('regarding') or {}).get('name', '')}"),
            PrinterColumn("Message", fn=lambda o: o.get("note", "")),
        ])],
        merge_keys=META_MERGE_KEYS,
        validator=_validate,
    )
]
