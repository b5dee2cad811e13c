"""The field types of the built-in kinds (generated from the kubernetes client's models by
scripts/gen_builtin_schemas.py into schemas/builtin.json).

They serve two purposes: the OpenAPI documents publish them (so `kubectl explain pod.spec` works), and
admission uses them to find unknown fields (for fieldValidation Strict/Warn, as Kubernetes' decoder does)
and values of the wrong JSON type (a string where an integer belongs). They are deliberately not used for
anything stricter: each kind's own validator owns its rules.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ketch.kinds.definitions import FieldError


@functools.cache
def data() -> dict:
    try:
        return json.loads(resources.files("ketch.kinds").joinpath("schemas/builtin.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"roots": {}, "definitions": {}}


def gvk_key(group: str, version: str, kind: str) -> str:
    return f"{group}/{version}/{kind}" if group else f"{version}/{kind}"


def root(group: str, version: str, kind: str) -> str | None:
    """The definition name of a built-in kind's top-level type, if generated."""
    return data()["roots"].get(gvk_key(group, version, kind))


def check(group: str, version: str, kind: str, obj: dict) -> tuple[list[str], list[FieldError]]:
    """(unknown field paths, type errors) of ``obj`` against the generated types of its kind."""
    name = root(group, version, kind)
    unknown: list[str] = []
    errs: list[FieldError] = []
    if name is None:
        return unknown, errs
    defs = data()["definitions"]
    # Status is left alone: controllers own it and may record more than the upstream types hold.
    _walk(defs[name], {k: v for k, v in obj.items() if k != "status"}, "", defs, unknown, errs)
    return unknown, errs


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    return defs.get(ref.rsplit("/", 1)[1], {}) if ref else schema


def _walk(schema: dict, v: Any, path: str, defs: dict, unknown: list[str], errs: list[FieldError]) -> None:
    schema = _resolve(schema, defs)
    if v is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    t = schema.get("type")
    if t == "object" and not isinstance(v, dict):
        errs.append(_type_error(path, v, "object"))
    elif t == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, sub in v.items():
            p = f"{path}.{k}" if path else k
            if props is not None:
                if k not in props:
                    if not (not path and k in ("apiVersion", "kind")):
                        unknown.append(p)
                    continue
                _walk(props[k], sub, p, defs, unknown, errs)
            elif isinstance(extra, dict):
                _walk(extra, sub, f"{path}[{k}]", defs, unknown, errs)
    elif t == "array":
        if not isinstance(v, list):
            errs.append(_type_error(path, v, "array"))
            return
        for i, item in enumerate(v):
            _walk(schema.get("items") or {}, item, f"{path}[{i}]", defs, unknown, errs)
    elif t == "integer" and (isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))):
        errs.append(_type_error(path, v, "integer"))
    elif t == "boolean" and not isinstance(v, bool):
        errs.append(_type_error(path, v, "boolean"))
    elif t == "string" and isinstance(v, dict | list):
        # Scalars are let through: quantities ("1", 1, 0.5) are strings in the models but numbers in YAML.
        errs.append(_type_error(path, v, "string"))


def _type_error(path: str, v: Any, want: str) -> FieldError:
    got = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}.get(type(v), type(v).__name__)
    return FieldError(path, "FieldValueTypeInvalid", f"{path} in body must be of type {want}: \"{got}\"", got)
