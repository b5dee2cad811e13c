"""PodDefaults applied at Pod admission, as Kubeflow's admission webhook applies them.

A Pod being created gets every PodDefault of its namespace whose ``spec.selector`` matches the Pod's labels
(an empty selector matches every Pod, as a LabelSelector does): env, envFrom and volumeMounts are added to
each container, volumes, tolerations, imagePullSecrets, init containers and sidecars to the Pod, labels
and annotations to its metadata, and serviceAccountName / automountServiceAccountToken / command / args
set. Kubeflow refuses a Pod whose own entries conflict with a PodDefault's; ketch keeps the Pod's own
entry instead (the Pod's author wins) and merges the rest. Each applied PodDefault is recorded in the
annotation ``poddefault.admission.kubeflow.org/poddefault-<name>: <resourceVersion>``, and a Pod that
already carries it is left alone (the webhook is idempotent). Only creates are mutated: Pods are immutable.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

from ketch.kinds.definitions import FieldError
from ketch.machinery.selectors import label_matches
from ketch.runtime import Controller, Key, Result

log = logging.getLogger(__name__)

GROUP, KIND, API_VERSION = "kubeflow.org", "PodDefault", "kubeflow.org/v1alpha1"
APPLIED = "poddefault.admission.kubeflow.org/poddefault-"


def matches(pd: dict, labels: dict) -> bool:
    sel = (pd.get("spec") or {}).get("selector")
    if sel is not None and not (sel.get("matchLabels") or sel.get("matchExpressions")):
        return True  # an empty LabelSelector selects everything
    return label_matches(sel, labels)


def _merge_named(own: list, extra: list, key: str = "name") -> list:
    """Own entries first; an extra entry is added unless one with the same key is already there."""
    have = {e.get(key) for e in own if isinstance(e, dict)}
    out = list(own)
    for e in extra or []:
        if e.get(key) not in have:
            out.append(copy.deepcopy(e))
            have.add(e.get(key))
    return out


def _merge_equal(own: list, extra: list) -> list:
    out = list(own)
    for e in extra or []:
        if e not in out:
            out.append(copy.deepcopy(e))
    return out


def apply(pod: dict, pds: list[dict]) -> list[str]:
    """Apply the matching PodDefaults to ``pod`` in place; return the names applied."""
    md = pod.setdefault("metadata", {})
    labels = md.get("labels") or {}
    ann = md.get("annotations") or {}
    chosen = [pd for pd in sorted(pds, key=lambda p: p["metadata"]["name"])
              if matches(pd, labels) and APPLIED + pd["metadata"]["name"] not in ann]
    if not chosen:
        return []
    spec = pod.setdefault("spec", {})
    for pd in chosen:
        ps = pd.get("spec") or {}
        for c in spec.get("containers") or []:
            if ps.get("env"):
                c["env"] = _merge_named(c.get("env") or [], ps["env"])
            if ps.get("envFrom"):
                c["envFrom"] = _merge_equal(c.get("envFrom") or [], ps["envFrom"])
            if ps.get("volumeMounts"):
                c["volumeMounts"] = _merge_named(c.get("volumeMounts") or [], ps["volumeMounts"], "mountPath")
        if ps.get("command") or ps.get("args"):
            first = (spec.get("containers") or [{}])[0]
            if ps.get("command") and not first.get("command"):
                first["command"] = list(ps["command"])
            if ps.get("args") and not first.get("args"):
                first["args"] = list(ps["args"])
        if ps.get("volumes"):
            spec["volumes"] = _merge_named(spec.get("volumes") or [], ps["volumes"])
        if ps.get("tolerations"):
            spec["tolerations"] = _merge_equal(spec.get("tolerations") or [], ps["tolerations"])
        if ps.get("imagePullSecrets"):
            spec["imagePullSecrets"] = _merge_named(spec.get("imagePullSecrets") or [], ps["imagePullSecrets"])
        if ps.get("initContainers"):
            spec["initContainers"] = _merge_named(spec.get("initContainers") or [], ps["initContainers"])
        if ps.get("sidecars"):
            spec["containers"] = _merge_named(spec.get("containers") or [], ps["sidecars"])
        if ps.get("serviceAccountName") and spec.get("serviceAccountName") in (None, "", "default"):
            spec["serviceAccountName"] = ps["serviceAccountName"]
        if "automountServiceAccountToken" in ps and "automountServiceAccountToken" not in spec:
            spec["automountServiceAccountToken"] = ps["automountServiceAccountToken"]
        if ps.get("labels"):
            md["labels"] = {**ps["labels"], **(md.get("labels") or {})}
        md["annotations"] = {**(ps.get("annotations") or {}), **(md.get("annotations") or {}),
                             APPLIED + pd["metadata"]["name"]: str(pd["metadata"].get("resourceVersion", ""))}
    return [pd["metadata"]["name"] for pd in chosen]


class PodDefaultCache(Controller):
    """Every PodDefault, kept in an informer by a list-then-watch, so the admission hook reads memory rather
    than the store on each Pod create (kube-apiserver's admission plugins read informers the same way).
    It reconciles nothing: the watch's events only update the cache. Until the first list has arrived
    (and again while re-listing after a lost watch), ``cached`` reads the API instead. A PodDefault
    written just before a Pod is in the cache already: the store publishes the change on commit and the
    watch task runs on the same event loop before the next request is read."""

    name = "poddefault-cache"
    kind = (API_VERSION, KIND)
    cache_primary = True
    workers = 1

    def __init__(self, api) -> None:
        super().__init__(api)
        self.watches[0].mapper = lambda o: []  # cache only: no key to reconcile

    async def reconcile(self, key: Key) -> Result | None:  # pragma: no cover - nothing is ever queued
        return None

    def in_namespace(self, ns: str) -> list[dict]:
        return self.cached(self.kind, ns)


def admitter(api, cache: PodDefaultCache | None = None) -> Callable[[dict, dict | None], list[FieldError]]:
    """The Pod admission hook: on create, apply the namespace's matching PodDefaults (no errors of its own),
    read from ``cache`` when there is one, else from the store."""

    def admit(pod: dict, old: dict | None) -> list[FieldError]:
        if old is not None:
            return []
        rd = api.registry.by_kind(API_VERSION, KIND)
        ns = (pod.get("metadata") or {}).get("namespace")
        if rd is None or not ns:
            return []
        pds = cache.in_namespace(ns) if cache is not None else api.list(rd, ns).get("items") or []
        if pds:
            applied = apply(pod, pds)
            if applied:
                log.debug("pod %s/%s: applied PodDefaults %s", ns, pod["metadata"].get("name"), applied)
        return []

    return admit
