"""The reference reading of kubelet/scheduling.py for tests/test_scheduling_many.py: the scheduler as it was
before its once-per-Pod precomputation (``Pass``), every filter and score rescanning every placed Pod for
every Node (O(nodes x placed)). Kept only as the oracle the faster one must agree with, Pod for Pod."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ketch.kinds.resources import parse_quantity

HOSTNAME = "kubernetes.io/hostname"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

R_UNSCHEDULABLE = "node(s) were unschedulable"
R_NODE_NAME = "node(s) didn't match the requested node name"
R_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
R_SPREAD = "node(s) didn't match pod topology spread constraints"
R_SPREAD_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
R_AFFINITY = "node(s) didn't match pod affinity rules"
R_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
R_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
R_TOO_MANY_PODS = "Too many pods"

# What the scoring counts for a Pod that requests nothing (kube-scheduler's non-zero defaults).
DEFAULT_CPU = 0.1
DEFAULT_MEMORY = 200 * 1024 * 1024


@dataclass
class Decision:
    """Where the Pod goes (None: nowhere now), the scheduler's message, and why each Node was refused."""

    node: str | None
    message: str = ""
    reasons: dict[str, list[str]] = field(default_factory=dict)  # node -> reasons
    scores: dict[str, float] = field(default_factory=dict)


# -- small readers --------------------------------------------------------------------------------------

def _labels(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _ns(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def _q(v: object) -> float:
    try:
        return parse_quantity(v)
    except (ValueError, TypeError):
        return 0.0


def requests_of(pod: dict) -> dict[str, float]:
    """Every resource the Pod asks for (extended resources too): max(sum of containers, largest init
    container); a limit without a request counts as the request."""
    spec = pod.get("spec") or {}

    def one(c: dict) -> dict[str, float]:
        res = c.get("resources") or {}
        req = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {k: _q(v) for k, v in req.items()}

    total: dict[str, float] = {}
    for c in spec.get("containers") or []:
        for k, v in one(c).items():
            total[k] = total.get(k, 0.0) + v
    for c in spec.get("initContainers") or []:
        for k, v in one(c).items():
            total[k] = max(total.get(k, 0.0), v)
    for k, v in ((spec.get("overhead") or {}).items()):
        total[k] = total.get(k, 0.0) + _q(v)
    return total


def allocatable_of(node: dict) -> dict[str, float]:
    st = node.get("status") or {}
    return {k: _q(v) for k, v in (st.get("allocatable") or st.get("capacity") or {}).items()}


def selector_matches(sel: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector as pod affinity and topology spread read it: null matches nothing, {} everything."""
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(_expression(e, labels) for e in sel.get("matchExpressions") or [])


def _expression(e: dict, labels: dict[str, str]) -> bool:
    k, op, vals = e.get("key", ""), e.get("operator", ""), [str(v) for v in e.get("values") or []]
    have = k in labels
    if op == "In":
        return have and labels[k] in vals
    if op == "NotIn":
        return not have or labels[k] not in vals
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    if op in ("Gt", "Lt") and have and vals:
        try:
            a, b = int(labels[k]), int(vals[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


# -- node affinity and taints ------------------------------------------------------------------------------

def _node_term_matches(term: dict, node: dict) -> bool:
    labels = _labels(node)
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches no node
    if not all(_expression(e, labels) for e in exprs):
        return False
    return all(_expression({**f, "key": "metadata.name"}, {"metadata.name": _name(node)}) for f in fields)


def matches_node_affinity(pod: dict, node: dict) -> bool:
    """nodeSelector (every label equal) and required node affinity (any term: every expression)."""
    spec = pod.get("spec") or {}
    labels = _labels(node)
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"))
    if req is None:
        return True
    return any(_node_term_matches(t, node) for t in req.get("nodeSelectorTerms") or [])


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if op == "Exists" or str(t.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False


def untolerated_taint(pod: dict, node: dict) -> dict | None:
    tol = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tol, taint):
            return taint
    return None


# -- pod affinity ---------------------------------------------------------------------------------------------

def _term_namespaces(term: dict, owner_ns: str) -> set[str] | None:
    """The namespaces a pod affinity term looks at (None: all of them)."""
    if term.get("namespaceSelector") is not None and not (term["namespaceSelector"].get("matchLabels") or term["namespaceSelector"].get("matchExpressions")):
        return None  # {}: every namespace
    names = set(term.get("namespaces") or [])
    return names or {owner_ns}


def _term_matches_pod(term: dict, owner_ns: str, other: dict) -> bool:
    nss = _term_namespaces(term, owner_ns)
    if nss is not None and _ns(other) not in nss:
        return False
    return selector_matches(term.get("labelSelector"), _labels(other))


def _required(pod: dict, kind: str) -> list[dict]:
    aff = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    return [t for t in aff.get("requiredDuringSchedulingIgnoredDuringExecution") or [] if t.get("topologyKey")]


def _preferred(pod: dict, kind: str) -> list[tuple[int, dict]]:
    aff = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    out = []
    for w in aff.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        t = w.get("podAffinityTerm") or {}
        if t.get("topologyKey"):
            out.append((int(w.get("weight") or 0), t))
    return out


def _same_domain(key: str, a: dict, b: dict) -> bool:
    la, lb = _labels(a), _labels(b)
    return key in la and key in lb and la[key] == lb[key]


# -- topology spread -------------------------------------------------------------------------------------------

def _spread_counts(pod: dict, c: dict, nodes: list[dict], placed: list[tuple[dict, str]]) -> dict[str, int]:
    """Matching Pods per domain of ``c.topologyKey``, over the Nodes the Pod could go to by its node
    affinity (nodeAffinityPolicy Honor, the default) that carry the key."""
    key = c.get("topologyKey", "")
    eligible = {_name(n): n for n in nodes if key in _labels(n)
                and (c.get("nodeAffinityPolicy") == "Ignore" or matches_node_affinity(pod, n))}
    counts: dict[str, int] = {_labels(n)[key]: 0 for n in eligible.values()}
    sel = c.get("labelSelector")
    for other, node in placed:
        n = eligible.get(node)
        if n is None or _ns(other) != _ns(pod) or not selector_matches(sel, _labels(other)):
            continue
        counts[_labels(n)[key]] += 1
    return counts


def _spread_fails(pod: dict, node: dict, nodes: list[dict], placed: list[tuple[dict, str]]) -> str | None:
    for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []:
        if c.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
            continue
        key = c.get("topologyKey", "")
        if key not in _labels(node):
            return R_SPREAD_LABEL
        counts = _spread_counts(pod, c, nodes, placed)
        lo = min(counts.values()) if counts else 0
        if int(c.get("minDomains") or 0) > len(counts):
            lo = 0
        me = 1 if selector_matches(c.get("labelSelector"), _labels(pod)) else 0
        if counts.get(_labels(node)[key], 0) + me - lo > int(c.get("maxSkew") or 1):
            return R_SPREAD
    return None


# -- filtering ------------------------------------------------------------------------------------------------

def _used(node: str, placed: list[tuple[dict, str]]) -> dict[str, float]:
    out: dict[str, float] = {"pods": 0.0}
    for p, n in placed:
        if n != node:
            continue
        out["pods"] += 1
        for k, v in requests_of(p).items():
            out[k] = out.get(k, 0.0) + v
    return out


def fit_reasons(pod: dict, node: dict, placed: list[tuple[dict, str]]) -> list[str]:
    """``Insufficient <resource>`` for each request that does not fit into what is left on the Node."""
    alloc = allocatable_of(node)
    used = _used(_name(node), placed)
    out = []
    if "pods" in alloc and used["pods"] + 1 > alloc["pods"]:
        out.append(R_TOO_MANY_PODS)
    for k, v in sorted(requests_of(pod).items()):
        if v > 0 and used.get(k, 0.0) + v > alloc.get(k, 0.0) + 1e-9:
            out.append(f"Insufficient {k}")
    return out


def filter_node(pod: dict, node: dict, nodes: list[dict], placed: list[tuple[dict, str]]) -> list[str]:
    """Why ``pod`` cannot go to ``node`` (empty: it can), by the first filter that refuses it."""
    spec = pod.get("spec") or {}
    name = _name(node)
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(spec.get("tolerations") or [], {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return [R_UNSCHEDULABLE]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return [R_NODE_NAME]
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    if not matches_node_affinity(pod, node):
        return [R_NODE_AFFINITY]
    short = fit_reasons(pod, node, placed)
    if short:
        return short
    why = _spread_fails(pod, node, nodes, placed)
    if why:
        return [why]
    by_name = {_name(n): n for n in nodes}
    ns = _ns(pod)
    terms = _required(pod, "podAffinity")
    if terms:
        anywhere = any(_term_matches_pod(t, ns, other) for t in terms for other, _ in placed)
        for t in terms:
            ok = any(_same_domain(t["topologyKey"], by_name[on], node) and _term_matches_pod(t, ns, other)
                     for other, on in placed if on in by_name)
            if not ok:
                # the first Pod of a group that wants itself: allowed where the key exists, as the scheduler does
                if not anywhere and all(_term_matches_pod(x, ns, pod) for x in terms) and t["topologyKey"] in _labels(node):
                    continue
                return [R_AFFINITY]
    for t in _required(pod, "podAntiAffinity"):
        for other, on in placed:
            there = by_name.get(on)
            if there is not None and _same_domain(t["topologyKey"], there, node) and _term_matches_pod(t, ns, other):
                return [R_ANTI_AFFINITY]
    for other, on in placed:  # existing Pods' anti-affinity against this one
        there = by_name.get(on)
        if there is None:
            continue
        for t in _required(other, "podAntiAffinity"):
            if _same_domain(t["topologyKey"], there, node) and _term_matches_pod(t, _ns(other), pod):
                return [R_EXISTING_ANTI]
    return []


# -- scoring ----------------------------------------------------------------------------------------------------

def _least_allocated(pod: dict, node: dict, placed: list[tuple[dict, str]]) -> float:
    alloc = allocatable_of(node)
    scores = []
    for k, default in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
        cap = alloc.get(k, 0.0)
        if cap <= 0:
            continue
        want = requests_of(pod).get(k) or default
        used = sum((requests_of(p).get(k) or default) for p, n in placed if n == _name(node))
        scores.append(max(cap - used - want, 0.0) * 100.0 / cap)
    return sum(scores) / len(scores) if scores else 0.0


def _normalize(raw: dict[str, float], invert: bool = False) -> dict[str, float]:
    if not raw:
        return {}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo:
        return dict.fromkeys(raw, 0.0 if invert else (100.0 if hi > 0 else 0.0))
    return {k: 100.0 * ((hi - v) if invert else (v - lo)) / (hi - lo) for k, v in raw.items()}


def score_nodes(pod: dict, feasible: list[dict], nodes: list[dict], placed: list[tuple[dict, str]]) -> dict[str, float]:
    spec = pod.get("spec") or {}
    names = [_name(n) for n in feasible]
    by_name = {_name(n): n for n in nodes}
    total = {n: _least_allocated(pod, node, placed) for n, node in zip(names, feasible, strict=True)}
    prefs = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    if prefs:
        raw = {_name(n): float(sum(int(p.get("weight") or 0) for p in prefs if _node_term_matches(p.get("preference") or {}, n))) for n in feasible}
        for k, v in _normalize(raw).items():
            total[k] += 2 * v
    pa, paa = _preferred(pod, "podAffinity"), _preferred(pod, "podAntiAffinity")
    if pa or paa:
        raw = {}
        for node in feasible:
            s = 0.0
            for sign, terms in ((1, pa), (-1, paa)):
                for w, t in terms:
                    s += sign * w * sum(1 for other, on in placed if on in by_name and _same_domain(t["topologyKey"], by_name[on], node)
                                        and _term_matches_pod(t, _ns(pod), other))
            raw[_name(node)] = s
        for k, v in _normalize(raw).items():
            total[k] += 2 * v
    soft = [c for c in spec.get("topologySpreadConstraints") or [] if c.get("whenUnsatisfiable") == "ScheduleAnyway"]
    if soft:
        raw = {}
        for node in feasible:
            s = 0.0
            for c in soft:
                counts = _spread_counts(pod, c, nodes, placed)
                s += counts.get(_labels(node).get(c.get("topologyKey", ""), ""), 0)
            raw[_name(node)] = s
        for k, v in _normalize(raw, invert=True).items():
            total[k] += 2 * v
    return total


def unschedulable_message(total: int, reasons: dict[str, list[str]]) -> str:
    hist = Counter(r for rs in reasons.values() for r in rs)
    parts = sorted(f"{n} {r}" for r, n in hist.items())
    return f"0/{total} nodes are available: " + ", ".join(parts) + "." if parts else f"0/{total} nodes are available."


def schedule(pod: dict, nodes: list[dict], placed: list[tuple[dict, str]]) -> Decision:
    """The Node for ``pod`` among ``nodes``, given ``placed``: (pod, node name) of every non-terminal Pod
    already bound to one of them."""
    if not nodes:
        return Decision(None, "no nodes available to schedule pods")
    reasons: dict[str, list[str]] = {}
    feasible = []
    for n in nodes:
        why = filter_node(pod, n, nodes, placed)
        if why:
            reasons[_name(n)] = why
        else:
            feasible.append(n)
    if not feasible:
        return Decision(None, unschedulable_message(len(nodes), reasons), reasons)
    scores = score_nodes(pod, feasible, nodes, placed)
    best = sorted(scores, key=lambda k: (-round(scores[k], 6), k))[0]
    return Decision(best, "", reasons, scores)
