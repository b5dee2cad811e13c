"""The RecurringRun controller: KFP's ScheduledWorkflow, as a level-triggered reconcile.

``status.lastScheduled`` is the schedule time of the last run made; each reconcile makes the run for the
next due time (one per reconcile, so catching up after downtime is a sequence of runs, or only the latest
one with ``noCatchup``), holds back while ``maxConcurrency`` runs are still going, and otherwise asks to be
woken at the next time. Run names derive from the schedule time, so a restart never fires one twice.
"""

from __future__ import annotations

import copy
import time
import uuid
from datetime import UTC, datetime

from croniter import croniter

from ketch.kinds.meta import owner_reference
from ketch.machinery.errors import StatusError
from ketch.pipelines import kfp_objects as K
from ketch.runtime import Controller, Key, Result

FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


def parse_cron(expr: str) -> tuple[str, bool]:
    """KFP's cron has six fields, seconds first (robfig/cron); five-field cron is accepted too."""
    expr = expr.strip()
    if expr.startswith("@every "):
        raise ValueError("@every is not supported in a cron schedule; use periodic_schedule.interval_second")
    fields = expr.split()
    secs = len(fields) == 6
    if len(fields) not in (5, 6) and not expr.startswith("@"):
        raise ValueError(f"expected 5 or 6 fields, got {len(fields)} in {expr!r}")
    if not croniter.is_valid(expr, second_at_beginning=secs) if secs else not croniter.is_valid(expr):
        raise ValueError(f"not a valid cron expression: {expr!r}")
    return expr, secs


def next_time(spec: dict, after: float) -> float | None:
    trig = spec.get("trigger") or {}
    if "cron_schedule" in trig:
        expr, secs = parse_cron(trig["cron_schedule"]["cron"])
        start = trig["cron_schedule"].get("start_time")
        base = max(after, K.epoch(start) - 1e-3) if start else after
        it = croniter(expr, datetime.fromtimestamp(base, UTC), second_at_beginning=secs) if secs else croniter(expr, datetime.fromtimestamp(base, UTC))
        return it.get_next(float)
    per = trig.get("periodic_schedule") or {}
    iv = float(per.get("interval_second") or 0)
    if iv <= 0:
        return None
    start = K.epoch(per.get("start_time")) if per.get("start_time") else None
    if start and after < start:
        return start
    return after + iv


def end_time(spec: dict) -> float | None:
    trig = spec.get("trigger") or {}
    s = (trig.get("cron_schedule") or trig.get("periodic_schedule") or {}).get("end_time")
    return K.epoch(s) if s else None


class RecurringRunController(Controller):
    name = "recurringrun"
    kind = K.RECURRING
    workers = 1

    async def reconcile(self, key: Key) -> Result | None:
        rr = self.get(key)
        if rr is None or rr["metadata"].get("deletionTimestamp"):
            return None
        spec = rr.get("spec") or {}
        if spec.get("mode", "ENABLE") != "ENABLE":
            return None
        st = dict(rr.get("status") or {})
        now = time.time()
        last = float(st.get("lastScheduled") or K.epoch(rr["metadata"].get("creationTimestamp")) or now)
        due = next_time(spec, last)
        if due is None:
            return None
        end = end_time(spec)
        if end and due > end:
            return None
        if due > now:
            return Result(requeue_after=max(due - now, 0.05))
        if spec.get("noCatchup"):
            while True:  # skip to the latest due time
                nxt = next_time(spec, due)
                if nxt is None or nxt > now or (end and nxt > end):
                    break
                due = nxt
        active = [r for r in self.client.list(K.RUN, key.namespace, labels={K.LABEL_RECURRING: key.name}) if ((r.get("status") or {}).get("state") or "PENDING") not in FINAL]
        if len(active) >= int(spec.get("maxConcurrency") or 1):
            return Result(requeue_after=0.5)
        run_spec = {k: copy.deepcopy(v) for k, v in spec.items() if k not in ("trigger", "mode", "maxConcurrency", "noCatchup")}
        stamp = datetime.fromtimestamp(due, UTC)
        run_spec.update(recurringRunId=key.name, scheduledAt=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        displayName=f"{spec.get('displayName') or key.name}-{stamp.strftime('%Y%m%d%H%M%S')}")
        name = str(uuid.uuid5(uuid.UUID(rr["metadata"]["uid"]) if _is_uuid(rr["metadata"]["uid"]) else uuid.NAMESPACE_URL, f"{key.name}/{due:.3f}"))
        try:
            self.client.create({
                "apiVersion": K.GROUP, "kind": "PipelineRun",
                "metadata": {"name": name, "namespace": key.namespace, "labels": {K.LABEL_RECURRING: key.name, K.LABEL_EXPERIMENT: spec.get("experimentId", "")},
                             "ownerReferences": [owner_reference(rr, controller=False, block=False)]},
                "spec": run_spec, "status": {"state": "PENDING"},
            })
        except StatusError as e:
            if e.code != 409:
                raise
        st.update(lastScheduled=due, lastRunTime=K.rfc3339(due), lastRunName=name)
        rr["status"] = st
        self.client.update_status(rr)
        return Result(requeue_after=0.01)


def _is_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False


CONTROLLERS = [RecurringRunController]
