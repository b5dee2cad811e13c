"""autoscaling/v2 HorizontalPodAutoscaler: every sync period (``KETCH_HPA_SYNC_PERIOD`` seconds, default
15 as in Kubernetes) read the target's scale subresource, the usage of its Pods from the kubelet's
metrics (``ctx.services["metrics"]``, the same samples metrics.k8s.io serves), and step the replicas
toward what the metrics ask for, as Kubernetes' HPA controller does:

- **Resource / ContainerResource** metrics: ``Utilization`` (usage / requests, per cent) or
  ``AverageValue``; the proposal is ``ceil(ratio * pods)``, unchanged within the 10% tolerance. A CPU
  sample counts once the Pod is Ready and, in its first ``KETCH_HPA_CPU_INITIALIZATION_PERIOD`` seconds
  (300, Kubernetes' cpu-initialization-period), only if its window began after the Pod became Ready (a
  starting process burns CPU it will not keep). Pods with no usable sample count as using nothing when scaling up and their full target when scaling down (the
  conservative choice); a Pod without a request for the resource makes a Utilization target fail.
- The largest proposal wins; the result is bounded by minReplicas/maxReplicas.
- **behavior**: a stabilization window per direction (scale-up 0 s, scale-down 300 s by default: the
  lowest recommendation of the window for scaling up, the highest for scaling down) and rate policies
  per period (``Pods`` / ``Percent``, ``selectPolicy`` Max, Min or Disabled; defaults as Kubernetes'). The
  recommendation and scale history live in this process: a restart of ketch starts the windows afresh.
- Status: currentReplicas, desiredReplicas, currentMetrics, lastScaleTime, observedGeneration and the
  AbleToScale, ScalingActive and ScalingLimited conditions; ``SuccessfulRescale`` events.

Pods, Object and External metrics need a custom or external metrics API, which ketch does not serve: such
a metric makes ScalingActive False (reason FailedGetPodsMetric / FailedGetObjectMetric /
FailedGetExternalMetric) while the others still scale.
"""

from __future__ import annotations

import copy
import math
import os
import time

from ketch.controllers.workload_pods import POD, active
from ketch.kinds.meta import now, set_condition
from ketch.kinds.resources import container_requests, parse_quantity
from ketch.machinery import scale
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result

TOLERANCE = 0.1
UP_DEFAULT = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
              "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
DOWN_DEFAULT = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def sync_period() -> float:
    return float(os.environ.get("KETCH_HPA_SYNC_PERIOD", "15"))


def cpu_initialization_period() -> float:
    return float(os.environ.get("KETCH_HPA_CPU_INITIALIZATION_PERIOD", "300"))


def _cpu_sample_usable(pod: dict, usage: object) -> bool:
    """Kubernetes' rule for CPU: in a Pod's first ``cpuInitializationPeriod``, a sample counts only when
    its whole window lies after the Pod became Ready (a starting process burns CPU it will not keep)."""
    import datetime as dt

    from ketch.kinds.meta import get_condition, parse_time

    start = parse_time((pod.get("status") or {}).get("startTime"))
    c = get_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return False
    now_ = dt.datetime.now(dt.UTC)
    if start is None or (now_ - start).total_seconds() >= cpu_initialization_period():
        return True
    ready_at = parse_time(c.get("lastTransitionTime"))
    sampled = parse_time(getattr(usage, "timestamp", None))
    window = float(getattr(usage, "window", 0.0))
    if ready_at is None or sampled is None:
        return False
    # timestamps have second precision: a window must start a second after the transition to be sure
    return (sampled - ready_at).total_seconds() - window >= 1.0


class MetricError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _fmt(resource: str, v: float) -> str:
    return f"{round(v * 1000)}m" if resource == "cpu" else str(int(v))


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"
    kind = ("autoscaling/v2", "HorizontalPodAutoscaler")
    needs_context = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx.api)
        self.ctx = ctx
        self.recommendations: dict[Key, list[tuple[float, int]]] = {}
        self.scale_events: dict[Key, list[tuple[float, int]]] = {}

    async def reconcile(self, key: Key) -> Result | None:
        hpa = self.get(key)
        if hpa is None:
            self.recommendations.pop(key, None)
            self.scale_events.pop(key, None)
            return None
        spec = hpa.get("spec") or {}
        st = copy.deepcopy(hpa.get("status") or {})
        st["observedGeneration"] = hpa["metadata"].get("generation", 1)
        ref = spec.get("scaleTargetRef") or {}
        try:
            rd = self.api.rd(ref.get("apiVersion") or "apps/v1", ref.get("kind", ""))
            sc = scale.get_scale(self.api, rd, key.namespace, ref.get("name", ""))
        except StatusError as e:
            self._cond(st, "AbleToScale", "False", "FailedGetScale", f"the HPA controller was unable to get the target's current scale: {e.message}")
            return self._write(hpa, st)
        current = int(sc["spec"]["replicas"])
        st["currentReplicas"] = int(sc["status"].get("replicas", 0))
        min_r, max_r = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        if current == 0 and min_r != 0:
            self._cond(st, "ScalingActive", "False", "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
            st["desiredReplicas"] = 0
            return self._write(hpa, st)
        pods = [p for p in self.client.list(POD, key.namespace, sc["status"].get("selector") or None) if active(p)]
        proposals, metrics, errors = [], [], []
        for m in spec.get("metrics") or []:
            try:
                n, cur, what = self._proposal(m, pods, current, key.namespace)
                proposals.append((n, what))
                metrics.append(cur)
            except MetricError as e:
                errors.append(e)
        st["currentMetrics"] = metrics or None
        if st["currentMetrics"] is None:
            st.pop("currentMetrics")
        if not proposals:
            e = errors[0] if errors else MetricError("FailedGetResourceMetric", "no metrics")
            self._cond(st, "ScalingActive", "False", e.reason, e.message)
            st["desiredReplicas"] = current
            self.client.event(hpa, "Warning", e.reason, e.message, "horizontal-pod-autoscaler")
            return self._write(hpa, st)
        desired, what = max(proposals)
        if errors:
            self._cond(st, "ScalingActive", "False", errors[0].reason, errors[0].message)
        else:
            self._cond(st, "ScalingActive", "True", "ValidMetricFound", f"the HPA was able to successfully calculate a replica count from {what}")
        desired = self._stabilize(key, spec, current, desired, st)
        limited = max(min_r, min(max_r, desired))
        if limited > desired:
            self._cond(st, "ScalingLimited", "True", "TooFewReplicas", "the desired replica count is less than the minimum replica count")
        elif limited < desired:
            self._cond(st, "ScalingLimited", "True", "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        else:
            self._cond(st, "ScalingLimited", "False", "DesiredWithinRange", "the desired count is within the acceptable range")
        desired = limited
        st["desiredReplicas"] = desired
        if desired != current:
            try:
                scale.update_scale(self.api, rd, key.namespace, ref["name"], {"spec": {"replicas": desired}})
            except StatusError as e:
                self._cond(st, "AbleToScale", "False", "FailedUpdateScale", f"the HPA controller was unable to update the target scale: {e.message}")
                return self._write(hpa, st)
            self.scale_events.setdefault(key, []).append((time.monotonic(), desired - current))
            st["lastScaleTime"] = now()
            direction = "above" if desired > current else "below"
            self.client.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {what} {direction} target", "horizontal-pod-autoscaler")
            self._cond(st, "AbleToScale", "True", "SucceededRescale", f"the HPA controller was able to update the target scale to {desired}")
        elif not any(c.get("type") == "AbleToScale" and c.get("reason") == "ScaleDownStabilized" for c in st.get("conditions") or []):
            self._cond(st, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
        return self._write(hpa, st)

    # -- metrics -------------------------------------------------------------------------------------------

    def _proposal(self, m: dict, pods: list[dict], current: int, ns: str) -> tuple[int, dict, str]:
        typ = m.get("type")
        if typ not in ("Resource", "ContainerResource"):
            reason = {"Pods": "FailedGetPodsMetric", "Object": "FailedGetObjectMetric", "External": "FailedGetExternalMetric"}.get(typ or "", "InvalidMetricSourceType")
            raise MetricError(reason, f"unable to get {typ} metric: ketch serves no custom or external metrics API (custom.metrics.k8s.io, external.metrics.k8s.io)")
        src = m.get("resource" if typ == "Resource" else "containerResource") or {}
        res, container = src.get("name", ""), src.get("container")
        tgt = src.get("target") or {}
        sampler = self.ctx.services.get("metrics")
        if sampler is None:
            raise MetricError("FailedGetResourceMetric", "unable to get metrics for resource " + res + ": no metrics known (the kubelet is disabled)")
        if res not in ("cpu", "memory"):
            raise MetricError("FailedGetResourceMetric", f"unable to get metrics for resource {res}: only cpu and memory are sampled")
        usage: dict[str, float] = {}
        requests: dict[str, float] = {}
        unready: set[str] = set()
        for p in pods:
            n = p["metadata"]["name"]
            cs = [c for c in (p.get("spec") or {}).get("containers") or [] if container is None or c.get("name") == container]
            if tgt.get("type") == "Utilization":
                req = 0.0
                for c in cs:
                    r = container_requests(c).get(res)
                    if not r:
                        raise MetricError("FailedGetResourceMetric", f"failed to get {res} utilization: missing request for {res} in container {c.get('name')} of Pod {n}")
                    req += r
                requests[n] = req
            u = sampler.pod(ns, n)
            if u is None or (res == "cpu" and not _cpu_sample_usable(p, u)):
                unready.add(n)
                continue
            usage[n] = sum(cores if res == "cpu" else mem for cname, (cores, mem) in u.containers.items() if container is None or cname == container)
        if not usage:
            raise MetricError("FailedGetResourceMetric", f"unable to get metrics for resource {res}: no metrics returned from resource metrics API")
        what = f"{res} resource utilization (percentage of request)" if tgt.get("type") == "Utilization" else f"{res} resource"
        if typ == "ContainerResource":
            what = f"{res} container resource utilization (percentage of request)" if tgt.get("type") == "Utilization" else f"{res} container resource"
        avg = sum(usage.values()) / len(usage)
        if tgt.get("type") == "Utilization":
            target = float(tgt["averageUtilization"]) / 100
            util = sum(usage.values()) / sum(requests[n] for n in usage)
            ratio = util / target
            if unready:  # the conservative assumption for Pods without a sample
                fill = 0.0 if ratio > 1 else 1.0
                total_u = sum(usage.values()) + sum(fill * target * requests[n] for n in unready)
                new_ratio = total_u / sum(requests[n] for n in [*usage, *unready]) / target
                if abs(new_ratio - 1) <= TOLERANCE or (ratio > 1) != (new_ratio > 1):
                    new_ratio = 1.0
                ratio, count = new_ratio, len(usage) + len(unready)
            else:
                count = len(usage)
            n = current if abs(ratio - 1) <= TOLERANCE else math.ceil(ratio * count)
            cur = {"averageUtilization": round(util * 100), "averageValue": _fmt(res, avg)}
        else:
            target = parse_quantity(tgt.get("averageValue") or tgt.get("value") or 0)
            if target <= 0:
                raise MetricError("FailedGetResourceMetric", f"invalid target value for {res}")
            ratio = avg / target
            n = current if abs(ratio - 1) <= TOLERANCE else math.ceil(sum(usage.values()) / target)
            cur = {"averageValue": _fmt(res, avg)}
        body = {"name": res, "current": cur}
        if typ == "ContainerResource":
            body["container"] = container
        return n, {"type": typ, ("resource" if typ == "Resource" else "containerResource"): body}, what

    # -- behavior -------------------------------------------------------------------------------------------

    def _stabilize(self, key: Key, spec: dict, current: int, desired: int, st: dict) -> int:
        beh = spec.get("behavior") or {}
        up = {**UP_DEFAULT, **(beh.get("scaleUp") or {})}
        down = {**DOWN_DEFAULT, **(beh.get("scaleDown") or {})}
        t = time.monotonic()
        recs = self.recommendations.setdefault(key, [])
        recs.append((t, desired))
        keep = max(int(up["stabilizationWindowSeconds"]), int(down["stabilizationWindowSeconds"]))
        recs[:] = [(a, n) for a, n in recs if a >= t - keep]
        up_rec = min(n for a, n in recs if a >= t - int(up["stabilizationWindowSeconds"]))
        down_rec = max(n for a, n in recs if a >= t - int(down["stabilizationWindowSeconds"]))
        out = current
        if desired > current:
            out = max(current, up_rec)
        elif desired < current:
            out = min(current, down_rec)
            if out > desired:
                self._cond(st, "AbleToScale", "True", "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
        events = self.scale_events.setdefault(key, [])
        longest = max([p["periodSeconds"] for p in up["policies"] + down["policies"]] or [0])
        events[:] = [(a, d) for a, d in events if a >= t - longest]
        if out > current:
            return min(out, self._limit(up, current, events, t, True))
        if out < current:
            return max(out, self._limit(down, current, events, t, False))
        return out

    @staticmethod
    def _limit(rules: dict, current: int, events: list[tuple[float, int]], t: float, up: bool) -> int:
        if rules.get("selectPolicy") == "Disabled":
            return current
        limits = []
        for p in rules["policies"]:
            moved = sum(d for a, d in events if a >= t - p["periodSeconds"] and (d > 0) == up)
            start = current - moved  # replicas at the start of the policy's period
            if p["type"] == "Pods":
                limits.append(start + p["value"] if up else start - p["value"])
            else:
                limits.append(math.ceil(start * (1 + p["value"] / 100)) if up else math.ceil(start * (1 - p["value"] / 100)))
        if not limits:
            return current
        pick = max if (rules.get("selectPolicy", "Max") == "Max") == up else min
        return pick(limits)

    # -- status ---------------------------------------------------------------------------------------------

    @staticmethod
    def _cond(st: dict, typ: str, status: str, reason: str, message: str) -> None:
        set_condition(st, typ, status, reason, message)
        for c in st["conditions"]:
            c.pop("lastUpdateTime", None)

    def _write(self, hpa: dict, st: dict) -> Result:
        if st != (hpa.get("status") or {}):
            self.update_status({**hpa, "status": st})
        return Result(requeue_after=sync_period())


CONTROLLERS = [HorizontalPodAutoscalerController]
