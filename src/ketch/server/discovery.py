"""Discovery documents: legacy (/api, /apis, /apis/g/v) and aggregated (apidiscovery.k8s.io/v2)."""

from __future__ import annotations

from typing import Any

from ketch.kinds.definitions import ResourceDefinition
from ketch.machinery.registry import Registry

AGG_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGG_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> str | None:
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in p and "g=apidiscovery.k8s.io" in p:
            if "v=v2beta1" in p:
                return AGG_V2BETA1
            if "v=v2" in p:
                return AGG_V2
    return None


def _subresources(rd: ResourceDefinition, version: str, extra: dict[tuple[str, str], Any]) -> list[tuple[str, list[str]]]:
    out = []
    v = rd.version(version)
    if v and v.status_subresource:
        out.append(("status", ["get", "patch", "update"]))
    if v and v.scale_subresource:
        out.append(("scale", ["get", "patch", "update"]))
    for (key, sub), _h in extra.items():
        if key == rd.key:
            out.append((sub, SUB_VERBS.get(sub, ["get"])))
    return out


# Verbs and response kinds of subresources served by components (what kubectl checks before using them:
# drain looks for pods/eviction of kind policy/v1 Eviction).
SUB_VERBS = {"exec": ["create", "get"], "attach": ["create", "get"], "portforward": ["create", "get"], "eviction": ["create"]}
SUB_KINDS = {"scale": ("autoscaling", "v1", "Scale"), "eviction": ("policy", "v1", "Eviction")}


def _sub_kind(rd: ResourceDefinition, group: str, version: str, sub: str) -> tuple[str, str, str]:
    return SUB_KINDS.get(sub, (group, version, rd.kind))


def resource_list(registry: Registry, group: str, version: str, extra: dict) -> dict:
    resources = []
    for rd in sorted(registry.in_group_version(group, version), key=lambda r: r.plural):
        r: dict[str, Any] = {
            "name": rd.plural,
            "singularName": rd.singular,
            "namespaced": rd.namespaced,
            "kind": rd.kind,
            "verbs": rd.verbs,
        }
        if rd.short_names:
            r["shortNames"] = rd.short_names
        if rd.categories:
            r["categories"] = rd.categories
        resources.append(r)
        for sub, verbs in _subresources(rd, version, extra):
            g, v, k = _sub_kind(rd, group, version, sub)
            entry = {"name": f"{rd.plural}/{sub}", "singularName": "", "namespaced": rd.namespaced, "kind": k, "verbs": verbs}
            if sub in SUB_KINDS:
                entry.update({"group": g, "version": v})
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def api_group(registry: Registry, group: str) -> dict | None:
    versions = registry.groups().get(group)
    if not versions:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}


def group_list(registry: Registry) -> dict:
    groups = [api_group(registry, g) for g in sorted(registry.groups()) if g]
    for g in groups:
        g.pop("kind", None)
        g.pop("apiVersion", None)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def aggregated(registry: Registry, core: bool, extra: dict, content_type: str) -> dict:
    api_version = "apidiscovery.k8s.io/v2beta1" if "v2beta1" in content_type else "apidiscovery.k8s.io/v2"
    items = []
    groups = registry.groups()
    names = [""] if core else sorted(g for g in groups if g)
    for g in names:
        if g not in groups:
            continue
        versions = []
        for v in groups[g]:
            resources = []
            for rd in sorted(registry.in_group_version(g, v), key=lambda r: r.plural):
                r: dict[str, Any] = {
                    "resource": rd.plural,
                    "responseKind": {"group": g, "version": v, "kind": rd.kind},
                    "scope": "Namespaced" if rd.namespaced else "Cluster",
                    "singularResource": rd.singular,
                    "verbs": rd.verbs,
                }
                if rd.short_names:
                    r["shortNames"] = rd.short_names
                if rd.categories:
                    r["categories"] = rd.categories
                subs = [
                    {"subresource": s, "responseKind": dict(zip(("group", "version", "kind"), _sub_kind(rd, g, v, s), strict=True)), "verbs": verbs}
                    for s, verbs in _subresources(rd, v, extra)
                ]
                if subs:
                    r["subresources"] = subs
                resources.append(r)
            versions.append({"version": v, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}
