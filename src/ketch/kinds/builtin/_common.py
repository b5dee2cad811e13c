"""Shared pieces for built-in kind definitions: the open schema and common printer columns."""

from __future__ import annotations

from ketch.kinds.definitions import PrinterColumn
from ketch.kinds.meta import human_age

OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def obj_schema(**props: dict) -> dict:
    """An object schema whose listed properties are typed and whose other fields are kept."""
    return {"type": "object", "properties": props, "x-kubernetes-preserve-unknown-fields": True}


def age_column() -> PrinterColumn:
    return PrinterColumn("Age", "date", fn=lambda o: human_age(o.get("metadata", {}).get("creationTimestamp")))


META_MERGE_KEYS = {"metadata.ownerReferences": "uid", "metadata.finalizers": "", "status.conditions": "type"}
