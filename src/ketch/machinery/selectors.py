"""Label and field selectors, parsed as Kubernetes parses them."""

from __future__ import annotations

import re
from collections.abc import Callable

from ketch.kinds.labels import selector_matches
from ketch.kinds.meta import get_path
from ketch.machinery.errors import bad_request

Pred = Callable[[dict], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split_top(s: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return [p for p in (x.strip() for x in out) if p]


def parse_label_selector(sel: str | None) -> Pred:
    if not sel:
        return lambda labels: True
    preds: list[Pred] = []
    for term in _split_top(sel):
        m = _EQ_RE.match(term)
        if m:
            k, op, v = m.groups()
            if op == "!=":
                preds.append(lambda lb, k=k, v=v: lb.get(k) != v)
            else:
                preds.append(lambda lb, k=k, v=v: lb.get(k) == v)
            continue
        m = _SET_RE.match(term)
        if m:
            neg, k, op, vals = m.groups()
            if op:
                values = {x.strip() for x in vals.split(",") if x.strip()}
                if op == "in":
                    preds.append(lambda lb, k=k, vs=values: k in lb and lb[k] in vs)
                else:
                    preds.append(lambda lb, k=k, vs=values: k not in lb or lb[k] not in vs)
            elif neg:
                preds.append(lambda lb, k=k: k not in lb)
            else:
                preds.append(lambda lb, k=k: k in lb)
            continue
        raise bad_request(f'unable to parse requirement: invalid label selector "{sel}"')
    return lambda labels: all(p(labels) for p in preds)


def equality_requirements(sel: str | None) -> dict[str, str]:
    """The ``key=value`` terms of a label selector (and ``key in (value)``): what the store can answer from
    its label index. The whole selector is still applied to what comes back."""
    out: dict[str, str] = {}
    for term in _split_top(sel or ""):
        m = _EQ_RE.match(term)
        if m and m.group(2) != "!=":
            out[m.group(1)] = m.group(3)
            continue
        m = _SET_RE.match(term)
        if m and m.group(3) == "in" and not m.group(1):
            values = {x.strip() for x in m.group(4).split(",") if x.strip()}
            if len(values) == 1:
                out[m.group(2)] = values.pop()
    return out


def label_matches(selector: dict | None, labels: dict) -> bool:
    """Match a structured LabelSelector (matchLabels / matchExpressions), as Services and Jobs use: a missing
    or ``{}`` selector selects nothing here (kinds/labels.py has the one matcher and both readings of empty)."""
    if not selector:
        return False
    return selector_matches(selector, labels, empty_matches_all=True)


# The field labels kube-apiserver supports per kind (every kind has metadata.name and metadata.namespace);
# any other field in a fieldSelector is a 400, as there, not a selector that silently matches nothing.
_EVENT_FIELDS = {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                 "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                 "reason", "reportingComponent", "source", "type"}
FIELD_LABELS: dict[tuple[str, str], set[str]] = {
    ("", "Pod"): {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
                  "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"},
    ("", "Event"): _EVENT_FIELDS,
    ("events.k8s.io", "Event"): {"regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "regarding.apiVersion",
                                 "regarding.resourceVersion", "regarding.fieldPath", "reason", "reportingController", "type"},
    ("", "Secret"): {"type"},
    ("", "Namespace"): {"status.phase"},
    ("", "Node"): {"spec.unschedulable"},
    ("", "Service"): {"spec.clusterIP", "spec.type"},
    ("batch", "Job"): {"status.successful"},
    ("apps", "ReplicaSet"): {"status.replicas"},
    ("", "ReplicationController"): {"status.replicas"},
    ("certificates.k8s.io", "CertificateSigningRequest"): {"spec.signerName"},
}


def field_labels(group: str, kind: str) -> set[str]:
    """The fields a fieldSelector may name for this kind."""
    return {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get((group, kind), set())


def parse_field_selector(sel: str | None, allowed: set[str] | None = None) -> Pred:
    if not sel:
        return lambda obj: True
    preds: list[Pred] = []
    for term in _split_top(sel):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f'invalid field selector: "{term}"')
        path, op, value = m.groups()
        if allowed is not None and path not in allowed:
            raise bad_request(f'field label not supported: {path} (supported: {", ".join(sorted(allowed))})')

        def get(obj: dict, path: str = path) -> str:
            v = get_path(obj, path)
            if v is None:
                return ""
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)

        if op == "!=":
            preds.append(lambda o, g=get, v=value: g(o) != v)
        else:
            preds.append(lambda o, g=get, v=value: g(o) == v)
    return lambda obj: all(p(obj) for p in preds)
