"""The three patch types kubectl and client libraries send: JSON merge patch (RFC 7386), JSON patch
(RFC 6902, via jsonpatch) and strategic merge patch (Kubernetes' list-merging patch for built-in kinds).
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from ketch.machinery.errors import StatusError, bad_request
from ketch.machinery.jsoncopy import clone

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
APPLY_CBOR = "application/apply-patch+cbor"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(target: dict, ops: Any) -> dict:
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, ops)
    except jsonpatch.JsonPatchConflict as e:
        raise StatusError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from e
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise StatusError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from e
    except Exception as e:  # malformed operations
        raise bad_request(f"invalid json patch: {e}") from e


def _merge_key_for(path: str, merge_keys: dict[str, str]) -> str | None:
    """Find the merge key of a list at ``path`` (dotted field names, no indices) by longest suffix."""
    best: tuple[int, str | None] = (-1, None)
    for suffix, key in merge_keys.items():
        if path == suffix or path.endswith("." + suffix):
            if len(suffix) > best[0]:
                best = (len(suffix), key)
    return best[1]


def strategic_merge_patch(original: Any, patch: Any, merge_keys: dict[str, str], path: str = "") -> Any:
    """Apply a strategic merge patch. ``merge_keys`` maps list paths (suffixes) to their merge key;
    a key of "" marks a list of primitives merged as a set (finalizers)."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in (v or [])]
            continue
        sub = f"{path}.{k}" if path else k
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge_patch(out.get(k), v, merge_keys, sub)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        elif isinstance(v, list):
            out[k] = _merge_list(out.get(k), v, merge_keys, sub)
        else:
            out[k] = v
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(orig: Any, patch: list, merge_keys: dict[str, str], path: str) -> list:
    key = _merge_key_for(path, merge_keys)
    if not isinstance(orig, list) or key is None:
        return [x for x in clone(patch) if not (isinstance(x, dict) and x.get("$patch"))]
    if key == "":
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [x for x in clone(patch) if not (isinstance(x, dict) and x.get("$patch"))]
    out = [clone(x) for x in orig]
    for item in patch:
        if not isinstance(item, dict):
            if item not in out:
                out.append(item)
            continue
        kv = item.get(key)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            out[idx] = strategic_merge_patch(out[idx], item, merge_keys, path)
    return out
