"""apiextensions.k8s.io/v1 CustomResourceDefinition: applying one registers a new kind."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import (
    FieldError,
    PrinterColumn,
    ResourceDefinition,
    VersionDef,
)


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    if not group:
        errs.append(FieldError("spec.group", "FieldValueRequired", ""))
    elif "." not in group:
        errs.append(FieldError("spec.group", "FieldValueInvalid", "should be a domain with at least one dot", group))
    for f in ("plural", "kind"):
        if not names.get(f):
            errs.append(FieldError(f"spec.names.{f}", "FieldValueRequired", ""))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(FieldError("spec.scope", "FieldValueNotSupported", 'supported values: "Cluster", "Namespaced"', spec.get("scope")))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(FieldError("spec.versions", "FieldValueInvalid", "must have exactly one version marked as storage version", "null"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(FieldError("spec.versions", "FieldValueInvalid", "must have exactly one version marked as storage version", "array"))
    for i, v in enumerate(versions):
        if not v.get("name"):
            errs.append(FieldError(f"spec.versions[{i}].name", "FieldValueRequired", ""))
        sch = ((v.get("schema") or {}).get("openAPIV3Schema"))
        if sch is None:
            errs.append(FieldError(f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueRequired", "schemas are required"))
    if group and names.get("plural") and obj["metadata"]["name"] != f"{names['plural']}.{group}":
        errs.append(
            FieldError("metadata.name", "FieldValueInvalid", "must be spec.names.plural+\".\"+spec.group", obj["metadata"]["name"])
        )
    if old is not None:
        if (old.get("spec") or {}).get("scope") != spec.get("scope"):
            errs.append(FieldError("spec.scope", "FieldValueInvalid", "field is immutable", spec.get("scope")))
    return errs


def _default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind") and not names.get("listKind"):
        names["listKind"] = names["kind"] + "List"
    if names.get("kind") and not names.get("singular"):
        names["singular"] = names["kind"].lower()
    for v in spec.get("versions") or []:
        v.setdefault("served", True)
        v.setdefault("storage", len(spec.get("versions") or []) == 1)
    spec.setdefault("conversion", {"strategy": "None"})


def to_resource_definition(crd: dict) -> ResourceDefinition:
    """Turn a CRD object into the definition the server uses to serve its kind."""
    spec = crd["spec"]
    names = spec["names"]
    versions = []
    for v in spec.get("versions") or []:
        sub = v.get("subresources") or {}
        cols = [
            PrinterColumn(
                name=c["name"],
                type=c.get("type", "string"),
                json_path=c.get("jsonPath"),
                description=c.get("description", ""),
                priority=c.get("priority", 0),
                format=c.get("format", ""),
            )
            for c in v.get("additionalPrinterColumns") or []
        ]
        if not v.get("additionalPrinterColumns"):
            cols = [age_column()]
        versions.append(
            VersionDef(
                name=v["name"],
                served=v.get("served", True),
                storage=v.get("storage", False),
                schema=(v.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=cols,
                status_subresource="status" in sub,
                scale_subresource=sub.get("scale"),
            )
        )
    return ResourceDefinition(
        group=spec["group"],
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        versions=versions,
        short_names=names.get("shortNames") or [],
        categories=names.get("categories") or [],
        list_kind=names.get("listKind") or names["kind"] + "List",
        builtin=False,
        merge_keys={},
    )


def _established(o: dict) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Established":
            return c.get("status", "")
    return ""


DEFINITIONS = [
    ResourceDefinition(
        group="apiextensions.k8s.io",
        kind="CustomResourceDefinition",
        plural="customresourcedefinitions",
        singular="customresourcedefinition",
        namespaced=False,
        short_names=["crd", "crds"],
        categories=["api-extensions"],
        versions=[
            VersionDef(
                "v1",
                schema=OPEN,
                status_subresource=True,
                printer_columns=[
                    PrinterColumn("Created At", "date", fn=lambda o: o["metadata"].get("creationTimestamp", "")),
                    PrinterColumn("Established", fn=_established, priority=1),
                ],
            )
        ],
        merge_keys=META_MERGE_KEYS,
        defaulter=_default,
        validator=_validate,
    )
]
