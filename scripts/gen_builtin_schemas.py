"""Generate OpenAPI schemas (types only) for ketch's built-in kinds from the `kubernetes` client's models.

Run by hand when a built-in kind is added: `python scripts/gen_builtin_schemas.py [--merge]`, with the `kubernetes`
client whose version matches the kubectl ketch targets (37.x for kubectl 1.37; older clients lack newer
fields, which Strict field validation would then refuse). The committed file was generated from 37.0.2
unpacked on PYTHONPATH (its optional `durationpy` import stubbed), leaving the installed client alone. The output,
src/ketch/kinds/schemas/builtin.json, is what `kubectl explain` reads through ketch's OpenAPI documents;
the client's model classes carry each field's JSON name and type, so nothing is typed in by hand. No
descriptions are copied: only names and types.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kubernetes import client

ROOTS = {
    "v1/Pod": "V1Pod", "v1/Service": "V1Service", "v1/ConfigMap": "V1ConfigMap", "v1/Secret": "V1Secret",
    "v1/Namespace": "V1Namespace", "v1/ServiceAccount": "V1ServiceAccount", "v1/Event": "CoreV1Event",
    "v1/PersistentVolumeClaim": "V1PersistentVolumeClaim", "v1/Node": "V1Node", "v1/Endpoints": "V1Endpoints",
    "batch/v1/Job": "V1Job",
    "rbac.authorization.k8s.io/v1/Role": "V1Role", "rbac.authorization.k8s.io/v1/ClusterRole": "V1ClusterRole",
    "rbac.authorization.k8s.io/v1/RoleBinding": "V1RoleBinding",
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "V1ClusterRoleBinding",
    "authorization.k8s.io/v1/SelfSubjectAccessReview": "V1SelfSubjectAccessReview",
    "authorization.k8s.io/v1/SubjectAccessReview": "V1SubjectAccessReview",
    "authorization.k8s.io/v1/LocalSubjectAccessReview": "V1LocalSubjectAccessReview",
    "authorization.k8s.io/v1/SelfSubjectRulesReview": "V1SelfSubjectRulesReview",
    "authentication.k8s.io/v1/SelfSubjectReview": "V1SelfSubjectReview",
}
OUT = Path(__file__).resolve().parents[1] / "src/ketch/kinds/schemas/builtin.json"
PRIMITIVES = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"}, "float": {"type": "number"},
    "datetime": {"type": "string", "format": "date-time"}, "date": {"type": "string", "format": "date"},
    "object": {"x-kubernetes-preserve-unknown-fields": True}, "bytes": {"type": "string", "format": "byte"},
}


def type_schema(t: str, defs: dict) -> dict:
    if t in PRIMITIVES:
        return dict(PRIMITIVES[t])
    m = re.fullmatch(r"[lL]ist\[(.+)\]", t)
    if m:
        return {"type": "array", "items": type_schema(m.group(1), defs)}
    m = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", t)
    if m:
        return {"type": "object", "additionalProperties": type_schema(m.group(1) or m.group(2), defs)}
    model(t, defs)
    return {"$ref": f"#/components/schemas/{name_of(t)}"}


def name_of(cls_name: str) -> str:
    """V1PodSpec -> io.k8s.api.PodSpec: the version prefix dropped, as kubectl explain shows type names."""
    return "io.k8s.api." + re.sub(r"^(?:[A-Z][a-z]+)?V\d+(?:(?:alpha|beta)\d+)?", "", cls_name)


def model(cls_name: str, defs: dict) -> None:
    key = name_of(cls_name)
    if key in defs:
        if defs[key].get("x-ketch-model", cls_name) != cls_name:
            raise SystemExit(f"two models map to {key}")
        return
    cls = getattr(client, cls_name)
    defs[key] = {"x-ketch-model": cls_name}  # placeholder for recursive types
    props = {}
    for attr, t in cls.openapi_types.items():
        props[cls.attribute_map[attr]] = type_schema(t, defs)
    defs[key] = {"type": "object", "properties": props, "x-ketch-model": cls_name}


def main() -> None:
    import sys

    # --merge: add the roots missing from the committed file, keeping every definition already there (so an
    # older installed client can add a kind without rewriting the types generated from a newer one).
    old = json.loads(OUT.read_text()) if "--merge" in sys.argv and OUT.exists() else {"roots": {}, "definitions": {}}
    defs: dict = {}
    for gvk, cls_name in ROOTS.items():
        if gvk not in old["roots"]:
            model(cls_name, defs)
    for d in defs.values():
        d.pop("x-ketch-model", None)
    defs = {**defs, **old["definitions"]}
    roots = {**{gvk: name_of(c) for gvk, c in ROOTS.items()}, **old["roots"]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"roots": roots, "definitions": defs}, sort_keys=True, separators=(",", ":")))
    print(f"wrote {len(defs)} definitions to {OUT}")


if __name__ == "__main__":
    main()
