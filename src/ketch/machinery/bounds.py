"""Bounded decoding: what one request body may cost the server before admission even looks at it.

kube-apiserver refuses bodies that would make it do unbounded work: JSON nested beyond a depth, YAML whose
aliases expand far beyond what was sent (a "billion laughs" of a few hundred bytes), numbers that are not
finite. The same limits apply here to every body the Kubernetes API decodes (create, update, every patch
type, server-side apply), so one request cannot stall the event loop or exhaust memory; each refusal is a
400 that says which limit was hit.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import yaml

from ketch.kinds.definitions import FieldError
from ketch.machinery.errors import bad_request

# Deeper than any real Kubernetes object (a CRD's openAPIV3Schema of a nested PodTemplate is ~40 levels),
# shallow enough that every recursive walk of an object (copy, validation, merge) stays far from Python's
# recursion limit.
MAX_DEPTH = 100
# YAML aliases may expand a document to at most this many nodes (the document as written counts too).
MAX_YAML_NODES = 100_000


def depth_error(obj: Any, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first value nested deeper than ``limit``, found without recursion. Every request
    body passes here, so the common answer (not too deep) is found by a walk that builds no paths; only a
    body past the limit is walked again to name where."""
    if not _deeper_than(obj, limit):
        return None
    stack: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while stack:
        v, d, path = stack.pop()
        if isinstance(v, dict | list):
            if d > limit:
                return path or "<root>"
            if isinstance(v, dict):
                stack.extend((x, d + 1, f"{path}.{k}" if path else str(k)) for k, x in v.items() if isinstance(x, dict | list))
            else:
                stack.extend((x, d + 1, f"{path}[{i}]") for i, x in enumerate(v) if isinstance(x, dict | list))
    return None


def _deeper_than(obj: Any, limit: int) -> bool:
    level = [obj] if isinstance(obj, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        nxt: list[Any] = []
        for v in level:
            for x in (v.values() if isinstance(v, dict) else v):
                if isinstance(x, dict | list):
                    nxt.append(x)
        level = nxt
    return False


def _check_depth(obj: Any) -> Any:
    where = depth_error(obj)
    if where is not None:
        shown = where if len(where) <= 120 else where[:120] + "..."
        raise bad_request(f"the request body is nested more than {MAX_DEPTH} levels deep (at {shown})")
    return obj


def load_json(raw: bytes | str) -> Any:
    """Decode JSON (orjson refuses NaN and Infinity, as Go's encoding/json does), then check the depth.
    Raises ``orjson.JSONDecodeError`` for text that is not JSON at all, so callers may try YAML."""
    try:
        return _check_depth(orjson.loads(raw))
    except orjson.JSONDecodeError as e:
        if "recursion" in str(e).lower():
            raise bad_request(f"the request body is nested more than {MAX_DEPTH} levels deep") from e
        raise


class _Counted(yaml.SafeLoader):
    """A safe loader that measures the composed node graph (aliases expanded, depth) before it builds
    any Python object: aliases share nodes, so composing a bomb is cheap; expanding it is what costs."""

    _depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201
        # PyYAML composes recursively: refuse depth while composing, long before Python's recursion limit
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise bad_request(f"the request body is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):  # noqa: ANN201
        node = super().get_single_node()
        if node is not None:
            _measure(node)
        return node


def _measure(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk with memoised subtree sizes: a shared (aliased) node is measured once but
    # counted at each place it is used, which is exactly what expanding it would cost.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        nid = id(node)
        if done:
            in_progress.discard(nid)
            sizes[nid] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[nid] > MAX_YAML_NODES:
                raise bad_request(
                    f"the YAML body expands to more than {MAX_YAML_NODES} nodes through its aliases (anchors and *references)"
                )
            continue
        if nid in sizes:
            continue
        if depth > MAX_DEPTH:
            raise bad_request(f"the request body is nested more than {MAX_DEPTH} levels deep")
        if nid in in_progress:
            raise bad_request("the YAML body refers to itself through an alias")
        in_progress.add(nid)
        stack.append((node, depth, True))
        for c in _children(node):
            if id(c) in in_progress:
                raise bad_request("the YAML body refers to itself through an alias")
            if id(c) not in sizes:
                stack.append((c, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    return []


def load_yaml(raw: bytes | str) -> Any:
    """Decode one YAML document within the alias-expansion and depth budgets.
    Raises ``yaml.YAMLError`` for text that is not YAML."""
    loader = _Counted(raw)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_all(raw: bytes | str) -> list[Any]:
    """Every document of a YAML stream, each within the budgets (a KFP package holds two)."""
    loader = _Counted(raw)
    out = []
    try:
        while loader.check_node():
            node = loader.get_node()
            _measure(node)
            out.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return out


def non_finite(obj: Any, path: str = "") -> list[FieldError]:
    """Every float in ``obj`` that is inf or nan (YAML's .inf/.nan), as a field error naming where: JSON
    cannot carry them, so nothing stored may hold one. (A walk that builds no paths answers first: every
    write passes here, and almost none holds one.)"""
    if not _any_non_finite(obj):
        return []
    out: list[FieldError] = []
    stack: list[tuple[Any, str]] = [(obj, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            out.append(FieldError(p or "<root>", "FieldValueInvalid", "must be a finite number", str(v)))
        elif isinstance(v, dict):
            stack.extend((x, f"{p}.{k}" if p else str(k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{p}[{i}]") for i, x in enumerate(v))
    return sorted(out, key=lambda e: e.path)


def _any_non_finite(obj: Any) -> bool:
    stack = [obj]
    isfinite = math.isfinite
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float) and not isfinite(v):
            return True
    return False
