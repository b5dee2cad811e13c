"""Matching a structured LabelSelector (``matchLabels`` / ``matchExpressions``) against an object's labels.

One implementation for every layer (the kinds layer is the lowest, so validation, machinery, controllers and
the kubelet's scheduler may all import it). Kubernetes gives a selector two readings of "empty", and each
caller says which one its field has:

- metav1.LabelSelectorAsSelector (pod affinity terms, topology spread constraints, PodDisruptionBudget
  policy/v1, NetworkPolicy): ``null`` selects nothing, ``{}`` selects everything: ``empty_matches_all=True``;
- a Service's map selector, or a selector a workload requires to be non-empty (Jobs, ReplicaSets): an empty
  one selects nothing here: ``empty_matches_all=False``, the default.

Operators are LabelSelector's (In, NotIn, Exists, DoesNotExist); an unknown operator (which validation refuses)
matches nothing rather than everything. Values are compared as strings, as label values are.
"""

from __future__ import annotations


def selector_matches(selector: dict | None, labels: dict, *, empty_matches_all: bool = False) -> bool:
    """Whether ``labels`` satisfy ``selector``; ``None`` never matches, ``{}`` as ``empty_matches_all`` says."""
    if selector is None:
        return False
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return empty_matches_all
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


def expression_matches(e: dict, labels: dict) -> bool:
    """One LabelSelectorRequirement."""
    k, op, vals = e.get("key", ""), e.get("operator", ""), [str(v) for v in e.get("values") or []]
    have = k in labels
    if op == "In":
        return have and str(labels[k]) in vals
    if op == "NotIn":
        return not have or str(labels[k]) not in vals
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    return False
