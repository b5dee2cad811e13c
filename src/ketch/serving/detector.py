"""The DriftDetector controller (``serving.ketch.io/v1alpha1``): data drift and outliers in the requests an
InferenceService is sent, the way KServe wires an alibi-detect detector behind the ``logger``, without a
second service to deploy.

The InferenceService logs its requests to ketch's built-in payload store (``logger`` with no ``url``);
every ``intervalSeconds`` reconcile reads the requests logged since its last look (payloads.py), keeps the
newest ``windowSize`` rows, scores new rows for outliers and, once the window is full, tests it against
the reference data set (``referenceUri``, any storage URI the model server can fetch) with drift.py.
Results go to:
- the detector's status (``drift.{isDrift, pValue, threshold, distance, featurePValues, ...}``,
  ``outliers``) and its ``Drift`` condition (True / False / Unknown while the window fills);
- the InferenceService: annotation ``serving.ketch.io/drift: "true"|"false"`` and the Events
  ``DriftDetected`` (Warning) / ``DriftResolved`` on each change;
- ketch's ``/metrics`` (serving/metrics.py): ``ketch_drift_score``, ``ketch_drift_p_value``,
  ``ketch_drift_is_drift``, ``ketch_outlier_instances_total``..., what an alert rule fires on.
The window lives in memory: after a restart it refills from the store (which keeps the newest payloads).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ketch.kinds.meta import set_condition
from ketch.runtime.controller import Controller, Key, Result
from ketch.serving import metrics, payloads

DD = ("serving.ketch.io/v1alpha1", "DriftDetector")
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
A_DRIFT = "serving.ketch.io/drift"


@dataclass
class _State:
    offsets: dict[str, int] = field(default_factory=dict)
    rows: collections.deque = field(default_factory=collections.deque)
    ref_key: str = ""
    reference: Any = None
    outlier_model: Any = None
    outliers: collections.deque = field(default_factory=collections.deque)  # 1/0 per row in the window


class DriftDetectorController(Controller):
    name = "driftdetector"
    kind = DD
    needs_context = True
    workers = 2

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx.api)
        self.ctx = ctx
        self.home = str(ctx.settings.home)
        self.state: dict[Key, _State] = {}

    async def reconcile(self, key: Key) -> Result | None:
        dd = self.get(key)
        if dd is None or dd["metadata"].get("deletionTimestamp"):
            st = self.state.pop(key, None)
            if st is not None:
                metrics.forget_detector(key.namespace, st.ref_key.split("|", 1)[0], key.name)
            return None
        spec = dd["spec"]
        interval = float(spec.get("intervalSeconds") or 10)
        old = dd.get("status") or {}
        status = copy.deepcopy(old)
        status["observedGeneration"] = dd["metadata"].get("generation", 1)
        try:
            isvc, st = await self._prepare(key, dd)
        except _NotReady as e:
            set_condition(status, "Ready", "False", e.reason, str(e))
            set_condition(status, "Drift", "Unknown", e.reason, str(e))
            self._write(dd, old, status)
            return Result(requeue_after=interval)
        set_condition(status, "Ready", "True")
        await asyncio.to_thread(self._observe, key, dd, st, status)
        drift = status.get("drift") or {}
        if drift.get("windowRows", 0) < int(spec.get("windowSize") or 100):
            set_condition(status, "Drift", "Unknown", "InsufficientData",
                          f"{drift.get('windowRows', 0)} of {spec.get('windowSize') or 100} request rows logged so far")
        else:
            on = bool(drift.get("isDrift"))
            msg = (f"p-value {drift['pValue']:.3g} {'<' if on else '>='} threshold {drift['threshold']:.3g} "
                   f"(drift score {drift['distance']:.3g}, {spec.get('method') or 'ks'}, {drift['windowRows']} rows)")
            set_condition(status, "Drift", "True" if on else "False", "DriftDetected" if on else "NoDrift", msg)
            self._mark_isvc(isvc, on, msg)
        self._write(dd, old, status)
        return Result(requeue_after=interval)

    def _write(self, dd: dict, old: dict, status: dict) -> None:
        if status != old:
            dd["status"] = status
            self.update_status(dd)

    async def _prepare(self, key: Key, dd: dict) -> tuple[dict, _State]:
        spec = dd["spec"]
        svc = spec["inferenceServiceName"]
        isvc = self.client.get(ISVC, key.namespace, svc)
        if isvc is None:
            raise _NotReady("InferenceServiceNotFound", f"spec.inferenceServiceName: InferenceService {key.namespace}/{svc} not found")
        lg = ((isvc.get("spec") or {}).get("predictor") or {}).get("logger")
        if not lg or lg.get("url") or (lg.get("mode") or "all") == "response":
            raise _NotReady("NoPayloads", f"InferenceService {svc} must log its requests to ketch's payload store: set "
                            "spec.predictor.logger: {mode: all} (or request) with no url")
        st = self.state.setdefault(key, _State())
        ref_key = f"{svc}|{spec['referenceUri']}"
        if st.ref_key != ref_key or st.reference is None:
            try:
                st.reference = await asyncio.to_thread(self._load_reference, key, spec["referenceUri"])
            except Exception as e:  # noqa: BLE001 - any fetch or parse failure is the reference's problem, reported
                raise _NotReady("ReferenceError", f"spec.referenceUri: {e}") from None
            st.ref_key = ref_key
            st.rows.clear()
            st.outliers.clear()
            st.offsets.clear()
            st.outlier_model = None
        window = int(spec.get("windowSize") or 100)
        if st.rows.maxlen != window:
            st.rows = collections.deque(st.rows, maxlen=window)
            st.outliers = collections.deque(st.outliers, maxlen=window)
        return isvc, st

    def _load_reference(self, key: Key, uri: str) -> Any:
        from ketch.serving import drift
        from ketch.serving.modelserver import storage

        local = storage.resolve_local(uri)
        if local is None:
            dest = os.path.join(self.home, "serving", "drift", key.namespace, key.name, hashlib.sha256(uri.encode()).hexdigest()[:12])
            local = storage.fetch(uri, dest)
        return drift.load_reference(local)

    def _observe(self, key: Key, dd: dict, st: _State, status: dict) -> None:
        """Read new requests, score outliers, test drift: CPU work, run on a worker thread."""
        import numpy as np

        from ketch.serving import drift

        spec = dd["spec"]
        svc = spec["inferenceServiceName"]
        labels = (key.namespace, svc, key.name)
        nfeat = st.reference.shape[1]
        new = []
        for ev in payloads.events_since(payloads.directory(self.home, key.namespace, svc), st.offsets):
            if str(ev.get("type", "")).endswith(".request"):
                new.extend(r for r in drift.request_rows(ev) if len(r) == nfeat)
        if new:
            st.rows.extend(new)
            if spec.get("outlierPValue") is not None:
                if st.outlier_model is None:
                    st.outlier_model = drift.OutlierModel.fit(st.reference)
                flags = (st.outlier_model.p_values(np.asarray(new, dtype=float)) < float(spec["outlierPValue"])).astype(int)
                st.outliers.extend(flags.tolist())
                metrics.checked.labels(*labels).inc(len(new))
                metrics.outliers.labels(*labels).inc(int(flags.sum()))
        d = status.setdefault("drift", {})
        d["windowRows"] = len(st.rows)
        metrics.window_rows.labels(*labels).set(len(st.rows))
        if spec.get("outlierPValue") is not None:
            n = len(st.outliers)
            k = int(sum(st.outliers))
            status["outliers"] = {"windowRows": n, "outliers": k, "fraction": round(k / n, 4) if n else 0.0}
        if not new or len(st.rows) < (st.rows.maxlen or 0):
            return
        res = drift.drift(st.reference, np.asarray(st.rows, dtype=float), spec.get("method") or "ks", float(spec.get("pValue") or 0.05),
                          spec.get("correction") or "bonferroni")
        d.update({"isDrift": res.is_drift, "pValue": _r(res.p_value), "threshold": _r(res.threshold), "distance": _r(res.distance),
                  "featurePValues": [_r(p) for p in res.feature_p_values], "featureDistances": [_r(x) for x in res.feature_distances],
                  "checkedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
        metrics.drift_score.labels(*labels).set(res.distance)
        metrics.drift_p_value.labels(*labels).set(res.p_value)
        metrics.drift_threshold.labels(*labels).set(res.threshold)
        metrics.is_drift.labels(*labels).set(1 if res.is_drift else 0)

    def _mark_isvc(self, isvc: dict, on: bool, msg: str) -> None:
        want = "true" if on else "false"
        have = (isvc["metadata"].get("annotations") or {}).get(A_DRIFT)
        if have == want:
            return
        md = isvc["metadata"]
        self.client.patch(ISVC, md["namespace"], md["name"], {"metadata": {"annotations": {A_DRIFT: want}}})
        if on:
            self.client.event(isvc, "Warning", "DriftDetected", f"data drift in the requests: {msg}")
        elif have == "true":
            self.client.event(isvc, "Normal", "DriftResolved", f"no data drift in the requests any more: {msg}")


class _NotReady(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _r(x: float) -> float:
    return float(f"{x:.6g}")


CONTROLLERS = [DriftDetectorController]
