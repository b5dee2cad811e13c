"""OpenAPI v2 and v3 documents built from the registry, enough for kubectl apply (server-side field
validation is advertised through the fieldValidation parameter) and kubectl explain."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import orjson

from ketch.kinds import builtin_types
from ketch.kinds.definitions import ResourceDefinition
from ketch.machinery.registry import Registry

_PARAMS = [
    {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
    for n in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
]
_BASE = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
        "description": "Standard object metadata: name, namespace, labels, annotations, owners, finalizers.",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Name, unique within a namespace."},
            "generateName": {"type": "string", "description": "Prefix for a server-generated name."},
            "namespace": {"type": "string", "description": "Namespace the object lives in."},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Labels for selection."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Free-form annotations."},
            "uid": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        },
    }
}


def schema_name(rd: ResourceDefinition, version: str) -> str:
    if rd.builtin:
        grp = rd.group.split(".")[0] if rd.group else "core"
        if rd.group == "apiextensions.k8s.io":
            return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{rd.kind}"
        return f"io.k8s.api.{grp}.{version}.{rd.kind}"
    return ".".join(reversed(rd.group.split("."))) + f".{version}.{rd.kind}"


def _gvk(rd: ResourceDefinition, version: str) -> list[dict]:
    return [{"group": rd.group, "version": version, "kind": rd.kind}]


def _builtin_schemas() -> dict:
    """Types of the built-in kinds (see ketch.kinds.builtin_types), published so `kubectl explain
    pod.spec.containers` works."""
    return builtin_types.data()


def _gvk_key(rd: ResourceDefinition, version: str) -> str:
    return f"{rd.group}/{version}/{rd.kind}" if rd.group else f"{version}/{rd.kind}"


def _rewrite_refs(node: Any, ref_prefix: str) -> Any:
    if isinstance(node, dict):
        return {k: (ref_prefix + v.rsplit("/", 1)[1] if k == "$ref" else _rewrite_refs(v, ref_prefix)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(x, ref_prefix) for x in node]
    return node


def builtin_definitions(rds: list[tuple[ResourceDefinition, str]], ref_prefix: str) -> dict:
    """The generated definitions the given built-in kinds reach, with refs pointing at ``ref_prefix``."""
    data = _builtin_schemas()
    defs, todo = {}, [data["roots"][k] for k in (_gvk_key(rd, v) for rd, v in rds) if k in data["roots"]]
    while todo:
        name = todo.pop()
        if name in defs or name not in data["definitions"]:
            continue
        d = data["definitions"][name]
        defs[name] = _rewrite_refs(d, ref_prefix)
        todo.extend(r.rsplit("/", 1)[1] for r in _refs(d))
    return defs


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if "$ref" in node else []
        for v in node.values():
            out.extend(_refs(v))
        return out
    if isinstance(node, list):
        return [r for x in node for r in _refs(x)]
    return []


def _schema_for(rd: ResourceDefinition, version: str, ref_prefix: str) -> dict:
    v = rd.version(version)
    gen = _builtin_schemas()["roots"].get(_gvk_key(rd, version)) if rd.builtin else None
    if gen:
        base = copy.deepcopy(_builtin_schemas()["definitions"][gen])
        base = _rewrite_refs(base, ref_prefix)
        base["properties"].pop("metadata", None)
    else:
        base = dict((v.schema if v and v.schema else None) or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    props = dict(base.get("properties") or {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}
    props["metadata"] = {"allOf": [{"$ref": ref_prefix + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "Standard object's metadata."} if ref_prefix.startswith("#/components") else {"$ref": ref_prefix + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "description": "Standard object's metadata."}
    base["properties"] = props
    base.setdefault("type", "object")
    base.setdefault("description", f"{rd.kind} is a {rd.group or 'core'}/{version} resource served by ketch.")
    base["x-kubernetes-group-version-kind"] = _gvk(rd, version)
    return base


def _paths(rd: ResourceDefinition, version: str, ref: str) -> dict:
    prefix = f"/apis/{rd.group}/{version}" if rd.group else f"/api/{version}"
    coll = f"{prefix}/namespaces/{{namespace}}/{rd.plural}" if rd.namespaced else f"{prefix}/{rd.plural}"
    item = coll + "/{name}"
    gvk = {"group": rd.group, "version": version, "kind": rd.kind}
    # Strategic merge patch is accepted for built-in kinds but not advertised: kubectl then computes it
    # from its own compiled-in types instead of from these looser schemas.
    patch_types = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
    body = {"content": {"*/*": {"schema": {"$ref": ref}}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}

    def op(action: str, **extra: Any) -> dict:
        # Kept small: kubectl apply re-reads the whole group-version document for every object it applies.
        return {"operationId": f"{action}{rd.kind}", "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "responses": ok, **extra}

    out = {
        coll: {"parameters": _PARAMS, "get": op("list"), "post": op("post", requestBody=body)},
        item: {
            "parameters": _PARAMS,
            "get": op("get"),
            "put": op("put", requestBody=body),
            "patch": op("patch", requestBody={"content": {t: {"schema": {"type": "object"}} for t in patch_types}}),
            "delete": op("delete"),
        },
    }
    v = rd.version(version)
    if v and v.status_subresource:
        out[item + "/status"] = {"parameters": _PARAMS, "get": op("get"), "put": op("put", requestBody=body), "patch": op("patch", requestBody={"content": {t: {"schema": {"type": "object"}} for t in patch_types}})}
    return out


def v3_document(registry: Registry, group: str, version: str) -> dict:
    schemas: dict[str, Any] = dict(_BASE)
    paths: dict[str, Any] = {}
    rds = registry.in_group_version(group, version)
    schemas.update(builtin_definitions([(rd, version) for rd in rds if rd.builtin], "#/components/schemas/"))
    for rd in rds:
        name = schema_name(rd, version)
        schemas[name] = _schema_for(rd, version, "#/components/schemas/")
        paths.update(_paths(rd, version, f"#/components/schemas/{name}"))
    return {
        "openapi": "3.0.0",
        "info": {"title": "ketch", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def v3_root(registry: Registry, base: str = "/openapi/v3/") -> dict:
    out = {}
    for group, versions in registry.groups().items():
        for v in versions:
            key = f"apis/{group}/{v}" if group else f"api/{v}"
            doc = orjson.dumps(v3_document(registry, group, v), option=orjson.OPT_SORT_KEYS)
            h = hashlib.sha256(doc).hexdigest()[:32].upper()
            out[key] = {"serverRelativeURL": f"{base}{key}?hash={h}"}
    return {"paths": out}


def v2_document(registry: Registry) -> dict:
    defs: dict[str, Any] = dict(_BASE)
    paths: dict[str, Any] = {}
    defs.update(builtin_definitions([(rd, v.name) for rd in registry.all() for v in rd.versions if rd.builtin], "#/definitions/"))
    for rd in registry.all():
        for v in rd.versions:
            if not v.served:
                continue
            name = schema_name(rd, v.name)
            defs[name] = _schema_for(rd, v.name, "#/definitions/")
    return {"swagger": "2.0", "info": {"title": "ketch", "version": "v1.37.0"}, "paths": paths, "definitions": defs}
