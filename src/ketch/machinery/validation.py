"""Structural OpenAPI v3 schema validation, pruning and defaulting, with Kubernetes' messages.

A CRD's schema is applied the way the apiserver applies it: defaults filled in, unknown fields pruned (and
reported, so ``fieldValidation=Strict`` can refuse them), then every constraint checked with the field path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ketch.kinds import patterns
from ketch.kinds.definitions import FieldError
from ketch.machinery.jsoncopy import clone

_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}


def _type_of(v: Any) -> str:
    if v is None:
        return "null"
    for t, n in _TYPE_NAMES.items():
        if type(v) is t:
            return n
    return type(v).__name__


def _is_type(v: Any, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    return True


@dataclass
class Result:
    errors: list[FieldError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(v: Any) -> Any:
    return v if not isinstance(v, dict | list) else _type_of(v)


def validate(schema: dict | None, obj: dict, *, root_meta: bool = True) -> tuple[dict, Result]:
    """Validate a whole object against its schema. Returns the defaulted, pruned copy and the findings."""
    res = Result()
    if not schema:
        return obj, res
    out = clone(obj)
    s = dict(schema)
    if root_meta:
        # apiVersion, kind and metadata are always allowed at the root and not pruned.
        props = dict(s.get("properties") or {})
        for k in ("apiVersion", "kind"):
            props.setdefault(k, {"type": "string"})
        props["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        s["properties"] = props
        s.setdefault("type", "object")
    out = _walk(s, out, "", res)
    return out, res


def _walk(s: dict, v: Any, path: str, res: Result) -> Any:
    if v is None:
        if s.get("nullable"):
            return v
        # Kubernetes drops nulls for non-nullable fields with a default, else it is a type error.
        t = s.get("type")
        if t:
            res.errors.append(
                FieldError(path, "FieldValueTypeInvalid", f"{path} in body must be of type {t}: \"null\"", "null")
            )
        return v

    for sub in s.get("allOf") or []:
        v = _walk({**sub, "x-kubernetes-preserve-unknown-fields": True}, v, path, res)
    if s.get("anyOf"):
        if not any(not _check_only(sub, v) for sub in s["anyOf"]):
            res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body must match any of the schemas", _shown(v)))
    if s.get("oneOf"):
        n = sum(1 for sub in s["oneOf"] if not _check_only(sub, v))
        if n != 1:
            res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body must validate one and only one schema (oneOf)", _shown(v)))

    if s.get("x-kubernetes-int-or-string"):
        if not (isinstance(v, str) or (_is_type(v, "integer"))):
            res.errors.append(
                FieldError(path, "FieldValueTypeInvalid", f'{path} in body must be of type integer,string: "{_type_of(v)}"', _type_of(v))
            )
        return v

    t = s.get("type")
    if t and not _is_type(v, t):
        res.errors.append(
            FieldError(path, "FieldValueTypeInvalid", f'{path} in body must be of type {t}: "{_type_of(v)}"', _type_of(v))
        )
        return v
    if t == "integer" and isinstance(v, float):
        v = int(v)

    if "enum" in s and s["enum"] is not None and v not in s["enum"]:
        supported = ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in s["enum"])
        res.errors.append(FieldError(path, "FieldValueNotSupported", f"supported values: {supported}", v))

    if isinstance(v, int | float) and not isinstance(v, bool):
        if "minimum" in s:
            lo = s["minimum"]
            if v < lo or (s.get("exclusiveMinimum") is True and v == lo):
                op = "greater than" if s.get("exclusiveMinimum") is True else "greater than or equal to"
                res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body should be {op} {lo}", v))
        if "maximum" in s:
            hi = s["maximum"]
            if v > hi or (s.get("exclusiveMaximum") is True and v == hi):
                op = "less than" if s.get("exclusiveMaximum") is True else "less than or equal to"
                res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body should be {op} {hi}", v))
    if isinstance(v, str):
        if "maxLength" in s and len(v) > s["maxLength"]:
            res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body should be at most {s['maxLength']} chars long", v))
        if "minLength" in s and len(v) < s["minLength"]:
            res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body should be at least {s['minLength']} chars long", v))
        if "pattern" in s:
            try:
                ok = patterns.matches(s["pattern"], v)
            except patterns.PatternError as e:
                res.errors.append(FieldError(path, "FieldValueInvalid", f"the schema's pattern {s['pattern']!r} cannot be evaluated: {e}", v))
            else:
                if not ok:
                    res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body should match '{s['pattern']}'", v))

    if isinstance(v, list):
        if "maxItems" in s and len(v) > s["maxItems"]:
            res.errors.append(FieldError(path, "FieldValueTooMany", f"must have at most {s['maxItems']} items", len(v)))
        if "minItems" in s and len(v) < s["minItems"]:
            res.errors.append(FieldError(path, "FieldValueInvalid", f"{path} in body should have at least {s['minItems']} items", _shown(v)))
        items = s.get("items")
        if isinstance(items, dict):
            v = [_walk(items, x, f"{path}[{i}]", res) for i, x in enumerate(v)]
        if s.get("x-kubernetes-list-type") == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            seen = set()
            for i, x in enumerate(v):
                if isinstance(x, dict):
                    k = tuple(x.get(kk) for kk in keys)
                    if k in seen:
                        res.errors.append(FieldError(f"{path}[{i}]", "FieldValueDuplicate", "", _shown(x)))
                    seen.add(k)
        return v

    if isinstance(v, dict):
        props: dict = s.get("properties") or {}
        addl = s.get("additionalProperties")
        preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        for k, ps in props.items():
            if k not in v and isinstance(ps, dict) and "default" in ps:
                v[k] = clone(ps["default"])
        for req in s.get("required") or []:
            if req not in v:
                res.errors.append(FieldError(_join(path, req), "FieldValueRequired", ""))
        out: dict = {}
        for k, x in v.items():
            p = _join(path, k)
            if k in props:
                out[k] = _walk(props[k], x, p, res)
            elif isinstance(addl, dict):
                out[k] = _walk(addl, x, p, res)
            elif addl is True or preserve or (embedded and k in ("apiVersion", "kind", "metadata")):
                out[k] = x
            elif not props and t != "object" and not s.get("type"):
                out[k] = x  # schema-less (e.g. {} or only allOf): keep
            else:
                res.unknown.append(p)
        if "maxProperties" in s and len(out) > s["maxProperties"]:
            res.errors.append(FieldError(path, "FieldValueTooMany", f"must have at most {s['maxProperties']} items", len(out)))
        return out
    return v


def _check_only(s: dict, v: Any) -> list[FieldError]:
    r = Result()
    _walk({**s, "x-kubernetes-preserve-unknown-fields": True}, clone(v), "", r)
    return r.errors
