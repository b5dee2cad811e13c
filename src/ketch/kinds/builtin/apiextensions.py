"""apiextensions.k8s.io/v1 CustomResourceDefinition: applying one registers a new kind."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import (
    FieldError,
    PrinterColumn,
    ResourceDefinition,
    VersionDef,
)
from ketch.kinds.schema_rules import schema_errors


def _shape_errors(spec: object) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError("spec", "FieldValueTypeInvalid", 'spec in body must be of type object', type(spec).__name__)]
    errs = []
    for k, want in (("group", str), ("scope", str), ("names", dict), ("versions", list)):
        if spec.get(k) is not None and not isinstance(spec[k], want):
            errs.append(FieldError(f"spec.{k}", "FieldValueTypeInvalid", f"spec.{k} in body must be of type {'string' if want is str else 'object' if want is dict else 'array'}", type(spec[k]).__name__))
    for k, v in (spec.get("names") or {}).items() if isinstance(spec.get("names"), dict) else ():
        if k in ("shortNames", "categories"):
            if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                errs.append(FieldError(f"spec.names.{k}", "FieldValueTypeInvalid", f"spec.names.{k} in body must be a list of strings", type(v).__name__))
        elif not isinstance(v, str):
            errs.append(FieldError(f"spec.names.{k}", "FieldValueTypeInvalid", f"spec.names.{k} in body must be of type string", type(v).__name__))
    for i, v in enumerate(spec.get("versions") or [] if isinstance(spec.get("versions"), list) else []):
        if not isinstance(v, dict):
            errs.append(FieldError(f"spec.versions[{i}]", "FieldValueTypeInvalid", "must be an object", type(v).__name__))
            continue
        if v.get("name") is not None and not isinstance(v["name"], str):
            errs.append(FieldError(f"spec.versions[{i}].name", "FieldValueTypeInvalid", "must be a string", type(v["name"]).__name__))
        for k in ("served", "storage"):
            if v.get(k) is not None and not isinstance(v[k], bool):
                errs.append(FieldError(f"spec.versions[{i}].{k}", "FieldValueTypeInvalid", "must be a boolean", type(v[k]).__name__))
        for k in ("schema", "subresources"):
            if v.get(k) is not None and not isinstance(v[k], dict):
                errs.append(FieldError(f"spec.versions[{i}].{k}", "FieldValueTypeInvalid", "must be an object", type(v[k]).__name__))
        cols = v.get("additionalPrinterColumns")
        if cols is not None and not (isinstance(cols, list) and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in cols)):
            errs.append(FieldError(f"spec.versions[{i}].additionalPrinterColumns", "FieldValueInvalid", "must be a list of columns, each with a name", None))
    return errs


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    shape = _shape_errors(obj.get("spec") or {})
    if shape:
        return shape
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
        else:
            errs.extend(schema_errors(sch, f"spec.versions[{i}].schema.openAPIV3Schema"))
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
