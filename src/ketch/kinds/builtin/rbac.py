"""rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding, ClusterRoleBinding: stored and served so
that charts and clients that create them work. They are not enforced: ketch's authorizer is its token
file (one admin), not RBAC (docs/status.md)."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef


def _rules(obj: dict, old: dict | None) -> list[FieldError]:
    errs = []
    for i, r in enumerate(obj.get("rules") or []):
        if not (r or {}).get("verbs"):
            errs.append(FieldError(f"rules[{i}].verbs", "FieldValueRequired", "verbs must contain at least one value"))
    return errs


def _binding(obj: dict, old: dict | None) -> list[FieldError]:
    ref = obj.get("roleRef") or {}
    errs = [FieldError(f"roleRef.{f}", "FieldValueRequired", "") for f in ("kind", "name") if not ref.get(f)]
    if old is not None and (old.get("roleRef") or {}) != ref:
        errs.append(FieldError("roleRef", "FieldValueInvalid", "cannot change roleRef", "object"))
    return errs


def _role_ref(o: dict) -> str:
    ref = o.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _def(kind: str, plural: str, namespaced: bool, validator, cols: list[PrinterColumn]) -> ResourceDefinition:  # noqa: ANN001
    return ResourceDefinition(
        group="rbac.authorization.k8s.io", kind=kind, plural=plural, singular=kind.lower(), namespaced=namespaced,
        versions=[VersionDef("v1", schema=OPEN, printer_columns=cols)], merge_keys=META_MERGE_KEYS, validator=validator,
    )


DEFINITIONS = [
    _def("Role", "roles", True, _rules, [PrinterColumn("Created At", fn=lambda o: o["metadata"].get("creationTimestamp", ""))]),
    _def("ClusterRole", "clusterroles", False, _rules, [PrinterColumn("Created At", fn=lambda o: o["metadata"].get("creationTimestamp", ""))]),
    _def("RoleBinding", "rolebindings", True, _binding, [PrinterColumn("Role", fn=_role_ref), age_column()]),
    _def("ClusterRoleBinding", "clusterrolebindings", False, _binding, [PrinterColumn("Role", fn=_role_ref), age_column()]),
]
