"""The InferenceService controller: revisions, replicas (Pods running the model server), traffic, status.

Per component (predictor, then transformer and explainer) one reconcile:
1. the component's spec is normalised (per-framework form -> ``model``) and hashed; a hash not yet seen as
   the latest revision becomes a new revision, a ConfigMap ``{isvc}-{component}-0000N`` that keeps that
   revision's spec (so its Pods can be recreated after the spec moved on) and what was observed of it
   (``serving.ketch.io/ready`` once a replica answered, ``serving.ketch.io/failed`` with the reason);
2. the traffic split follows KServe's Knative mode: 100 % to the latest ready revision, or
   ``canaryTrafficPercent`` to it and the rest to the last rolled-out revision; a revision that is not
   ready (or failed) gets none, so a broken rollout keeps serving from the previous one;
3. each revision with traffic (and the latest, to prove itself) gets Pods, as many as the autoscaler
   recommends from the gateway's measurements (concurrency or rps against ``scaleTarget``, clamped to
   ``minReplicas``..``maxReplicas``; zero after a quiet grace period when ``minReplicas: 0``);
4. ready replicas are found by asking each Pod's model server, the routing table is handed to the
   gateway, and status (url, conditions, components, traffic, observedGeneration) is written.
Everything it needs is read from the API each time (the rollout history is in status, as in KServe), so
a restarted ketch picks up where it left off.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import os
import time
from typing import Any

import httpx
import orjson

from ketch import storage
from ketch.kinds.meta import generate_suffix, owner_reference, set_condition
from ketch.machinery.errors import StatusError
from ketch.runtime.controller import Controller, Key, Result
from ketch.runtime.ports import free_port
from ketch.serving import payloads, raw, runtimes, storagecheck
from ketch.serving.payloads import SCHEME as PAYLOADS
from ketch.serving.router import Route, Router, Stats, Target
from ketch.serving.spec import (
    A_GRPC_PORT,
    A_PORT,
    L_COMP,
    L_ISVC,
    POD,
    SpecError,
    canaries,
    components,
    pod_scheduling,
    revision_hash,
)

log = logging.getLogger(__name__)
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
CM = ("v1", "ConfigMap")
L_REV = "serving.knative.dev/revision"
A_READY = "serving.ketch.io/ready"
A_FAILED = "serving.ketch.io/failed"
# "false" keeps an HTTP sink's deliveries in the model server's own process; by default, with more than
# one core, they run in a logger agent process beside it, as KServe's agent sidecar does
A_LOGGER_AGENT = "serving.ketch.io/logger-agent"
UNLIMITED = 10  # maxReplicas 0 means "no limit"; on one machine, this many
STABLE_WINDOW = float(os.environ.get("KETCH_SERVING_STABLE_WINDOW", "10"))


class StorageUnavailable(SpecError):
    """The storageUri's scheme cannot be fetched here (a library is missing); the message says what to install."""


def rev_number(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


class InferenceServiceController(raw.RawDeploymentMode, Controller):
    name = "inferenceservice"
    kind = ISVC
    owns = [POD, CM, raw.DEPLOY, raw.SVC, raw.HPA]
    needs_context = True
    workers = 4

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx.api)
        self.ctx = ctx
        self.router: Router = ctx.services["serving-router"]
        self.router.on_demand = lambda ns, name: self.queue.add(Key(ns, name))
        self.base_url = ctx.settings.url
        self.home = str(ctx.settings.home)
        self.http = httpx.AsyncClient(timeout=1.0)
        self.store_secrets = storage.Secrets(self.client)

    # -- reconcile -----------------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result | None:
        isvc = self.get(key)
        if isvc is None or isvc["metadata"].get("deletionTimestamp"):
            self.router.remove(key.namespace, key.name)
            return None
        old = isvc.get("status") or {}
        status = copy.deepcopy(old)
        status["observedGeneration"] = isvc["metadata"].get("generation", 1)
        try:
            comps = components(isvc)
            canary_list = canaries(isvc, comps["predictor"])
        except SpecError as e:
            return self._invalid(isvc, status, "InvalidSpec", str(e))
        if raw.is_raw(isvc):
            return await self._reconcile_raw(isvc, key, status, old, comps)
        if self.owned(raw.DEPLOY, isvc):
            self.remove_raw(isvc, set())  # switched back from RawDeployment
        route = Route(key.namespace, key.name, entry="transformer" if "transformer" in comps else "predictor",
                      timeout=float(comps["predictor"].get("timeout") or 60))
        requeue: float | None = None
        comp_status = status.setdefault("components", {})
        keys = set(comps) | {c[0] for c in canary_list}
        for c in [c for c in comp_status if c not in keys]:
            del comp_status[c]
        self._remove_unused(isvc, keys)
        ready = {}
        for cname, cspec in [*comps.items(), *((c[0], c[2]) for c in canary_list)]:
            try:
                cst, targets, ok, again = await self.reconcile_component(isvc, cname, cspec, comp_status.get(cname) or {})
            except StorageUnavailable as e:
                self._invalid(isvc, status, "StorageUnavailable", str(e))
                return Result(requeue_after=30.0)  # look again: the library may get installed
            except SpecError as e:
                return self._invalid(isvc, status, "InvalidSpec", str(e))
            comp_status[cname] = cst
            route.components[cname] = targets
            ready[cname] = ok
            if again is not None:
                requeue = again if requeue is None else min(requeue, again)
        canary_ready = {c[0]: ready.pop(c[0]) for c in canary_list}
        route.canaries = [(k, pct) for k, _n, _s, pct in canary_list if canary_ready[k][0] and pct > 0 and route.components.get(k)]
        self.router.set(route)
        self._canary_status(status, canary_list, canary_ready, comp_status)
        return self._finish(isvc, key, status, old, ready, comp_status, "Serverless", requeue)

    async def _reconcile_raw(self, isvc: dict, key: Key, status: dict, old: dict, comps: dict) -> Result | None:
        """RawDeployment mode (ketch/serving/raw.py): per component a Deployment, Service and HPA; no
        revisions, no traffic split, no canaries (as in KServe's raw mode)."""
        for ref in (POD, CM):  # what a serverless past left: revision Pods and ConfigMaps owned directly
            for o in self.owned(ref, isvc):
                if not o["metadata"].get("deletionTimestamp"):
                    try:
                        self.client.delete(ref, key.namespace, o["metadata"]["name"])
                    except StatusError as e:
                        if e.code != 404:
                            raise
        self.remove_raw(isvc, set(comps))
        route = Route(key.namespace, key.name, entry="transformer" if "transformer" in comps else "predictor",
                      timeout=float(comps["predictor"].get("timeout") or 60))
        comp_status = status.setdefault("components", {})
        for c in [c for c in comp_status if c not in comps]:
            del comp_status[c]
        ready = {}
        for cname, cspec in comps.items():
            try:
                cst, targets, state = await self.reconcile_raw_component(isvc, cname, cspec, f"{self.base_url}/serving/{key.namespace}/{key.name}-{cname}")
            except SpecError as e:
                return self._invalid(isvc, status, "InvalidSpec", str(e))
            comp_status[cname], route.components[cname], ready[cname] = cst, targets, state
        self.router.set(route)
        self._canary_status(status, [], {}, comp_status)
        return self._finish(isvc, key, status, old, ready, comp_status, "RawDeployment",
                            None if all(v[0] for v in ready.values()) else 1.0)

    def _finish(self, isvc: dict, key: Key, status: dict, old: dict, ready: dict, comp_status: dict, mode: str, requeue: float | None) -> Result | None:
        """Conditions, url and modelStatus from the components' readiness; the status is written if it changed."""
        url = f"{self.base_url}/serving/{key.namespace}/{key.name}"
        for cname, (ok, reason, msg) in ready.items():
            set_condition(status, f"{cname.capitalize()}Ready", "True" if ok else "False", "" if ok else reason, "" if ok else msg)
        all_ready = all(v[0] for v in ready.values())
        if all(ready[c][0] or comp_status[c].get("traffic") for c in ready):
            host = f"http://{key.name}.{key.namespace}.{os.environ.get('KETCH_SERVING_DOMAIN', 'localhost')}:{self.ctx.settings.port}"
            status["url"] = url
            status["address"] = {"url": host}
            set_condition(status, "IngressReady", "True")
        else:
            set_condition(status, "IngressReady", "False", "PredictorNotReady" if not ready["predictor"][0] else "ComponentNotReady", "waiting for a ready revision")
        bad = [(c, v) for c, v in ready.items() if not v[0]]
        if all_ready and _cond(status, "IngressReady"):
            set_condition(status, "Ready", "True")
        else:
            c, v = bad[0] if bad else ("ingress", (False, "IngressNotReady", ""))
            set_condition(status, "Ready", "False", v[1], v[2])
        status["deploymentMode"] = mode
        status["modelStatus"] = self._model_status(comp_status.get("predictor", {}), ready["predictor"])
        if status != old:
            isvc["status"] = status
            self.client.update_status(isvc)
        return Result(requeue_after=requeue) if requeue is not None else None

    @staticmethod
    def _canary_status(status: dict, canary_list: list, canary_ready: dict, comp_status: dict) -> None:
        """KServe's ``canaryStatuses[]`` and ``CanaryPredictorReady`` (only while canaries exist)."""
        if not canary_list:
            status.pop("canaryStatuses", None)
            status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "CanaryPredictorReady"]
            return
        out = []
        for k, name, _spec, pct in canary_list:
            ok = canary_ready[k]
            out.append({"name": name, "ready": ok[0], "trafficPercent": pct if ok[0] else 0,
                        "modelStatus": InferenceServiceController._model_status(comp_status.get(k) or {}, ok)})
        status["canaryStatuses"] = out
        bad = [(k, v) for k, v in canary_ready.items() if not v[0]]
        if bad:
            set_condition(status, "CanaryPredictorReady", "False", bad[0][1][1], bad[0][1][2])
        else:
            set_condition(status, "CanaryPredictorReady", "True")

    def _remove_unused(self, isvc: dict, keys: set[str]) -> None:
        """Pods and revisions of components no longer in the spec (a canary deleted to roll back or promote)."""
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        for ref in (POD, CM):
            for o in self.client.list(ref, ns, {L_ISVC: name}):
                comp = (o["metadata"].get("labels") or {}).get(L_COMP)
                if comp and comp not in keys and not o["metadata"].get("deletionTimestamp"):
                    try:
                        self.client.delete(ref, ns, o["metadata"]["name"])
                    except StatusError as e:
                        if e.code != 404:
                            raise

    def _invalid(self, isvc: dict, status: dict, reason: str, msg: str) -> None:
        for t in ("PredictorReady", "Ready"):
            set_condition(status, t, "False", reason, msg)
        status["modelStatus"] = {"transitionStatus": "InvalidSpec", "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                                 "lastFailureInfo": {"reason": "InvalidPredictorSpec", "message": msg}}
        if status != isvc.get("status"):
            isvc["status"] = status
            self.client.update_status(isvc)
            self.client.event(isvc, "Warning", reason, msg)
        return None

    @staticmethod
    def _model_status(pst: dict, ready: tuple) -> dict:
        if ready[0]:
            return {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                    "copies": {"failedCopies": 0, "totalCopies": pst.get("replicas", 0)}}
        if ready[1] == "RevisionFailed":
            return {"transitionStatus": "BlockedByFailedLoad", "states": {"activeModelState": "Loaded" if pst.get("traffic") else "", "targetModelState": "FailedToLoad"},
                    "lastFailureInfo": {"reason": "ModelLoadFailed", "message": ready[2], "modelRevisionName": pst.get("latestCreatedRevision", "")}}
        return {"transitionStatus": "InProgress", "states": {"activeModelState": "", "targetModelState": "Loading"}}

    # -- one component ----------------------------------------------------------------------------------------

    async def reconcile_component(self, isvc: dict, cname: str, spec: dict, cst: dict) -> tuple[dict, list[Target], tuple, float | None]:
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        sel = {L_ISVC: name, L_COMP: cname}
        revs = sorted(self.client.list(CM, ns, sel), key=lambda c: rev_number(c["metadata"]["name"]))
        h = revision_hash(spec)
        if not revs or revs[-1]["data"].get("hash") != h:
            self._check_runtime(isvc, cname, spec)
            why = storagecheck.problem(((spec.get("model") or {}).get("storageUri")) or "") if _predictor_like(cname) else None
            if why:
                raise StorageUnavailable(f"spec.predictor.model.storageUri: {why}")
            revs.append(self._new_revision(isvc, cname, spec, h, rev_number(revs[-1]["metadata"]["name"]) + 1 if revs else 1))
        latest = revs[-1]
        by_name = {r["metadata"]["name"]: r for r in revs}
        pods = self.client.list(POD, ns, sel)
        pods_by_rev: dict[str, list[dict]] = {}
        for p in pods:
            pods_by_rev.setdefault(p["metadata"]["labels"].get(L_REV, ""), []).append(p)

        # observe: failed pods, ready pods
        ready_eps: dict[str, list[str]] = {}
        starting = False
        for rname, rpods in list(pods_by_rev.items()):
            rev = by_name.get(rname)
            live = []
            for p in rpods:
                phase = (p.get("status") or {}).get("phase")
                if p["metadata"].get("deletionTimestamp"):
                    continue
                if phase in ("Failed", "Succeeded"):
                    if rev is not None and _ann(rev, A_READY) != "true":
                        # never served: the revision is broken. Keep the Pod so `kubectl logs` shows why.
                        if not _ann(rev, A_FAILED):
                            msg = _termination(p)
                            self._annotate(rev, A_FAILED, msg)
                            self.client.event(isvc, "Warning", "RevisionFailed", f"revision {rname} failed: {msg}; see kubectl logs {p['metadata']['name']}")
                        continue
                    self.client.delete(POD, ns, p["metadata"]["name"])  # a replica that served and died: replace it
                    continue
                live.append(p)
            pods_by_rev[rname] = live
            eps = await self._ready_endpoints(live, name)
            ready_eps[rname] = eps
            if rev is not None and eps and _ann(rev, A_READY) != "true":
                self._annotate(rev, A_READY, "true")
            if len(eps) < len(live):
                starting = True

        def ok(r: dict | None) -> bool:
            return r is not None and _ann(r, A_READY) == "true" and not _ann(r, A_FAILED)

        lname = latest["metadata"]["name"]
        rolled = cst.get("latestRolledoutRevision") or None
        previous = cst.get("previousRolledoutRevision") or None
        if rolled and rolled not in by_name:
            rolled = None
        pct = spec.get("canaryTrafficPercent")
        pct = 100 if pct is None else int(pct)
        traffic: list[dict] = []
        if ok(latest):
            stable = rolled if rolled and rolled != lname else (previous if previous in by_name and ok(by_name[previous]) else None)
            if pct >= 100 or stable is None:
                if rolled != lname:
                    previous, rolled = rolled, lname
                traffic = [{"revisionName": lname, "percent": 100, "latestRevision": True}]
            else:
                if rolled == lname:
                    rolled = stable
                traffic = [{"revisionName": lname, "percent": pct, "latestRevision": True, "tag": "latest"},
                           {"revisionName": stable, "percent": 100 - pct, "latestRevision": False, "tag": "prev"}]
        elif rolled and ok(by_name.get(rolled)):
            traffic = [{"revisionName": rolled, "percent": 100, "latestRevision": False, "tag": "prev"}]
        comp_url = f"{self.base_url}/serving/{ns}/{name}-{cname}"
        for t in traffic:
            t["url"] = comp_url

        # scale
        want: dict[str, int] = {}
        again: float | None = None
        for r in revs:
            rname = r["metadata"]["name"]
            rspec = orjson.loads(r["data"]["spec"])
            share = sum(t["percent"] for t in traffic if t["revisionName"] == rname)
            st = self.router.stat(ns, name, cname, rname)
            if _ann(r, A_FAILED):
                want[rname] = 0
            elif share > 0 or rname == lname:
                n, autoscaled = self._autoscale(isvc, rspec, st, warm=ok(r))
                if not ok(r):
                    n = max(n, 1)  # a new revision starts one replica to prove itself (Knative's initial scale)
                want[rname] = n
                if autoscaled:
                    again = 2.0
            else:
                want[rname] = 0
        replicas = 0
        for r in revs:
            rname = r["metadata"]["name"]
            have = pods_by_rev.get(rname, [])
            n = want.get(rname, 0)
            replicas += min(n, len(have))
            if len(have) < n:
                for _ in range(n - len(have)):
                    self._create_pod(isvc, cname, r)
                starting = True
            elif len(have) > n:
                # remove not-yet-ready ones first, then the newest
                have = sorted(have, key=lambda p: (_endpoint(p) in ready_eps.get(rname, []), p["metadata"].get("creationTimestamp", "")))
                for p in have[: len(have) - n]:
                    self.client.delete(POD, ns, p["metadata"]["name"])
        for rname in pods_by_rev:
            if rname not in by_name:
                for p in pods_by_rev[rname]:
                    self.client.delete(POD, ns, p["metadata"]["name"])

        grpc_of = {_endpoint(p): _grpc_endpoint(p) for p in pods if _grpc_endpoint(p)}
        targets = [Target(t["revisionName"], t["percent"], ready_eps.get(t["revisionName"], []),
                          [grpc_of[e] for e in ready_eps.get(t["revisionName"], []) if e in grpc_of]) for t in traffic]
        out = {k: v for k, v in cst.items() if k not in ("traffic",)}
        out.update({"url": comp_url, "restUrl": comp_url, "address": {"url": comp_url}, "latestCreatedRevision": lname,
                    "replicas": replicas})
        ready_names = [r["metadata"]["name"] for r in revs if ok(r)]
        if ready_names:
            out["latestReadyRevision"] = ready_names[-1]
        if rolled:
            out["latestRolledoutRevision"] = rolled
        if previous:
            out["previousRolledoutRevision"] = previous
        if traffic:
            out["traffic"] = traffic
        if _ann(latest, A_FAILED):
            failed_pods = [p["metadata"]["name"] for p in pods if p["metadata"]["labels"].get(L_REV) == lname]
            state = (False, "RevisionFailed", f"Revision {lname} failed: {_ann(latest, A_FAILED)}"
                     + (f"; see kubectl logs {failed_pods[0]}" if failed_pods else ""))
        elif not ok(latest):
            state = (False, "RevisionMissing" if not traffic else "RevisionNotReady", f"Revision {lname} is not ready yet")
            again = 0.3 if again is None else min(again, 0.3)
        else:
            state = (True, "", "")
        if starting:
            again = 0.3 if again is None else min(again, 0.3)
        return out, targets, state, again

    def _check_runtime(self, isvc: dict, cname: str, spec: dict) -> None:
        if not _predictor_like(cname) or "model" not in spec:
            return
        ns = isvc["metadata"]["namespace"]
        try:
            runtimes.select(spec["model"], self._list("ServingRuntime", ns), self._list("ClusterServingRuntime", None))
        except ValueError as e:
            raise SpecError(f"spec.predictor.model: {e}") from None

    def _list(self, kind: str, ns: str | None) -> list[dict]:
        try:
            return self.client.list(("serving.kserve.io/v1alpha1", kind), ns)
        except StatusError:
            return []

    def _new_revision(self, isvc: dict, cname: str, spec: dict, h: str, n: int) -> dict:
        md = isvc["metadata"]
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": f"{md['name']}-{cname}-{n:05d}", "namespace": md["namespace"],
                           "labels": {L_ISVC: md["name"], L_COMP: cname, "serving.ketch.io/revision-of": md["name"]},
                           "ownerReferences": [owner_reference(isvc)]},
              "data": {"hash": h, "spec": orjson.dumps(spec).decode(), "generation": str(md.get("generation", 1))}}
        try:
            created = self.client.create(cm)
        except StatusError as e:
            if e.code != 409:
                raise
            created = self.client.get(CM, md["namespace"], cm["metadata"]["name"])
        self.client.event(isvc, "Normal", "RevisionCreated", f"created revision {cm['metadata']['name']}")
        return created

    def _annotate(self, rev: dict, key: str, value: str) -> None:
        rev["metadata"].setdefault("annotations", {})[key] = value
        self.client.patch(CM, rev["metadata"]["namespace"], rev["metadata"]["name"], {"metadata": {"annotations": {key: value}}})

    async def _ready_endpoints(self, pods: list[dict], model: str) -> list[str]:
        async def check(p: dict) -> str | None:
            if (p.get("status") or {}).get("phase") != "Running":
                return None
            ep = _endpoint(p)
            if ep is None:
                return None
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or []):
                return ep  # the kubelet's readiness probe passed
            try:
                r = await self.http.get(f"http://{ep}/v2/health/ready")
                return ep if r.status_code == 200 else None
            except httpx.HTTPError:
                return None

        res = await asyncio.gather(*(check(p) for p in pods))
        return sorted(e for e in res if e)

    # -- autoscaling ------------------------------------------------------------------------------------------

    def _autoscale(self, isvc: dict, spec: dict, st: Stats, warm: bool) -> tuple[int, bool]:
        """(replicas, whether to look again soon). Knative KPA's rule: observed metric / (target x 70 %)."""
        lo = spec.get("minReplicas")
        lo = 1 if lo is None else int(lo)
        hi = int(spec.get("maxReplicas") or 0) or UNLIMITED
        hi = max(hi, lo, 1)
        if lo == hi and lo > 0:
            return lo, False
        metric = spec.get("scaleMetric") or "concurrency"
        conc, rps = st.sample()
        if metric == "rps":
            target = float(spec.get("scaleTarget") or 200)
            n = math.ceil(rps / target) if rps > 0 else 0
        else:
            target = float(spec.get("scaleTarget") or 100)
            n = math.ceil(conc / (target * 0.7)) if conc > 0 else 0
        if st.waiting > 0 or st.inflight > 0:
            n = max(n, 1)
        now = time.monotonic()
        st.recommendations = [(t, v) for t, v in st.recommendations if now - t < STABLE_WINDOW] + [(now, n)]
        n = max(v for _, v in st.recommendations)  # scale down only after a stable window
        if n == 0 and lo == 0:
            grace = float((isvc["metadata"].get("annotations") or {}).get("serving.ketch.io/scale-to-zero-grace-seconds",
                                                                       os.environ.get("KETCH_SERVING_SCALE_TO_ZERO_GRACE", "30")))
            if st.last_request and now - st.last_request < grace:
                n = 1
            elif not st.last_request and not warm:
                n = 1
        return max(lo, min(hi, n)), True

    # -- pods -------------------------------------------------------------------------------------------------

    def _create_pod(self, isvc: dict, cname: str, rev: dict) -> None:
        md = isvc["metadata"]
        ns, name = md["namespace"], md["name"]
        rname = rev["metadata"]["name"]
        spec = orjson.loads(rev["data"]["spec"])
        port = free_port()
        container = self._container(isvc, cname, spec, rname, port)
        args = container.get("args") or []
        grpc = {A_GRPC_PORT: args[args.index("--grpc-port") + 1]} if "--grpc-port" in args[:-1] else {}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{rname}-deployment-{generate_suffix(5)}", "namespace": ns,
                            "labels": {L_ISVC: name, L_COMP: cname, L_REV: rname, "app": f"{rname}", **(spec.get("labels") or {})},
                            "annotations": {A_PORT: str(port), **grpc, **(spec.get("annotations") or {})},
                            "ownerReferences": [owner_reference(isvc)]},
               "spec": {"containers": [container], "restartPolicy": "Never", **pod_scheduling(spec),
                        **({"serviceAccountName": spec["serviceAccountName"]} if spec.get("serviceAccountName") else {})}}
        self.client.create(pod)

    def _container(self, isvc: dict, cname: str, spec: dict, rname: str, port: int) -> dict:
        md = isvc["metadata"]
        ns, name = md["namespace"], md["name"]
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = [{"name": "PYTHONPATH", "value": src}, {"name": "PORT", "value": str(port)},
               {"name": "KETCH_HOME", "value": self.home}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
        if str((spec.get("model") or {}).get("storageUri") or "").startswith(("s3://", "s3a://")):
            # the S3 endpoint ketch was given (KETCH_* never reaches a Pod) and its credentials, through the
            # namespace's Secret, as a KServe storage initializer gets them from its ServiceAccount's Secret
            env = [*self.store_secrets.pod_env(ns), *env]
        common = ["--model-name", name, "--http-port", str(port), "--service-name", name, "--namespace", ns, "--component", cname]
        if spec.get("batcher"):
            b = spec["batcher"]
            common += ["--max-batch-size", str(b.get("maxBatchSize") or 32), "--max-latency", str(b.get("maxLatency") or 500)]
        if spec.get("logger"):
            lg = spec["logger"]
            url = lg.get("url") or PAYLOADS + str(payloads.directory(self.home, ns, name))
            common += ["--logger-url", url, "--logger-mode", lg.get("mode") or "all"]
            if lg.get("batchSize"):
                common += ["--logger-batch-size", str(int(lg["batchSize"])), "--logger-batch-interval", str(_seconds(lg.get("batchInterval", "1s")))]
            if lg.get("metadataHeaders"):
                common += ["--logger-metadata-headers", ",".join(lg["metadataHeaders"])]
            if url.startswith(("http://", "https://")) and _logger_agent(isvc):
                common += ["--logger-agent"]
        probe = {"httpGet": {"path": "/v2/health/ready", "port": port}, "periodSeconds": 1}
        if "model" in spec:
            model = spec["model"]
            rt_name, rt = runtimes.select(model, self._list("ServingRuntime", ns), self._list("ClusterServingRuntime", None))
            cache = os.path.join(self.home, "serving", "models", ns, name, rname)
            extra_env = [e for e in model.get("env") or [] if isinstance(e, dict)]
            if rt is None:
                args = ["--model-dir", cache, "--storage-uri", model["storageUri"], "--model-format", model["modelFormat"]["name"], *common]
                if (model.get("protocolVersion") or "").startswith("grpc"):
                    args += ["--grpc-port", str(free_port())]
                return {"name": "kserve-container", "image": f"ketch/modelserver:{rt_name}", "command": [runtimes.python(), "-m", "ketch.serving.modelserver"],
                        "args": args, "env": env + extra_env, "terminationMessagePolicy": "FallbackToLogsOnError", "ports": [{"containerPort": port, "name": "http1"}], "readinessProbe": probe,
                        **({"resources": model["resources"]} if model.get("resources") else {})}
            c = copy.deepcopy((rt["spec"].get("containers") or [{}])[0])
            values = {"Name": name, "Port": str(port), "ModelDir": cache, "StorageUri": model["storageUri"]}
            c["args"] = runtimes.template(c.get("args") or [], values) + list(model.get("args") or [])
            c["command"] = [runtimes.python() if x in ("python", "python3") else x for x in runtimes.template(c.get("command") or [], values)]
            c["env"] = env + [{"name": "STORAGE_URI", "value": model["storageUri"]}] + (c.get("env") or []) + extra_env
            c.setdefault("name", "kserve-container")
            c.setdefault("image", f"ketch/runtime:{rt_name}")
            c["ports"] = [{"containerPort": port, "name": "http1"}]
            c.setdefault("readinessProbe", {"tcpSocket": {"port": port}, "periodSeconds": 1})
            return c
        c = copy.deepcopy(spec["containers"][0])
        c.setdefault("name", "kserve-container")
        c.setdefault("image", "ketch/custom")
        c["command"] = [runtimes.python() if x in ("python", "python3") else x for x in c.get("command") or []]
        if "ketch.serving.modelserver" in " ".join(c.get("command", []) + c.get("args", [])):
            c["args"] = list(c.get("args") or []) + common
            if cname in ("transformer", "explainer"):
                # through the gateway, at the address the kubelet gives the Pod for ketch ($(KETCH_SERVER))
                c["args"] += ["--predictor-host", f"$(KETCH_SERVER)/serving/{ns}/{name}-predictor"]
        c["env"] = env + (c.get("env") or [])
        c["ports"] = [{"containerPort": port, "name": "http1"}]
        c.setdefault("readinessProbe", {"tcpSocket": {"port": port}, "periodSeconds": 1})
        return c


def _seconds(v: Any) -> float:
    """``batchInterval``: a number of seconds or a duration such as ``500ms``, ``2s``."""
    if isinstance(v, int | float):
        return float(v)
    v = str(v).strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * mult
    return float(v)


def _predictor_like(cname: str) -> bool:
    return cname == "predictor" or cname.startswith("canary-")


def _logger_agent(isvc: dict) -> bool:
    """Whether an HTTP sink is fed through the logger agent process: formatting and delivering events
    then costs another core, not the model server's; on one core that would only add switching."""
    want = _ann(isvc, A_LOGGER_AGENT).strip().lower()
    if want in ("true", "false"):
        return want == "true"
    return (os.cpu_count() or 1) > 1


def _ann(obj: dict, key: str) -> str:
    return (obj["metadata"].get("annotations") or {}).get(key, "")


def _cond(status: dict, t: str) -> bool:
    return any(c.get("type") == t and c.get("status") == "True" for c in status.get("conditions") or [])


def _endpoint(pod: dict) -> str | None:
    port = (pod["metadata"].get("annotations") or {}).get(A_PORT)
    if not port:
        return None
    ip = (pod.get("status") or {}).get("podIP") or "127.0.0.1"
    return f"{ip}:{port}"


def _grpc_endpoint(pod: dict) -> str | None:
    port = (pod["metadata"].get("annotations") or {}).get(A_GRPC_PORT)
    if not port:
        return None
    return f"{(pod.get('status') or {}).get('podIP') or '127.0.0.1'}:{port}"


def _termination(pod: dict) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if t:
            return (t.get("message") or t.get("reason") or "") + f" (exit code {t.get('exitCode')})"
    return (pod.get("status") or {}).get("message") or "the model server exited"


CONTROLLERS = [InferenceServiceController]
