"""ResourceDefinition: everything the API machinery needs to serve one kind.

Built-in kinds and CustomResourceDefinitions are both turned into these, so the server has exactly one
code path for every kind (Kubeflow's kinds arrive as CRDs, never as special cases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A printer column either follows a JSONPath (CRD style) or is computed by a function (built-in kinds).
CellFn = Callable[[dict], Any]


@dataclass
class PrinterColumn:
    name: str
    type: str = "string"
    json_path: str | None = None
    fn: CellFn | None = None
    description: str = ""
    priority: int = 0  # 1 = only with -o wide
    format: str = ""


@dataclass
class FieldError:
    """One invalid field, reported the way Kubernetes' field.Error does."""

    path: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueTypeInvalid...
    message: str
    value: Any = None

    def render(self) -> str:
        if self.reason == "FieldValueRequired":
            return f"{self.path}: Required value" + (f": {self.message}" if self.message else "")
        if self.reason == "FieldValueForbidden":
            return f"{self.path}: Forbidden: {self.message}"
        if self.reason == "FieldValueNotSupported":
            return f"{self.path}: Unsupported value: {_q(self.value)}: {self.message}"
        if self.reason == "FieldValueDuplicate":
            return f"{self.path}: Duplicate value: {_q(self.value)}"
        return f"{self.path}: Invalid value: {_q(self.value)}: {self.message}"


def _q(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, dict | list):
        return f'"{type(v).__name__}"' if not isinstance(v, dict) else '"object"'
    return str(v)


@dataclass
class VersionDef:
    name: str
    served: bool = True
    storage: bool = True
    schema: dict | None = None  # OpenAPI v3 schema of the whole object
    printer_columns: list[PrinterColumn] = field(default_factory=list)
    status_subresource: bool = False
    scale_subresource: dict | None = None


@dataclass
class ResourceDefinition:
    group: str  # "" for the core group
    kind: str
    plural: str
    singular: str
    namespaced: bool
    versions: list[VersionDef]
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    list_kind: str = ""
    builtin: bool = True
    # Strategic merge patch metadata: dotted path of a list -> merge key ("" means atomic list).
    merge_keys: dict[str, str] = field(default_factory=dict)
    # Behaviour hooks; pure functions so that they stay in the kinds layer.
    defaulter: Callable[[dict], None] | None = None
    validator: Callable[[dict, dict | None], list[FieldError]] | None = None
    name_validator: Callable[[str], str | None] | None = None
    # Fields that may not change after creation (dotted paths), checked on update.
    immutable_fields: list[str] = field(default_factory=list)
    verbs: list[str] = field(
        default_factory=lambda: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    )
    # Pods are deleted in two steps: deletionTimestamp first, the kubelet removes them once stopped.
    graceful_deletion: bool = False
    # Finalizers the server adds when deletion starts (a Namespace's "kubernetes": emptied first).
    delete_finalizers: list[str] = field(default_factory=list)
    # Objects that may never be deleted (the default and system namespaces).
    protected_names: tuple[str, ...] = ()
    # Status written at create time when the kind has a status subresource (e.g. Pods start Pending).
    initial_status: Callable[[dict], dict] | None = None

    def __post_init__(self) -> None:
        if not self.list_kind:
            self.list_kind = self.kind + "List"

    @property
    def key(self) -> str:
        """Version-independent storage key."""
        return f"{self.group}/{self.plural}"

    @property
    def storage_version(self) -> str:
        for v in self.versions:
            if v.storage:
                return v.name
        return self.versions[0].name

    def version(self, name: str) -> VersionDef | None:
        for v in self.versions:
            if v.name == name and v.served:
                return v
        return None

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def preferred_version(self) -> str:
        return self.storage_version

    def has_status(self, version: str | None = None) -> bool:
        v = self.version(version) if version else None
        vs = [v] if v else self.versions
        return any(x.status_subresource for x in vs)
