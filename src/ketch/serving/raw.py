"""KServe's RawDeployment mode: an InferenceService as a Deployment, a Service and an HPA.

An InferenceService annotated ``serving.kserve.io/deploymentMode: RawDeployment`` (or ``Standard``, the
newer name) skips the Knative-style revisions of the serverless mode. Per component, as KServe's raw
reconciler does, ``<isvc>-<component>`` is
- an ``apps/v1`` Deployment of the model server (selector ``app: isvc.<isvc>-<component>``), started
  at ``minReplicas``; after that its replicas belong to the HPA (or ``kubectl scale``), so a reconcile
  never resets them;
- a ``v1`` Service selecting those Pods;
- an ``autoscaling/v2`` HorizontalPodAutoscaler on ``scaleMetric`` (``cpu``, default, or ``memory``)
  at ``scaleTarget`` % utilisation (default 80), between ``minReplicas`` and ``maxReplicas`` (raised
  to ``minReplicas`` when lower, as KServe does); none with ``serving.kserve.io/autoscalerClass: none``
  (the replicas are kept at ``minReplicas``) or ``external`` (left to whoever scales: KEDA,
  ``kubectl scale``);
all owned by the InferenceService, so deleting it takes them along. The gateway routes to the component's
ready Pods, so ``status.url`` answers as in the serverless mode.

Pods share the host's network (docs/services.md), so all replicas of a component are given one port
(kept on the Deployment) and ketch's model server binds it with SO_REUSEPORT: the kernel spreads
connections over the replicas whose model has loaded.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from ketch.kinds.meta import owner_reference
from ketch.machinery.errors import StatusError
from ketch.runtime.ports import free_port
from ketch.serving.router import Target
from ketch.serving.spec import (
    A_GRPC_PORT,
    A_PORT,
    L_COMP,
    L_ISVC,
    POD,
    SpecError,
    pod_scheduling,
    revision_hash,
)

MODE = "serving.kserve.io/deploymentMode"
RAW_MODES = ("RawDeployment", "Standard")
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
DEPLOY = ("apps/v1", "Deployment")
SVC = ("v1", "Service")
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
A_TEMPLATE = "serving.ketch.io/template-hash"
# An HPA on utilisation needs requests; KServe's defaults (1 CPU, 2Gi) would misjudge a laptop's model server.
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "256Mi"}


def is_raw(isvc: dict) -> bool:
    return (isvc["metadata"].get("annotations") or {}).get(MODE) in RAW_MODES


def app_label(isvc_name: str, cname: str) -> str:
    return f"isvc.{isvc_name}-{cname}"


def replica_bounds(spec: dict) -> tuple[int, int]:
    """(minReplicas, maxReplicas) as KServe's raw mode reads them: min defaults to 1 (an HPA cannot go to
    0), max below min becomes min."""
    lo = spec.get("minReplicas")
    lo = 1 if lo is None else max(int(lo), 1)
    return lo, max(int(spec.get("maxReplicas") or 0), lo)


def hpa_metric(cname: str, spec: dict) -> dict:
    metric = spec.get("scaleMetric") or "cpu"
    if metric not in ("cpu", "memory"):
        raise SpecError(f"spec.{cname}.scaleMetric: {metric!r} is not supported in RawDeployment mode with the HPA "
                        "autoscaler (cpu or memory; concurrency and rps need the serverless mode)")
    return {"type": "Resource", "resource": {"name": metric, "target": {"type": "Utilization", "averageUtilization": int(spec.get("scaleTarget") or 80)}}}


class RawDeploymentMode:
    """Mixed into the InferenceService controller: the raw-mode reconcile of one component."""

    client: Any
    home: str

    async def reconcile_raw_component(self, isvc: dict, cname: str, spec: dict, comp_url: str) -> tuple[dict, list[Target], tuple]:
        md = isvc["metadata"]
        ns, isvc_name = md["namespace"], md["name"]
        name = f"{isvc_name}-{cname}"
        labels = {L_ISVC: isvc_name, L_COMP: cname}
        klass = (md.get("annotations") or {}).get(AUTOSCALER_CLASS, "hpa")
        lo, hi = replica_bounds(spec)
        metric = hpa_metric(cname, spec) if klass not in ("none", "external") else None
        dep = self.client.get(DEPLOY, ns, name)
        port = int((dep["metadata"].get("annotations") or {}).get(A_PORT) or 0) if dep else 0
        port = port or free_port()
        template = self._raw_template(isvc, cname, spec, name, port)
        th = hashlib.sha256(orjson.dumps(template, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        sel = {"app": app_label(isvc_name, cname)}
        owner = [owner_reference(isvc)]
        if dep is None:
            self._create({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner,
                                       "annotations": {A_PORT: str(port), A_TEMPLATE: th}},
                          "spec": {"replicas": lo, "selector": {"matchLabels": sel}, "template": template}})
            self.client.event(isvc, "Normal", "DeploymentCreated", f"created deployment {name} with {lo} replica(s)")
        elif (dep["metadata"].get("annotations") or {}).get(A_TEMPLATE) != th or (klass == "none" and dep["spec"].get("replicas") != lo):
            dep["metadata"].setdefault("annotations", {})[A_TEMPLATE] = th
            dep["spec"]["template"] = template
            if klass == "none":
                dep["spec"]["replicas"] = lo  # no autoscaler: minReplicas is the count
            self.client.update(dep)
        if self.client.get(SVC, ns, name) is None:
            self._create({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
                          "spec": {"selector": sel, "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}]}})
        self._reconcile_hpa(isvc, name, labels, lo, hi, metric)

        pods = [p for p in self.client.list(POD, ns, sel) if not p["metadata"].get("deletionTimestamp")]
        eps = sorted(set(await self._ready_endpoints(pods, isvc_name)))
        grpc = sorted({f"{(p.get('status') or {}).get('podIP') or '127.0.0.1'}:{p['metadata']['annotations'][A_GRPC_PORT]}"
                       for p in pods if (p["metadata"].get("annotations") or {}).get(A_GRPC_PORT)}) if eps else []
        dep = self.client.get(DEPLOY, ns, name) or {}
        dst = dep.get("status") or {}
        cst = {"url": comp_url, "restUrl": comp_url, "address": {"url": comp_url}, "replicas": dst.get("readyReplicas", 0)}
        if eps:
            state: tuple = (True, "", "")
        else:
            why = _pod_trouble(pods)
            state = (False, "ModelLoadFailed", why) if why else (False, "DeploymentNotReady", f"Deployment {name} has no ready replica yet")
        return cst, [Target(name, 100, eps, grpc)] if eps else [], state

    def _raw_template(self, isvc: dict, cname: str, spec: dict, name: str, port: int) -> dict:
        # the model cache is per spec, so a changed storageUri is fetched afresh, not served from the old copy
        container = self._container(isvc, cname, spec, f"{name}-{revision_hash(spec)[:10]}", port)
        if "ketch.serving.modelserver" in " ".join(container.get("command") or []) + " " + " ".join(container.get("args") or []):
            container["args"] = [*(container.get("args") or []), "--reuse-port"]
            # readiness of this replica, not of whichever replica answers on the shared port
            ready = os.path.join(self.home, "serving", "ready", isvc["metadata"]["namespace"], "$(POD_NAME)")
            container["env"] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                *(container.get("env") or []), {"name": "KETCH_READY_FILE", "value": ready}]
            container["readinessProbe"] = {"exec": {"command": ["sh", "-c", 'test -f "$KETCH_READY_FILE"']}, "periodSeconds": 1}
        res = container.setdefault("resources", {})
        res["requests"] = {**DEFAULT_REQUESTS, **(res.get("requests") or {})}
        args = container.get("args") or []
        ann = {A_PORT: str(port), **(spec.get("annotations") or {})}
        if "--grpc-port" in args[:-1]:
            ann[A_GRPC_PORT] = args[args.index("--grpc-port") + 1]
        md = isvc["metadata"]
        return {"metadata": {"labels": {L_ISVC: md["name"], L_COMP: cname, "app": app_label(md["name"], cname), **(spec.get("labels") or {})},
                             "annotations": ann},
                "spec": {"containers": [container], "restartPolicy": "Always", **pod_scheduling(spec),
                         **({"serviceAccountName": spec["serviceAccountName"]} if spec.get("serviceAccountName") else {})}}

    def _reconcile_hpa(self, isvc: dict, name: str, labels: dict, lo: int, hi: int, metric: dict | None) -> None:
        ns = isvc["metadata"]["namespace"]
        hpa = self.client.get(HPA, ns, name)
        if metric is None:
            if hpa is not None:
                self._delete(HPA, ns, name)
            return
        want = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": lo, "maxReplicas": hi, "metrics": [metric]}
        if hpa is None:
            self._create({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                          "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(isvc)]},
                          "spec": want})
        elif any(hpa["spec"].get(k) != v for k, v in want.items()):
            hpa["spec"].update(want)
            self.client.update(hpa)

    def remove_raw(self, isvc: dict, keep: set[str]) -> None:
        """The Deployments, Services and HPAs of components no longer in the spec (or of a raw-mode
        InferenceService switched back to serverless)."""
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        for ref in (HPA, SVC, DEPLOY):
            for o in self.client.list(ref, ns, {L_ISVC: name}):
                if (o["metadata"].get("labels") or {}).get(L_COMP) not in keep and not o["metadata"].get("deletionTimestamp"):
                    self._delete(ref, ns, o["metadata"]["name"])

    def _create(self, obj: dict) -> None:
        try:
            self.client.create(obj)
        except StatusError as e:
            if e.code != 409:
                raise

    def _delete(self, ref: tuple[str, str], ns: str, name: str) -> None:
        try:
            self.client.delete(ref, ns, name, propagation="Background")
        except StatusError as e:
            if e.code != 404:
                raise


def _pod_trouble(pods: list[dict]) -> str:
    """Why a component's Pods are not serving, when a container keeps exiting (the model failed to load)."""
    for p in pods:
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            t = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if t and (cs.get("restartCount") or 0) > 0 or ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                msg = (t or {}).get("message") or (t or {}).get("reason") or "the model server exited"
                return f"{msg} (exit code {(t or {}).get('exitCode')}); see kubectl logs {p['metadata']['name']}"
    return ""
