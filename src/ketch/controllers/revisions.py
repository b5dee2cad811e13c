"""ControllerRevisions: the template history of StatefulSets and DaemonSets, as Kubernetes keeps it.

A revision holds ``{"spec": {"template": {..., "$patch": "replace"}}}`` (a strategic merge patch that puts
the template back, which is what ``kubectl rollout undo`` applies), is named ``<owner>-<hash>`` and numbered;
going back to an earlier template renumbers its revision as the newest, and revisions beyond
``revisionHistoryLimit`` that no Pod uses are deleted, oldest first.
"""

from __future__ import annotations

import copy

from ketch.controllers.workload_pods import controlled_by, template_hash
from ketch.kinds.meta import owner_reference
from ketch.machinery.client import Client
from ketch.machinery.errors import StatusError

CR = ("apps/v1", "ControllerRevision")
HASH_LABEL = "controller-revision-hash"


def revision_data(owner: dict) -> dict:
    tmpl = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    tmpl["$patch"] = "replace"
    return {"spec": {"template": tmpl}}


def template_of(rev: dict) -> dict:
    t = copy.deepcopy(((rev.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


def revisions(client: Client, owner: dict) -> list[dict]:
    items = client.list(CR, owner["metadata"]["namespace"])
    return sorted((r for r in items if controlled_by(r, owner)), key=lambda r: int(r.get("revision", 0)))


def ensure_update_revision(client: Client, owner: dict, revs: list[dict]) -> tuple[dict, list[dict]]:
    """The revision of the owner's current template: found (and renumbered newest) or created."""
    data = revision_data(owner)
    top = max((int(r.get("revision", 0)) for r in revs), default=0)
    for r in revs:
        if r.get("data") == data:
            if int(r.get("revision", 0)) != top:
                new = copy.deepcopy(r)
                new["revision"] = top + 1
                r = client.update(new)
                revs = [x for x in revs if x["metadata"]["uid"] != r["metadata"]["uid"]] + [r]
            return r, revs
    md = owner["metadata"]
    h = template_hash(data)
    labels = dict(((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    labels[HASH_LABEL] = h
    rev = {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": f"{md['name']}-{h}", "namespace": md["namespace"], "labels": labels, "ownerReferences": [owner_reference(owner)]},
        "data": data, "revision": top + 1,
    }
    try:
        created = client.create(rev)
    except StatusError as e:
        if e.code != 409:
            raise
        created = client.get(CR, md["namespace"], rev["metadata"]["name"])
        if created is None:
            raise
    return created, [*revs, created]


def truncate_history(client: Client, owner: dict, revs: list[dict], in_use: set[str]) -> None:
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
    unused = [r for r in revs if r["metadata"]["name"] not in in_use]
    for r in unused[: max(0, len(unused) - limit)]:
        client.delete(CR, r["metadata"]["namespace"], r["metadata"]["name"])
