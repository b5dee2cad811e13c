"""CustomResourceDefinitions: registering a CRD's kind on write, and its Established status.

CRDs live in the store like any object; this hook keeps the registry in step, and at start-up every stored
CRD is registered again, so a restarted server serves the same kinds.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import orjson

from ketch.kinds.builtin.apiextensions import to_resource_definition
from ketch.kinds.definitions import ResourceDefinition
from ketch.kinds.meta import set_condition
from ketch.store.base import Change

if TYPE_CHECKING:
    from ketch.machinery.api import Api

log = logging.getLogger(__name__)
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"


def install(api: Api) -> None:
    api.add_hook(CRD_KEY, _on_crd)
    built: dict[str, bytes] = {}  # kind key -> the CRD spec its registered definition was built from
    api.store.subscribe(lambda ch: _follow(api, ch, built))
    items, _ = api.store.list(CRD_KEY)
    for crd in items:
        if crd["metadata"].get("deletionTimestamp"):
            continue
        try:
            rd = to_resource_definition(crd)
            api.registry.add(rd)
            built[rd.key] = orjson.dumps(crd["spec"], option=orjson.OPT_SORT_KEYS)
        except Exception:
            log.exception("cannot register stored CRD %s", crd["metadata"]["name"])


def _follow(api: Api, ch: Change, built: dict[str, bytes]) -> None:
    """Serve (or stop serving) a CRD's kind whoever wrote it: with several ketch processes on one database
    (store/changefeed.py) a CRD created through another one reaches this one only as a store change. The
    writer's hook (below) also sets the CRD's status and, on deletion, removes its objects; here the
    registry just follows."""
    if ch.key != CRD_KEY:
        return
    crd = ch.obj
    try:
        key = f"{crd['spec']['group']}/{crd['spec']['names']['plural']}"
        existing = api.registry.by_key(key)
        if existing is not None and existing.builtin:
            return
        if ch.type == "DELETED" or crd["metadata"].get("deletionTimestamp"):
            built.pop(key, None)
            if existing is not None:
                api.registry.remove(key)
            return
        spec = orjson.dumps(crd["spec"], option=orjson.OPT_SORT_KEYS)
        if existing is None or built.get(key) != spec:  # re-built only when the CRD's spec changed
            api.registry.add(to_resource_definition(crd))
            built[key] = spec
    except Exception:
        log.exception("cannot follow CRD %s", crd.get("metadata", {}).get("name"))


def _on_crd(api: Api, rd: ResourceDefinition, typ: str, crd: dict) -> None:
    if typ == "DELETED" or crd["metadata"].get("deletionTimestamp"):
        newrd = to_resource_definition(crd)
        api.registry.remove(newrd.key)
        # Deleting a CRD deletes every object of its kind, as the apiserver's cleanup finalizer does.
        items, _ = api.store.list(newrd.key)
        for o in items:
            md = o["metadata"]
            try:
                api.store.delete(newrd.key, md.get("namespace", ""), md["name"])
            except Exception:
                pass
        return
    existing = api.registry.by_key(f"{crd['spec']['group']}/{crd['spec']['names']['plural']}")
    newrd = to_resource_definition(crd)
    if existing is not None and existing.builtin:
        return  # never let a CRD shadow a built-in kind
    api.registry.add(newrd)
    st = copy.deepcopy(crd.get("status") or {})
    names = crd["spec"]["names"]
    st["acceptedNames"] = {k: v for k, v in names.items() if k in ("kind", "listKind", "plural", "singular", "shortNames", "categories")}
    st["storedVersions"] = sorted({v["name"] for v in crd["spec"].get("versions") or [] if v.get("storage")} | set(st.get("storedVersions") or []))
    changed = set_condition(st, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
    changed = set_condition(st, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted") or changed
    if changed or st != crd.get("status"):
        new = copy.deepcopy(crd)
        new["status"] = st
        try:
            api.store.update(CRD_KEY, new, int(crd["metadata"]["resourceVersion"]))
        except Exception:
            log.debug("CRD status update raced; it will be set on the next write")


def install_manifests(api: Api, paths: list) -> list[str]:
    """Create or update the CRDs in YAML files: how Kubeflow's kinds are installed at start-up.

    Uses the same path as ``kubectl apply`` of a CRD, so built-in Kubeflow kinds get no special treatment.
    """
    import yaml

    from ketch.machinery.api import Options

    rd = api.registry.by_key(CRD_KEY)
    assert rd is not None
    names = []
    for p in paths:
        with open(p) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            cur = api.store.get(CRD_KEY, "", name)
            if cur is None:
                api.create(rd, "", doc, "v1", Options(field_manager="ketch"))
            elif cur.get("spec") != _defaulted_spec(rd, doc):
                new = copy.deepcopy(doc)
                new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                api.update(rd, "", name, new, "v1", None, Options(field_manager="ketch"))
            names.append(name)
    return names


def _defaulted_spec(rd: ResourceDefinition, doc: dict) -> dict:
    d = copy.deepcopy(doc)
    if rd.defaulter:
        rd.defaulter(d)
    return d.get("spec") or {}
