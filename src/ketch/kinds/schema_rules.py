"""What a CRD's ``openAPIV3Schema`` must be before its kind is served: structural, as kube-apiserver's
CRD validation requires.

Every node's ``type`` is one of OpenAPI's, ``properties`` is a map of schemas, ``items`` one schema,
``required`` a list of names, bounds are numbers, and every ``pattern`` compiles in RE2 (so it can be
evaluated in linear time). A schema with ``type: banana`` or ``pattern: (a)\\1`` is refused when the CRD
is written, naming the schema path, instead of being stored and failing (or stalling) on every object.
"""

from __future__ import annotations

from typing import Any

from ketch.kinds import patterns
from ketch.kinds.definitions import FieldError

TYPES = ("object", "array", "string", "integer", "number", "boolean")
_NUMBERS = ("minimum", "maximum", "multipleOf")
_COUNTS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties")
_BOOLS = ("nullable", "uniqueItems", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
          "x-kubernetes-embedded-resource", "exclusiveMinimum", "exclusiveMaximum")
_LIST_TYPES = ("atomic", "set", "map")
MAX_NODES = 20_000  # schema nodes in one CRD version: controller-gen's biggest (JobSet, Pod templates) are ~5k


def schema_errors(schema: Any, path: str) -> list[FieldError]:
    """Every structural problem of ``schema``, each with the field path under the CRD."""
    errs: list[FieldError] = []
    stack: list[tuple[Any, str]] = [(schema, path)]
    seen = 0
    while stack and len(errs) < 50:
        s, p = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            errs.append(FieldError(path, "FieldValueTooMany", f"must have at most {MAX_NODES} schema nodes", seen))
            break
        if not isinstance(s, dict):
            errs.append(FieldError(p, "FieldValueInvalid", "must be an object (a schema)", type(s).__name__))
            continue
        t = s.get("type")
        if t is not None and t not in TYPES:
            errs.append(FieldError(f"{p}.type", "FieldValueNotSupported", ", ".join(f'"{x}"' for x in TYPES), t))
        for k in _NUMBERS:
            if k in s and (isinstance(s[k], bool) or not isinstance(s[k], int | float)):
                errs.append(FieldError(f"{p}.{k}", "FieldValueInvalid", "must be a number", s[k]))
        for k in _COUNTS:
            if k in s and (isinstance(s[k], bool) or not isinstance(s[k], int) or s[k] < 0):
                errs.append(FieldError(f"{p}.{k}", "FieldValueInvalid", "must be a non-negative integer", s[k]))
        for k in _BOOLS:
            if k in s and not isinstance(s[k], bool):
                errs.append(FieldError(f"{p}.{k}", "FieldValueInvalid", "must be a boolean", s[k]))
        if "pattern" in s:
            if not isinstance(s["pattern"], str):
                errs.append(FieldError(f"{p}.pattern", "FieldValueInvalid", "must be a string", s["pattern"]))
            else:
                try:
                    patterns.compile_pattern(s["pattern"])
                except patterns.PatternError as e:
                    errs.append(FieldError(f"{p}.pattern", "FieldValueInvalid", f"must be a valid regular expression (RE2 syntax): {e}", s["pattern"]))
        if "enum" in s and not isinstance(s["enum"], list):
            errs.append(FieldError(f"{p}.enum", "FieldValueInvalid", "must be a list", s["enum"]))
        req = s.get("required")
        if req is not None and not (isinstance(req, list) and all(isinstance(x, str) for x in req)):
            errs.append(FieldError(f"{p}.required", "FieldValueInvalid", "must be a list of property names", req))
        lt = s.get("x-kubernetes-list-type")
        if lt is not None and lt not in _LIST_TYPES:
            errs.append(FieldError(f"{p}.x-kubernetes-list-type", "FieldValueNotSupported", '"atomic", "set", "map"', lt))
        keys = s.get("x-kubernetes-list-map-keys")
        if keys is not None and not (isinstance(keys, list) and all(isinstance(x, str) for x in keys)):
            errs.append(FieldError(f"{p}.x-kubernetes-list-map-keys", "FieldValueInvalid", "must be a list of property names", keys))
        props = s.get("properties")
        if props is not None:
            if not isinstance(props, dict):
                errs.append(FieldError(f"{p}.properties", "FieldValueInvalid", "must be a map of schemas", type(props).__name__))
            else:
                if t is not None and t != "object":
                    errs.append(FieldError(f"{p}.properties", "FieldValueForbidden", f"must be empty for type {t!r}"))
                stack.extend((v, f"{p}.properties[{k}]") for k, v in props.items())
        items = s.get("items")
        if items is not None:
            if isinstance(items, list):
                errs.append(FieldError(f"{p}.items", "FieldValueForbidden", "items must be a schema object and not an array"))
            else:
                stack.append((items, f"{p}.items"))
        if t == "array" and items is None and not s.get("x-kubernetes-preserve-unknown-fields"):
            errs.append(FieldError(f"{p}.items", "FieldValueRequired", "must be specified for type \"array\""))
        addl = s.get("additionalProperties")
        if addl is not None and not isinstance(addl, bool):
            stack.append((addl, f"{p}.additionalProperties"))
        for comb in ("allOf", "anyOf", "oneOf"):
            c = s.get(comb)
            if c is None:
                continue
            if not isinstance(c, list):
                errs.append(FieldError(f"{p}.{comb}", "FieldValueInvalid", "must be a list of schemas", type(c).__name__))
            else:
                stack.extend((x, f"{p}.{comb}[{i}]") for i, x in enumerate(c))
        if "not" in s:
            stack.append((s["not"], f"{p}.not"))
    return errs
