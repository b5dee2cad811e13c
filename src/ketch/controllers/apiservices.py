"""Local APIServices: one ``apiregistration.k8s.io/v1`` APIService per group version ketch serves
(``v1.``, ``v1.apps``, ``v1.kubeflow.org``...), Available and without a service, as kube-apiserver lists
its own groups; kept in step with the registry as CRDs come and go (checked when the registry's generation
moves, at most every second). APIServices users create are left alone."""

from __future__ import annotations

import asyncio
import logging

from ketch.kinds.meta import now
from ketch.machinery.client import Client
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError

log = logging.getLogger(__name__)
REF = ("apiregistration.k8s.io/v1", "APIService")
LOCAL = "ketch.dev/local-apiservice"


def _wanted(ctx: Context) -> dict[str, tuple[str, str]]:
    out = {}
    for group, versions in ctx.api.registry.groups().items():
        for v in versions:
            out[f"{v}.{group}"] = (group, v)
    return out


def sync(ctx: Context, client: Client) -> None:
    want = _wanted(ctx)
    have = {o["metadata"]["name"]: o for o in client.list(REF) if (o["metadata"].get("labels") or {}).get(LOCAL)}
    for name, (group, version) in want.items():
        if name in have:
            continue
        obj = {"apiVersion": REF[0], "kind": REF[1], "metadata": {"name": name, "labels": {LOCAL: "true", "kube-aggregator.kubernetes.io/automanaged": "onstart"}},
               "spec": {"group": group, "version": version, "groupPriorityMinimum": 18000 if not group else 1000, "versionPriority": 15}}
        try:
            created = client.create(obj)
        except StatusError as e:
            if e.code != 409:
                raise
            continue
        client.patch_status(created, {"conditions": [{"type": "Available", "status": "True", "reason": "Local", "message": "Local APIServices are always available", "lastTransitionTime": now()}]})
    for name, o in have.items():
        if name not in want:
            client.delete(REF, "", o["metadata"]["name"])


def local_apiservices(ctx: Context):  # noqa: ANN201
    client = Client(ctx.api, "ketch-apiservices")

    async def run() -> None:
        seen = -1
        while True:
            gen = ctx.api.registry.generation
            if gen != seen:
                try:
                    sync(ctx, client)
                    seen = gen
                except Exception:  # noqa: BLE001 - retried on the next tick
                    log.exception("syncing local APIServices failed")
            await asyncio.sleep(1.0)

    return run


TASKS = [local_apiservices]
