"""rbac.authorization.k8s.io/v1 (Role, ClusterRole, RoleBinding, ClusterRoleBinding) and the review kinds
of authorization.k8s.io/v1 and authentication.k8s.io/v1, which are only ever created (the server answers
them; nothing is stored).

The authorizer (``machinery/authz.py``) reads the RBAC objects; the checks here are the shape ones
kube-apiserver makes so a bad Role is refused naming its field, not silently ignored.
"""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("User", "Group", "ServiceAccount")


def _rules(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    rules = obj.get("rules")
    if rules is None:
        return errs
    if not isinstance(rules, list):
        return [FieldError("rules", "FieldValueInvalid", "must be a list", "object")]
    for i, r in enumerate(rules):
        p = f"rules[{i}]"
        if not isinstance(r, dict):
            errs.append(FieldError(p, "FieldValueInvalid", "must be an object", r))
            continue
        if not r.get("verbs"):
            errs.append(FieldError(f"{p}.verbs", "FieldValueRequired", "verbs must contain at least one value"))
        res, urls = r.get("resources") or [], r.get("nonResourceURLs") or []
        if urls and (res or r.get("apiGroups")):
            errs.append(FieldError(f"{p}.nonResourceURLs", "FieldValueInvalid",
                                   "rules cannot apply to both regular resources and non-resource URLs", urls))
        if not urls and not res:
            errs.append(FieldError(f"{p}.resources", "FieldValueRequired", "resource rules must supply at least one resource"))
        if res and r.get("apiGroups") is None:
            errs.append(FieldError(f"{p}.apiGroups", "FieldValueRequired", "resource rules must supply at least one api group"))
        if urls and obj.get("kind") == "Role" or urls and (obj.get("metadata") or {}).get("namespace"):
            errs.append(FieldError(f"{p}.nonResourceURLs", "FieldValueInvalid", "namespaced rules cannot apply to non-resource URLs", urls))
    return errs


def _role_validate(obj: dict, old: dict | None) -> list[FieldError]:
    return _rules(obj)


def _binding_validate(obj: dict, old: dict | None) -> list[FieldError]:
    errs: list[FieldError] = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        errs.append(FieldError("roleRef", "FieldValueRequired", ""))
    else:
        if ref.get("apiGroup") != GROUP:
            errs.append(FieldError("roleRef.apiGroup", "FieldValueNotSupported", f'supported values: "{GROUP}"', ref.get("apiGroup", "")))
        kinds = ("ClusterRole",) if obj.get("kind") == "ClusterRoleBinding" else ("Role", "ClusterRole")
        if ref.get("kind") not in kinds:
            errs.append(FieldError("roleRef.kind", "FieldValueNotSupported", "supported values: " + ", ".join(f'"{k}"' for k in kinds), ref.get("kind", "")))
        if not ref.get("name"):
            errs.append(FieldError("roleRef.name", "FieldValueRequired", ""))
    if old is not None and old.get("roleRef") != ref:
        errs.append(FieldError("roleRef", "FieldValueInvalid", "cannot change roleRef", ref))
    for i, s in enumerate(obj.get("subjects") or []):
        p = f"subjects[{i}]"
        if not isinstance(s, dict):
            errs.append(FieldError(p, "FieldValueInvalid", "must be an object", s))
            continue
        if s.get("kind") not in SUBJECT_KINDS:
            errs.append(FieldError(f"{p}.kind", "FieldValueNotSupported", 'supported values: "ServiceAccount", "User", "Group"', s.get("kind", "")))
        if not s.get("name"):
            errs.append(FieldError(f"{p}.name", "FieldValueRequired", ""))
        if s.get("kind") == "ServiceAccount" and not s.get("namespace") and obj.get("kind") == "ClusterRoleBinding":
            errs.append(FieldError(f"{p}.namespace", "FieldValueRequired", ""))
    return errs


def _binding_default(obj: dict) -> None:
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and s.get("kind") in ("User", "Group"):
            s.setdefault("apiGroup", GROUP)
        if isinstance(s, dict) and s.get("kind") == "ServiceAccount" and not s.get("namespace"):
            ns = (obj.get("metadata") or {}).get("namespace")
            if ns:
                s["namespace"] = ns


def _path_segment_name(name: str) -> str | None:
    """RBAC names are path segments (``system:aggregate-to-view`` is valid), as in Kubernetes."""
    if name in (".", ".."):
        return f'may not be "{name}"'
    for bad in ("/", "%"):
        if bad in name:
            return f"may not contain '{bad}'"
    return None


def _role_column(o: dict) -> str:
    ref = o.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _v1(cols: list[PrinterColumn]) -> list[VersionDef]:
    return [VersionDef("v1", schema=OPEN, printer_columns=cols)]


_STR = {"type": "string"}
_ATTRS = {"type": "object", "properties": {k: _STR for k in ("namespace", "verb", "group", "version", "resource",
                                                             "subresource", "name", "path")},
          "x-kubernetes-preserve-unknown-fields": True}
_SUBJECT_SPEC = {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
    "user": _STR, "uid": _STR, "groups": {"type": "array", "items": _STR},
    "extra": {"type": "object", "additionalProperties": {"type": "array", "items": _STR}},
    "resourceAttributes": _ATTRS, "nonResourceAttributes": _ATTRS, "namespace": _STR}}


def _review_schema() -> dict:
    # The review is answered from its spec without storing it, so the spec's types are checked here, as the
    # apiserver's typed decoding does: a list where a string belongs is a 422 naming the field, not a crash.
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"spec": _SUBJECT_SPEC}}


def _review(group: str, kind: str, plural: str, namespaced: bool = False) -> ResourceDefinition:
    # Create-only: the server answers a review in the response and stores nothing (server/reviews.py).
    return ResourceDefinition(group=group, kind=kind, plural=plural, singular=kind.lower(), namespaced=namespaced,
                              versions=[VersionDef("v1", schema=_review_schema())], verbs=["create"])


_created = [PrinterColumn("Created At", fn=lambda o: (o.get("metadata") or {}).get("creationTimestamp", ""))]

DEFINITIONS = [
    ResourceDefinition(group=GROUP, kind="ClusterRole", plural="clusterroles", singular="clusterrole", namespaced=False,
                       versions=_v1(_created), validator=_role_validate, merge_keys=META_MERGE_KEYS, name_validator=_path_segment_name),
    ResourceDefinition(group=GROUP, kind="Role", plural="roles", singular="role", namespaced=True,
                       versions=_v1(_created), validator=_role_validate, merge_keys=META_MERGE_KEYS, name_validator=_path_segment_name),
    ResourceDefinition(group=GROUP, kind="ClusterRoleBinding", plural="clusterrolebindings", singular="clusterrolebinding",
                       namespaced=False, versions=_v1([PrinterColumn("Role", fn=_role_column), age_column()]),
                       defaulter=_binding_default, validator=_binding_validate, merge_keys=META_MERGE_KEYS, name_validator=_path_segment_name),
    ResourceDefinition(group=GROUP, kind="RoleBinding", plural="rolebindings", singular="rolebinding", namespaced=True,
                       versions=_v1([PrinterColumn("Role", fn=_role_column), age_column()]),
                       defaulter=_binding_default, validator=_binding_validate, merge_keys=META_MERGE_KEYS, name_validator=_path_segment_name),
    _review("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews"),
    _review("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews"),
    _review("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", namespaced=True),
    _review("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews"),
    _review("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews"),
]
