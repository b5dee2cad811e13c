"""Reading an InferenceGraph's spec: KServe's admission rules and its GJSON conditions.

The rules are those of KServe's InferenceGraph webhook (a ``root`` node, unique step names, exactly one
target per step, Splitter weights summing to 100) plus two that KServe only finds at request time: a
``nodeName`` must name a node of the graph, and nodes may not form a cycle (the router would recurse
forever). Errors name the field, as an admission error does.

Conditions (Switch steps, and Sequence steps, which test the previous response) are GJSON paths as in
KServe's router: a step matches when the path exists in the JSON body. They are evaluated by ``gjson``
(gjson-py, a maintained Python implementation of the syntax). Two differences from Go's gjson are bridged
here so KServe's documented samples work: a bare word compared in a query (``#(decision==ONE)``) is a
string, and ``[@this]`` (wrap the document in an array, so a query can test the top level) is applied
before the query.
"""

from __future__ import annotations

import re
from typing import Any

from ketch.kinds.definitions import FieldError

ROOT = "root"
TYPES = ("Sequence", "Splitter", "Ensemble", "Switch")
_BARE = re.compile(r"(==|!=|<=|>=|<|>|%|!%)\s*([A-Za-z_][\w\-.]*)\s*\)")
_LITERALS = {"true", "false", "null"}


def validate(graph: dict) -> list[FieldError]:
    spec = graph.get("spec") or {}
    nodes = spec.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        return [FieldError("spec.nodes", "FieldValueRequired", "an InferenceGraph needs at least the root node")]
    errs: list[FieldError] = []
    if ROOT not in nodes:
        errs.append(FieldError("spec.nodes.root", "FieldValueRequired", "the graph's entry node must be named root"))
    for nname, node in nodes.items():
        path = f"spec.nodes.{nname}"
        if not isinstance(node, dict):
            errs.append(FieldError(path, "FieldValueTypeInvalid", "must be an object"))
            continue
        rtype = node.get("routerType")
        if rtype not in TYPES:
            errs.append(FieldError(f"{path}.routerType", "FieldValueNotSupported", f"supported values: {', '.join(TYPES)}", rtype))
        steps = node.get("steps") or []
        if not steps:
            errs.append(FieldError(f"{path}.steps", "FieldValueRequired", "a node needs at least one step"))
        seen: set[str] = set()
        for i, step in enumerate(steps):
            sp = f"{path}.steps[{i}]"
            targets = [t for t in ("nodeName", "serviceName", "serviceUrl") if step.get(t)]
            if len(targets) != 1 and not (set(targets) == {"serviceName", "serviceUrl"}):
                errs.append(FieldError(sp, "FieldValueInvalid", "exactly one of nodeName, serviceName, serviceUrl must be specified"
                                       + (f" (found {', '.join(targets)})" if targets else "")))
            if step.get("nodeName") and step["nodeName"] not in nodes:
                errs.append(FieldError(f"{sp}.nodeName", "FieldValueNotFound", f"no node {step['nodeName']!r} in spec.nodes", step["nodeName"]))
            url = step.get("serviceUrl")
            if url and not url.startswith(("http://", "https://")):
                errs.append(FieldError(f"{sp}.serviceUrl", "FieldValueInvalid", "must be an http:// or https:// URL", url))
            name = step.get("name")
            if name:
                if name in seen:
                    errs.append(FieldError(f"{sp}.name", "FieldValueDuplicate", f"step name {name!r} is used twice in node {nname}", name))
                seen.add(name)
            if rtype == "Switch" and not step.get("condition"):
                errs.append(FieldError(f"{sp}.condition", "FieldValueRequired", "a Switch step routes on a condition"))
            if step.get("data") not in (None, "", "$request", "$response"):
                errs.append(FieldError(f"{sp}.data", "FieldValueNotSupported", 'supported values: "$request", "$response"', step["data"]))
        if rtype == "Splitter" and steps:
            weights = [s.get("weight") for s in steps]
            if any(w is None for w in weights):
                errs.append(FieldError(f"{path}.steps", "FieldValueRequired", "every Splitter step needs a weight"))
            elif sum(weights) != 100:
                errs.append(FieldError(f"{path}.steps", "FieldValueInvalid", f"Splitter weights must sum to 100 (they sum to {sum(weights)})", sum(weights)))
    if not errs:
        cycle = _cycle(nodes)
        if cycle:
            errs.append(FieldError("spec.nodes", "FieldValueInvalid", f"nodes form a cycle: {' -> '.join(cycle)}"))
    return errs


def _cycle(nodes: dict) -> list[str]:
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> list[str]:
        if state.get(n) == 1:
            return [*trail[trail.index(n):], n]
        if state.get(n) == 2:
            return []
        state[n] = 1
        for s in nodes[n].get("steps") or []:
            nxt = s.get("nodeName")
            if nxt in nodes:
                found = visit(nxt, [*trail, n])
                if found:
                    return found
        state[n] = 2
        return []

    for n in nodes:
        found = visit(n, [])
        if found:
            return found
    return []


def service_names(graph: dict) -> set[str]:
    return {s["serviceName"] for node in ((graph.get("spec") or {}).get("nodes") or {}).values() if isinstance(node, dict)
            for s in node.get("steps") or [] if s.get("serviceName")}


def _quote_bare(cond: str) -> str:
    return _BARE.sub(lambda m: f'{m.group(1)}{m.group(2)})' if m.group(2) in _LITERALS or _is_num(m.group(2)) else f'{m.group(1)}"{m.group(2)}")', cond)


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def matches(doc: Any, condition: str) -> bool:
    """Does the GJSON path ``condition`` exist in ``doc`` (Go gjson's ``Get(...).Exists()``)?"""
    import gjson

    cond = _quote_bare(condition.strip())
    if cond.startswith("[@this]"):
        doc, cond = [doc], cond[len("[@this]"):].lstrip(".")
        if not cond:
            return True
    try:
        gjson.get(doc, cond)
        return True
    except (gjson.GJSONError, ValueError, TypeError, KeyError, IndexError):
        return False
