"""Table responses (meta.k8s.io/v1 Table): what ``kubectl get`` prints, computed on the server."""

from __future__ import annotations

from typing import Any

from ketch.kinds.definitions import PrinterColumn, ResourceDefinition
from ketch.kinds.jsonpath import first
from ketch.kinds.meta import human_age


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _cell(col: PrinterColumn, obj: dict) -> Any:
    if col.fn is not None:
        try:
            v = col.fn(obj)
        except Exception:
            v = None
    else:
        v = first(obj, col.json_path or "")
        if col.type == "date" and isinstance(v, str):
            v = human_age(v)
    if v is None:
        return None
    if isinstance(v, dict | list):
        import orjson

        return orjson.dumps(v).decode()
    return v


def to_table(rd: ResourceDefinition, version: str, objs: list[dict], list_meta: dict, include: str = "Metadata") -> dict:
    vdef = rd.version(version) or rd.versions[0]
    cols = [PrinterColumn("Name", "string", fn=lambda o: o["metadata"]["name"], format="name",
                          description="Name must be unique within a namespace.")] + list(vdef.printer_columns)
    rows = []
    for o in objs:
        row: dict[str, Any] = {"cells": [_cell(c, o) for c in cols]}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in list_meta.items() if k in ("resourceVersion", "continue", "remainingItemCount")},
        "columnDefinitions": [
            {"name": c.name, "type": "string" if c.type == "date" else c.type, "format": c.format, "description": c.description or c.name, "priority": c.priority}
            for c in cols
        ],
        "rows": rows,
    }
