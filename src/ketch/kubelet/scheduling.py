"""Choosing a Node for a Pod, as kube-scheduler's default plugins do: pure functions over Pod and Node dicts.

A kubelet that runs Pods on several Nodes (the Ray kubelet: one Node per Ray node) is also their scheduler.
``schedule(pod, nodes, placed)`` filters the Nodes, then scores those left, in kube-scheduler's order (what the
placed Pods add up to per Node and per topology domain is computed once per Pod scheduled, a ``Pass``):

- filters (the first that fails names the Node's reason): NodeUnschedulable (``spec.unschedulable``),
  NodeName, TaintToleration (NoSchedule/NoExecute taints the Pod does not tolerate: a NotReady Node's
  ``node.kubernetes.io/unreachable``), NodeAffinity (``nodeSelector`` and required node affinity:
  In/NotIn/Exists/DoesNotExist/Gt/Lt, matchFields on ``metadata.name``), NodeResourcesFit (requests of
  every resource, extended ones included, against allocatable minus what the Pods there hold),
  PodTopologySpread (``whenUnsatisfiable: DoNotSchedule`` with ``maxSkew``), InterPodAffinity (required
  pod affinity and anti-affinity over any ``topologyKey``, and existing Pods' anti-affinity);
- scores: least allocated (cpu and memory, counting a Pod without requests as 100m and 200Mi, as the
  scheduler does, so such Pods spread too), preferred node affinity, preferred pod (anti-)affinity,
  ``ScheduleAnyway`` topology spread; ties go to the Node whose name sorts first.

An unschedulable Pod gets kube-scheduler's message, e.g. ``0/3 nodes are available: 1 Insufficient cpu,
2 node(s) didn't match Pod's node affinity/selector.``. No Ray import here: tests/test_scheduling.py runs
it on plain dicts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ketch.kinds.labels import expression_matches, selector_matches
from ketch.kinds.resources import pod_requests, quantity_or_zero

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


def allocatable_of(node: dict) -> dict[str, float]:
    st = node.get("status") or {}
    return {k: quantity_or_zero(v) for k, v in (st.get("allocatable") or st.get("capacity") or {}).items()}


def requests_of(pod: dict) -> dict[str, float]:
    """Every resource the Pod asks for, extended ones too (kinds/resources.py ``pod_requests``: max(sum of
    containers, largest init container) plus ``spec.overhead``; a limit without a request is the request)."""
    return pod_requests(pod, every=True)


def _selects(sel: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector as pod affinity terms and topology spread constraints read it (metav1's
    LabelSelectorAsSelector): ``null`` matches nothing, ``{}`` every Pod (kinds/labels.py)."""
    return selector_matches(sel, labels, empty_matches_all=True)


def _expression(e: dict, labels: dict[str, str]) -> bool:
    """A NodeSelectorRequirement: LabelSelector's operators plus Gt and Lt (integers)."""
    op, vals = e.get("operator", ""), e.get("values") or []
    if op in ("Gt", "Lt"):
        k = e.get("key", "")
        if k not in labels or not vals:
            return False
        try:
            a, b = int(labels[k]), int(vals[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return expression_matches(e, labels)


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
    return _selects(term.get("labelSelector"), _labels(other))


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


# -- one scheduling pass: what the placed Pods add up to, computed once -----------------------------------------

class Pass:
    """What scheduling one Pod needs from the Nodes and the placed Pods, computed once (O(nodes + placed))
    rather than per Node (O(nodes x placed)): per-Node totals of what the Pods there hold, and, for the
    Pod's own terms, the topology domains its (anti-)affinity and spread constraints count. Each filter and
    score then looks its Node up here; the results are those of reading every placed Pod for every Node."""

    def __init__(self, pod: dict, nodes: list[dict], placed: list[tuple[dict, str]]) -> None:
        self.pod, self.nodes, self.placed = pod, nodes, placed
        self.ns = _ns(pod)
        self.req = requests_of(pod)
        self.by_name = {_name(n): n for n in nodes}
        self.used: dict[str, dict[str, float]] = {}  # node name -> resource -> what its Pods request ("pods": how many)
        self.score_used: dict[str, dict[str, float]] = {}  # node name -> cpu/memory, a Pod without requests as the defaults
        for p, on in placed:
            r = requests_of(p)
            used = self.used.setdefault(on, {"pods": 0.0})
            used["pods"] += 1
            for k, v in r.items():
                used[k] = used.get(k, 0.0) + v
            su = self.score_used.setdefault(on, {"cpu": 0.0, "memory": 0.0})
            for k, default in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
                su[k] += r.get(k) or default
        spec = pod.get("spec") or {}
        self.spread = [(c, self._spread_counts(c)) for c in spec.get("topologySpreadConstraints") or []]
        self.affinity = [(t, set(self._domain_counts(t))) for t in _required(pod, "podAffinity")]
        self.affinity_anywhere = any(_term_matches_pod(t, self.ns, other) for t, _ in self.affinity for other, _on in placed)
        self.affinity_self = all(_term_matches_pod(t, self.ns, pod) for t, _ in self.affinity)
        self.anti = [(t, set(self._domain_counts(t))) for t in _required(pod, "podAntiAffinity")]
        self.existing_anti: set[tuple[str, str]] = set()  # (topology key, value) where a placed Pod's anti-affinity refuses this Pod
        for other, on in placed:
            there = self.by_name.get(on)
            if there is None:
                continue
            for t in _required(other, "podAntiAffinity"):
                key = t["topologyKey"]
                if key in _labels(there) and _term_matches_pod(t, _ns(other), pod):
                    self.existing_anti.add((key, _labels(there)[key]))
        self.preferred = [(sign, w, t, self._domain_counts(t)) for sign, kind in ((1, "podAffinity"), (-1, "podAntiAffinity"))
                          for w, t in _preferred(pod, kind)]

    def _domain_counts(self, t: dict) -> Counter:
        """Placed Pods the term matches, per value of its topology key on their Nodes."""
        key, out = t["topologyKey"], Counter()
        for other, on in self.placed:
            there = self.by_name.get(on)
            if there is not None and key in _labels(there) and _term_matches_pod(t, self.ns, other):
                out[_labels(there)[key]] += 1
        return out

    def _spread_counts(self, c: dict) -> dict[str, int]:
        """Matching Pods per domain of ``c.topologyKey``, over the Nodes the Pod could go to by its node
        affinity (nodeAffinityPolicy Honor, the default) that carry the key."""
        key = c.get("topologyKey", "")
        eligible = {_name(n): n for n in self.nodes if key in _labels(n)
                    and (c.get("nodeAffinityPolicy") == "Ignore" or matches_node_affinity(self.pod, n))}
        counts: dict[str, int] = {_labels(n)[key]: 0 for n in eligible.values()}
        sel = c.get("labelSelector")
        for other, on in self.placed:
            n = eligible.get(on)
            if n is None or _ns(other) != self.ns or not _selects(sel, _labels(other)):
                continue
            counts[_labels(n)[key]] += 1
        return counts


def _in_domain(key: str, node: dict, domains: set[str] | Counter) -> bool:
    labels = _labels(node)
    return key in labels and labels[key] in domains


# -- topology spread -------------------------------------------------------------------------------------------

def _spread_fails(ps: Pass, node: dict) -> str | None:
    for c, counts in ps.spread:
        if c.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
            continue
        key = c.get("topologyKey", "")
        if key not in _labels(node):
            return R_SPREAD_LABEL
        lo = min(counts.values()) if counts else 0
        if int(c.get("minDomains") or 0) > len(counts):
            lo = 0
        me = 1 if _selects(c.get("labelSelector"), _labels(ps.pod)) else 0
        if counts.get(_labels(node)[key], 0) + me - lo > int(c.get("maxSkew") or 1):
            return R_SPREAD
    return None


# -- filtering ------------------------------------------------------------------------------------------------

def _fit(req: dict[str, float], node: dict, used: dict[str, float]) -> list[str]:
    alloc = allocatable_of(node)
    out = []
    if "pods" in alloc and used.get("pods", 0.0) + 1 > alloc["pods"]:
        out.append(R_TOO_MANY_PODS)
    for k, v in sorted(req.items()):
        if v > 0 and used.get(k, 0.0) + v > alloc.get(k, 0.0) + 1e-9:
            out.append(f"Insufficient {k}")
    return out


def fit_reasons(pod: dict, node: dict, placed: list[tuple[dict, str]]) -> list[str]:
    """``Insufficient <resource>`` for each request that does not fit into what is left on the Node."""
    name = _name(node)
    used: dict[str, float] = {"pods": 0.0}
    for p, on in placed:
        if on == name:
            used["pods"] += 1
            for k, v in requests_of(p).items():
                used[k] = used.get(k, 0.0) + v
    return _fit(requests_of(pod), node, used)


def filter_node(ps: Pass, node: dict) -> list[str]:
    """Why the pass's Pod cannot go to ``node`` (empty: it can), by the first filter that refuses it."""
    spec = ps.pod.get("spec") or {}
    name = _name(node)
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(spec.get("tolerations") or [], {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return [R_UNSCHEDULABLE]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return [R_NODE_NAME]
    taint = untolerated_taint(ps.pod, node)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    if not matches_node_affinity(ps.pod, node):
        return [R_NODE_AFFINITY]
    short = _fit(ps.req, node, ps.used.get(name) or {"pods": 0.0})
    if short:
        return short
    why = _spread_fails(ps, node)
    if why:
        return [why]
    for t, domains in ps.affinity:
        if not _in_domain(t["topologyKey"], node, domains):
            # the first Pod of a group that wants itself: allowed where the key exists, as the scheduler does
            if not ps.affinity_anywhere and ps.affinity_self and t["topologyKey"] in _labels(node):
                continue
            return [R_AFFINITY]
    for t, domains in ps.anti:
        if _in_domain(t["topologyKey"], node, domains):
            return [R_ANTI_AFFINITY]
    labels = _labels(node)
    if any(labels.get(key) == value and key in labels for key, value in ps.existing_anti):  # existing Pods' anti-affinity against this one
        return [R_EXISTING_ANTI]
    return []


# -- scoring ----------------------------------------------------------------------------------------------------

def _least_allocated(ps: Pass, node: dict) -> float:
    alloc = allocatable_of(node)
    used = ps.score_used.get(_name(node)) or {}
    scores = []
    for k, default in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)):
        cap = alloc.get(k, 0.0)
        if cap <= 0:
            continue
        want = ps.req.get(k) or default
        scores.append(max(cap - used.get(k, 0.0) - want, 0.0) * 100.0 / cap)
    return sum(scores) / len(scores) if scores else 0.0


def _normalize(raw: dict[str, float], invert: bool = False) -> dict[str, float]:
    if not raw:
        return {}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo:
        return dict.fromkeys(raw, 0.0 if invert else (100.0 if hi > 0 else 0.0))
    return {k: 100.0 * ((hi - v) if invert else (v - lo)) / (hi - lo) for k, v in raw.items()}


def score_nodes(ps: Pass, feasible: list[dict]) -> dict[str, float]:
    spec = ps.pod.get("spec") or {}
    names = [_name(n) for n in feasible]
    total = {n: _least_allocated(ps, node) for n, node in zip(names, feasible, strict=True)}
    prefs = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    if prefs:
        raw = {_name(n): float(sum(int(p.get("weight") or 0) for p in prefs if _node_term_matches(p.get("preference") or {}, n))) for n in feasible}
        for k, v in _normalize(raw).items():
            total[k] += 2 * v
    if ps.preferred:
        raw = {}
        for node in feasible:
            s = 0.0
            labels = _labels(node)
            for sign, w, t, counts in ps.preferred:
                key = t["topologyKey"]
                s += sign * w * (counts[labels[key]] if key in labels else 0)
            raw[_name(node)] = s
        for k, v in _normalize(raw).items():
            total[k] += 2 * v
    soft = [counted for counted in ps.spread if counted[0].get("whenUnsatisfiable") == "ScheduleAnyway"]
    if soft:
        raw = {}
        for node in feasible:
            s = 0.0
            for c, counts in soft:
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
    ps = Pass(pod, nodes, placed)
    reasons: dict[str, list[str]] = {}
    feasible = []
    for n in nodes:
        why = filter_node(ps, n)
        if why:
            reasons[_name(n)] = why
        else:
            feasible.append(n)
    if not feasible:
        return Decision(None, unschedulable_message(len(nodes), reasons), reasons)
    scores = score_nodes(ps, feasible)
    best = sorted(scores, key=lambda k: (-round(scores[k], 6), k))[0]
    return Decision(best, "", reasons, scores)
