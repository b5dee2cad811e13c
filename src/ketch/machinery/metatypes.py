"""The types of ObjectMeta's fields, checked before anything reads them.

Kubernetes' decoder refuses ``labels: [x]`` or ``name: 5`` while decoding, before defaulting or
validation run; here objects arrive as plain dicts, so the same check runs first in admission, and code
after it may rely on ``metadata.labels`` being a map of strings.
"""

from __future__ import annotations

from typing import Any

from ketch.kinds.definitions import FieldError

_STRINGS = ("name", "generateName", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "selfLink")
_STRING_MAPS = ("labels", "annotations")
_OWNER_STRINGS = ("apiVersion", "kind", "name", "uid")


def _got(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}.get(type(v), type(v).__name__)


def _type_error(path: str, v: Any, want: str) -> FieldError:
    got = _got(v)
    return FieldError(path, "FieldValueTypeInvalid", f'{path} in body must be of type {want}: "{got}"', got)


def meta_type_errors(obj: dict) -> list[FieldError]:
    """Type errors in ``apiVersion``, ``kind`` and ``metadata`` of ``obj``, each naming its field."""
    errs: list[FieldError] = []
    for k in ("apiVersion", "kind"):
        if k in obj and obj[k] is not None and not isinstance(obj[k], str):
            errs.append(_type_error(k, obj[k], "string"))
    md = obj.get("metadata")
    if md is None:
        return errs
    if not isinstance(md, dict):
        return [*errs, _type_error("metadata", md, "object")]
    for k in _STRINGS:
        if md.get(k) is not None and not isinstance(md[k], str):
            errs.append(_type_error(f"metadata.{k}", md[k], "string"))
    for k in ("generation", "deletionGracePeriodSeconds"):
        v = md.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            errs.append(_type_error(f"metadata.{k}", v, "integer"))
    for k in _STRING_MAPS:
        m = md.get(k)
        if m is None:
            continue
        if not isinstance(m, dict):
            errs.append(_type_error(f"metadata.{k}", m, "object"))
            continue
        for lk, lv in m.items():
            if not isinstance(lv, str):
                errs.append(_type_error(f"metadata.{k}.{lk}", lv, "string"))
    fin = md.get("finalizers")
    if fin is not None:
        if not isinstance(fin, list):
            errs.append(_type_error("metadata.finalizers", fin, "array"))
        else:
            errs.extend(_type_error(f"metadata.finalizers[{i}]", f, "string") for i, f in enumerate(fin) if not isinstance(f, str))
    owners = md.get("ownerReferences")
    if owners is not None:
        if not isinstance(owners, list):
            errs.append(_type_error("metadata.ownerReferences", owners, "array"))
        else:
            for i, o in enumerate(owners):
                p = f"metadata.ownerReferences[{i}]"
                if not isinstance(o, dict):
                    errs.append(_type_error(p, o, "object"))
                    continue
                for k in _OWNER_STRINGS:
                    if o.get(k) is not None and not isinstance(o[k], str):
                        errs.append(_type_error(f"{p}.{k}", o[k], "string"))
                for k in ("controller", "blockOwnerDeletion"):
                    if o.get(k) is not None and not isinstance(o[k], bool):
                        errs.append(_type_error(f"{p}.{k}", o[k], "boolean"))
    mf = md.get("managedFields")
    if mf is not None and not (isinstance(mf, list) and all(isinstance(x, dict) for x in mf)):
        errs.append(_type_error("metadata.managedFields", mf, "array of objects"))
    return errs
