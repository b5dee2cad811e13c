"""The ``scale`` subresource: an ``autoscaling/v1`` Scale view of any kind that declares one (Deployments,
ReplicaSets, StatefulSets, ReplicationControllers, and CRDs with ``subresources.scale``).

Reading builds the Scale from the paths the kind names (specReplicasPath, statusReplicasPath,
labelSelectorPath); writing sets only the replicas path of the parent, through the same update path as
any write (so the parent's resourceVersion guards it and its generation moves). ``kubectl scale`` and the
HorizontalPodAutoscaler both go through here.
"""

from __future__ import annotations

from typing import Any

from ketch.kinds.definitions import ResourceDefinition
from ketch.kinds.meta import selector_string
from ketch.machinery import errors
from ketch.machinery.api import DEFAULT, Api, Options
from ketch.machinery.errors import bad_request
from ketch.machinery.jsoncopy import clone
from ketch.machinery.patch import JSON, MERGE, STRATEGIC, json_patch, merge_patch, strategic_merge_patch


def _steps(path: str) -> list[str]:
    return [p for p in path.strip().lstrip(".").split(".") if p]


def _get(obj: Any, path: str) -> Any:
    for p in _steps(path):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def _set(obj: dict, path: str, value: Any) -> None:
    steps = _steps(path)
    for p in steps[:-1]:
        obj = obj.setdefault(p, {})
    obj[steps[-1]] = value


def scale_spec(rd: ResourceDefinition, version: str) -> dict:
    v = rd.version(version)
    if v is None or not v.scale_subresource:
        raise errors.no_resource(f"{rd.plural}/scale")
    return v.scale_subresource


def to_scale(rd: ResourceDefinition, version: str, obj: dict) -> dict:
    sp = scale_spec(rd, version)
    md = obj["metadata"]
    status: dict[str, Any] = {"replicas": int(_get(obj, sp.get("statusReplicasPath", "")) or 0)}
    sel = _get(obj, sp["labelSelectorPath"]) if sp.get("labelSelectorPath") else None
    if isinstance(sel, dict):  # a LabelSelector (apps/v1) or a plain map (ReplicationController)
        sel = selector_string(sel if ("matchLabels" in sel or "matchExpressions" in sel) else {"matchLabels": sel})
    if sel:
        status["selector"] = sel
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
        "spec": {"replicas": int(_get(obj, sp["specReplicasPath"]) or 0)},
        "status": status,
    }


def get_scale(api: Api, rd: ResourceDefinition, ns: str, name: str, version: str | None = None) -> dict:
    version = version or rd.storage_version
    return to_scale(rd, version, api.get(rd, ns, name, version))


def update_scale(api: Api, rd: ResourceDefinition, ns: str, name: str, body: Any, version: str | None = None, opts: Options = DEFAULT) -> dict:
    """Set the parent's replicas from a Scale; a resourceVersion in the Scale must match the parent's."""
    version = version or rd.storage_version
    sp = scale_spec(rd, version)
    if not isinstance(body, dict):
        raise bad_request("the body of the request was in an unknown format")
    if body.get("kind") not in (None, "Scale"):
        raise bad_request(f'Object \'Kind\' is "{body.get("kind")}", expected "Scale"')
    replicas = (body.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.StatusError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0',
                                 {"name": name, "group": "autoscaling", "kind": "Scale", "causes": [{"reason": "FieldValueInvalid", "message": f"Invalid value: {replicas}: must be greater than or equal to 0", "field": "spec.replicas"}]})
    cur = api.get(rd, ns, name, version)
    rv = (body.get("metadata") or {}).get("resourceVersion")
    if rv and str(rv) != cur["metadata"]["resourceVersion"]:
        raise errors.conflict(rd, name)
    new = clone(cur)
    _set(new, sp["specReplicasPath"], replicas)
    out = api.update(rd, ns, name, new, version, None, opts)
    return to_scale(rd, version, out)


def patch_scale(api: Api, rd: ResourceDefinition, ns: str, name: str, patch_type: str, patch: Any, version: str | None = None, opts: Options = DEFAULT) -> dict:
    """A patch of the Scale object (what ``kubectl scale`` sends), applied then written as an update."""
    version = version or rd.storage_version
    cur = get_scale(api, rd, ns, name, version)
    ctype = patch_type.split(";")[0].strip()
    if ctype == MERGE:
        new = merge_patch(cur, patch)
    elif ctype == JSON:
        new = json_patch(cur, patch)
    elif ctype == STRATEGIC:
        new = strategic_merge_patch(cur, patch, {})
    else:
        raise errors.unsupported_media(f"the body of the request was in an unknown format - accepted media types include: {JSON}, {MERGE}, {STRATEGIC}")
    pinned = isinstance(patch, dict) and ((patch.get("metadata") or {}).get("resourceVersion"))
    if isinstance(new, dict) and not pinned:  # only a patch that names a resourceVersion is conditional
        new.setdefault("metadata", {}).pop("resourceVersion", None)
    return update_scale(api, rd, ns, name, new, version, opts)
