"""policy/v1 PodDisruptionBudgets: the disruption controller that keeps their status, and the
``pods/eviction`` subresource that honours them (what ``kubectl drain`` uses).

Status, as Kubernetes' disruption controller computes it: ``expectedPods`` (the replicas of the Pods'
controllers, through their scale; bare Pods count themselves), ``currentHealthy`` (Ready Pods not recorded
as just evicted), ``desiredHealthy`` (minAvailable, or expected minus maxUnavailable; percentages of
expected, rounded up), ``disruptionsAllowed`` and the ``DisruptionAllowed`` condition.

An eviction of a Pod covered by a budget with no disruption left is refused with 429 TooManyRequests
(reason DisruptionBudget), as kube-apiserver does; otherwise the budget's ``disruptionsAllowed`` is taken
down by one and the Pod recorded in ``disruptedPods`` in the same guarded status write (two evictions
racing cannot both spend the last disruption), and the Pod is deleted with the eviction's deleteOptions.
A Pod that is not Ready may be evicted when its budget is met or ``unhealthyPodEvictionPolicy`` is
AlwaysAllow; a finished Pod always may.
"""

from __future__ import annotations

import copy
import datetime as dt
import math

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ketch.controllers.workload_pods import POD, active, ready
from ketch.kinds.definitions import ResourceDefinition
from ketch.kinds.labels import selector_matches
from ketch.kinds.meta import now, parse_time, set_condition
from ketch.machinery import scale
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError, bad_request
from ketch.runtime import Controller, Key, Result, Watch, key_of

PDB = ("policy/v1", "PodDisruptionBudget")
DISRUPTED_TTL = 120.0  # seconds an evicted Pod counts as disrupted if it has not gone by then


def _resolve(v: object, total: int) -> int:
    if isinstance(v, str) and v.endswith("%"):
        return math.ceil(int(v[:-1]) * total / 100)
    return int(v or 0)


def _selects(pdb: dict, pod: dict) -> bool:
    sel = (pdb.get("spec") or {}).get("selector")
    # policy/v1: no selector selects nothing, an empty one ({}) every Pod of the namespace
    return selector_matches(sel, pod["metadata"].get("labels") or {}, empty_matches_all=True)


class DisruptionController(Controller):
    name = "disruption"
    kind = PDB
    cache_primary = True

    def extra_watches(self) -> list[Watch]:
        def to_budgets(pod: dict) -> list[Key]:
            ns = pod["metadata"].get("namespace")
            return [key_of(b) for b in self.cached(PDB, ns) if _selects(b, pod)]

        return [Watch(POD, to_budgets, lambda old, new: old is None or ready(old) != ready(new) or active(old) != active(new))]

    def _expected(self, pods: list[dict]) -> int:
        seen: dict[str, int] = {}
        bare = 0
        for p in pods:
            owner = next((o for o in p["metadata"].get("ownerReferences") or [] if o.get("controller")), None)
            if owner is None:
                bare += 1
                continue
            if owner.get("uid") in seen:
                continue
            try:
                rd = self.api.rd(owner.get("apiVersion", ""), owner.get("kind", ""))
                n = scale.get_scale(self.api, rd, p["metadata"]["namespace"], owner["name"])["spec"]["replicas"]
            except StatusError:  # no scale subresource (a Job, a custom kind): its Pods count themselves
                n = sum(1 for q in pods if any(o.get("uid") == owner.get("uid") for o in q["metadata"].get("ownerReferences") or []))
            seen[owner.get("uid", "")] = n
        return bare + sum(seen.values())

    async def reconcile(self, key: Key) -> Result | None:
        pdb = self.get(key)
        if pdb is None:
            return None
        spec = pdb.get("spec") or {}
        pods = [p for p in self.client.list(POD, key.namespace) if active(p) and _selects(pdb, p)]
        st = copy.deepcopy(pdb.get("status") or {})
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=DISRUPTED_TTL)
        names = {p["metadata"]["name"] for p in pods}
        disrupted = {n: t for n, t in (st.get("disruptedPods") or {}).items() if n in names and (parse_time(t) or cutoff) > cutoff}
        expected = self._expected(pods)
        healthy = sum(1 for p in pods if ready(p) and p["metadata"]["name"] not in disrupted)
        if "maxUnavailable" in spec:
            desired = max(0, expected - _resolve(spec["maxUnavailable"], expected))
        else:
            desired = _resolve(spec.get("minAvailable", 1), expected)
        allowed = max(0, healthy - desired)
        st.update({"expectedPods": expected, "currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed,
                   "observedGeneration": pdb["metadata"].get("generation", 1)})
        if disrupted:
            st["disruptedPods"] = disrupted
        else:
            st.pop("disruptedPods", None)
        if allowed > 0:
            set_condition(st, "DisruptionAllowed", "True", "SufficientPods", "")
        else:
            set_condition(st, "DisruptionAllowed", "False", "InsufficientPods", "")
        for c in st["conditions"]:
            c.pop("lastUpdateTime", None)
            c["observedGeneration"] = st["observedGeneration"]
        if st != (pdb.get("status") or {}):
            self.update_status({**pdb, "status": st})
        return Result(requeue_after=DISRUPTED_TTL / 2) if disrupted else None


CONTROLLERS = [DisruptionController]


def _too_many(name: str, message: str) -> StatusError:
    return StatusError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                       {"causes": [{"reason": "DisruptionBudget", "message": message}]})


def eviction_handler(ctx: Context):  # noqa: ANN201
    api = ctx.api

    async def handler(request: Request, rd: ResourceDefinition, namespace: str, name: str) -> Response:
        if request.method != "POST":
            raise StatusError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as e:
            raise bad_request(f"the body of the request was in an unknown format: {e}") from None
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise bad_request("the body of an eviction must be a policy/v1 Eviction")
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise bad_request(f"name in URL does not match name in Eviction object: {body['metadata']['name']} != {name}")
        opts = body.get("deleteOptions") or {}
        pod = api.get(rd, namespace, name)
        pdb_rd = api.rd(*PDB)
        if active(pod):
            budgets = [b for b in api.list(pdb_rd, namespace)["items"] if _selects(b, pod)]
            if len(budgets) > 1:
                raise StatusError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")
            if budgets:
                _spend(api, pdb_rd, budgets[0], pod)
        api.delete(rd, namespace, name, opts.get("propagationPolicy"), opts.get("gracePeriodSeconds"), opts.get("preconditions"))
        return Response(orjson.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}), 201, media_type="application/json")

    return handler


def _spend(api, pdb_rd: ResourceDefinition, pdb: dict, pod: dict) -> None:  # noqa: ANN001
    """Take one disruption from the budget, or refuse the eviction; a lost race re-reads and retries."""
    for _ in range(5):
        st = pdb.get("status") or {}
        spec = pdb.get("spec") or {}
        name = pdb["metadata"]["name"]
        if not ready(pod):
            policy = spec.get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
            if policy == "AlwaysAllow" or int(st.get("currentHealthy") or 0) >= int(st.get("desiredHealthy") or 0):
                return
        if int(st.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation", 1)):
            raise _too_many(name, f"The disruption budget {name} is still being processed by the server.")
        if int(st.get("disruptionsAllowed") or 0) <= 0:
            raise _too_many(name, f"The disruption budget {name} needs {st.get('desiredHealthy', 0)} healthy pods and has {st.get('currentHealthy', 0)} currently")
        new = copy.deepcopy(pdb)
        ns = new.setdefault("status", {})
        ns["disruptionsAllowed"] = int(st["disruptionsAllowed"]) - 1
        ns.setdefault("disruptedPods", {})[pod["metadata"]["name"]] = now()
        try:
            api.update(pdb_rd, pdb["metadata"]["namespace"], name, new, None, "status")
            return
        except StatusError as e:
            if e.code != 409:
                raise
            pdb = api.get(pdb_rd, pdb["metadata"]["namespace"], name)
    raise StatusError(429, "TooManyRequests", "the disruption budget is being updated by many evictions; try again")


def register(ctx: Context) -> None:
    ctx.services.setdefault("subresources", {})[("/pods", "eviction")] = eviction_handler(ctx)
