"""batch/v1 Job controller: keeps the right number of Pods running until the Job completes or fails.

Level-triggered, as Kubernetes' job controller: every reconcile lists the Job's Pods (selected by the Job's
selector and owned by its uid), counts what succeeded and failed, and steps toward the spec: create Pods up
to ``parallelism`` while completions remain, delete Pods the Job no longer wants (suspend, failure, excess),
and write the status. Nothing is remembered between calls, so a restart of ketch simply reconciles again.

Ending follows Kubernetes 1.31+: a Job that meets its success criteria first gets ``SuccessCriteriaMet``,
one that fails gets ``FailureTarget``; its remaining Pods are deleted and, once none is left running, the
terminal ``Complete`` (with ``completionTime``) or ``Failed`` condition is added. ``kubectl wait
--for=condition=Complete`` therefore sees the same sequence as on a real cluster.

Counts come from the Pods that exist (a Job's Pods live until the Job goes), and never go down: a Pod a user
deletes by hand does not give a Job its failures back. Kubernetes tracks this with a Pod finalizer; ketch
keeps the simpler, equally restart-safe rule because Pods are only collected with their Job.

Retry backoff after a failed Pod is exponential from ``KETCH_JOB_BACKOFF_SECONDS`` (default 1 s, Kubernetes
uses 10 s: local processes fail and restart quickly), capped at 6 minutes as in Kubernetes.
"""

from __future__ import annotations

import copy
import datetime as dt
import os

from ketch.kinds.meta import get_condition, now, owner_reference, parse_time, set_condition
from ketch.machinery.errors import StatusError
from ketch.machinery.selectors import label_matches
from ketch.runtime import Controller, Key, Result

JOB = ("batch/v1", "Job")
POD = ("v1", "Pod")
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
MAX_BACKOFF = 360.0


def backoff_base() -> float:
    return float(os.environ.get("KETCH_JOB_BACKOFF_SECONDS", "1"))


def _terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _index(pod: dict) -> int | None:
    md = pod["metadata"]
    v = (md.get("annotations") or {}).get(INDEX_KEY) or (md.get("labels") or {}).get(INDEX_KEY)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def format_indexes(idx: set[int]) -> str:
    """Kubernetes' compressed interval format for completedIndexes: "0-2,4,6-7"."""
    out, run = [], []
    for i in sorted(idx):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_indexes(s: str | None) -> set[int]:
    out: set[int] = set()
    for part in (s or "").split(","):
        part = part.strip()
        if not part:
            continue
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _finished_at(pod: dict) -> dt.datetime | None:
    st = pod.get("status") or {}
    times = []
    for cs in st.get("containerStatuses") or []:
        t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t:
            times.append(t)
    return max(times) if times else None


def _exit_codes(pod: dict) -> list[tuple[str, int]]:
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is not None and "exitCode" in term:
            out.append((cs.get("name", ""), int(term["exitCode"])))
    return out


def _cause(pod: dict) -> str:
    """What a failed Pod's status says about why, for a Job's failure message (cheap: no log is read)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated") or {}
        if t.get("exitCode"):
            msg = (t.get("message") or "").strip()
            if len(msg) > 1024:
                msg = "..." + msg[-1024:]
            return (f"; last failed pod {pod['metadata']['name']}: container {cs.get('name')} exited with code {t['exitCode']}"
                    f" ({t.get('reason') or 'Error'})" + (f": {msg}" if msg else ""))
    return ""


def match_failure_rule(policy: dict | None, pod: dict) -> dict | None:
    """The first podFailurePolicy rule that matches a failed Pod (Kubernetes' order), or None."""
    for rule in (policy or {}).get("rules") or []:
        ec = rule.get("onExitCodes")
        if ec:
            codes = set(ec.get("values") or [])
            want = ec.get("operator", "In") == "In"
            for name, code in _exit_codes(pod):
                if ec.get("containerName") and ec["containerName"] != name:
                    continue
                if code != 0 and (code in codes) == want:
                    return rule
            continue
        for pc in rule.get("onPodConditions") or []:
            c = get_condition(pod, pc.get("type", ""))
            if c and c.get("status") == pc.get("status", "True"):
                return rule
    return None


class JobController(Controller):
    name = "job"
    kind = JOB
    owns = [POD]
    workers = 4

    async def reconcile(self, key: Key) -> Result | None:
        job = self.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        pods = self._pods(job)
        if self._finished(job):
            return self._after_finish(job, pods)

        active = [p for p in pods if not _terminal(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if not _terminal(p) and p["metadata"].get("deletionTimestamp")]
        succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))

        # -- failures, through the podFailurePolicy --------------------------------------------------------
        fail_reason: tuple[str, str] | None = None
        counted_failed = 0
        for p in failed_pods:
            rule = match_failure_rule(spec.get("podFailurePolicy"), p)
            action = (rule or {}).get("action", "Count")
            if action == "Ignore":
                continue
            if action == "FailJob" and fail_reason is None:
                fail_reason = ("PodFailurePolicy", f"Container of pod {key.namespace}/{p['metadata']['name']} failed, matching a FailJob rule of the podFailurePolicy{_cause(p)}")
            counted_failed += 1
        if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
            counted_failed += sum(int(cs.get("restartCount", 0)) for p in active for cs in (p.get("status") or {}).get("containerStatuses") or [])
        status["failed"] = max(int(status.get("failed", 0)), counted_failed)
        done_idx = {i for p in succeeded if (i := _index(p)) is not None and (completions is None or i < completions)}
        if indexed:
            done_idx |= parse_indexes(status.get("completedIndexes"))
            status["succeeded"] = len(done_idx)
            status["completedIndexes"] = format_indexes(done_idx)
        else:
            status["succeeded"] = max(int(status.get("succeeded", 0)), len(succeeded))

        # -- suspend / resume -------------------------------------------------------------------------------
        if spec.get("suspend"):
            for p in active:
                self._delete_pod(job, p)
            if set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended"):
                self.client.event(job, "Normal", "Suspended", "Job suspended")
            status.pop("startTime", None)
            self._counts(status, [], terminating + active)
            return self._write(job, status)
        susp = get_condition(job, "Suspended")
        if susp and susp.get("status") == "True":
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
            self.client.event(job, "Normal", "Resumed", "Job resumed")
        if not status.get("startTime"):
            status["startTime"] = now()

        # -- has the Job met its end? -----------------------------------------------------------------------
        met = get_condition({"status": status}, "SuccessCriteriaMet")
        if met is not None:
            fail_reason = None  # success was reached first; what follows is only cleanup
        elif fail_reason is None:
            fail_reason = self._check_failure(spec, status)
            if fail_reason is not None and fail_reason[0] == "BackoffLimitExceeded" and failed_pods:
                last = max(failed_pods, key=lambda p: _finished_at(p) or dt.datetime.min.replace(tzinfo=dt.UTC))
                fail_reason = (fail_reason[0], fail_reason[1] + _cause(last))
        if fail_reason is None and met is None and get_condition({"status": status}, "FailureTarget") is None:
            if self._succeeded(spec, status, active, succeeded, done_idx):
                set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods")
        tgt = get_condition({"status": status}, "FailureTarget")
        if fail_reason is not None and tgt is None:
            set_condition(status, "FailureTarget", "True", fail_reason[0], fail_reason[1])
            self.client.event(job, "Warning", fail_reason[0], fail_reason[1])
        ending = get_condition({"status": status}, "FailureTarget") or get_condition({"status": status}, "SuccessCriteriaMet")
        if ending is not None:
            for p in active:
                self._delete_pod(job, p)
            left = [p for p in self._pods(job) if not _terminal(p)]
            self._counts(status, [], left)
            if not left:  # as in Kubernetes, the terminal condition waits for the Job's Pods to stop
                if ending["type"] == "FailureTarget":
                    set_condition(status, "Failed", "True", ending["reason"], ending["message"])
                else:
                    status["completionTime"] = now()
                    set_condition(status, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")
                    self.client.event(job, "Normal", "Completed", "Job completed")
                self._counts(status, [], [])
                self._write(job, status)
                return self._after_finish(self.get(key) or job, [])
            self._write(job, status)
            return Result(requeue_after=1.0)

        # -- step toward parallelism -------------------------------------------------------------------------
        requeue: float | None = None
        want = self._wanted(spec, status, active, succeeded)
        if indexed:
            busy = {i for p in active if (i := _index(p)) is not None}
            todo = [i for i in range(int(completions or 0)) if i not in done_idx and i not in busy]
            missing = max(0, min(parallelism, len(todo) + len(busy)) - len(active))
        else:
            todo = []
            missing = max(0, want - len(active))
        if len(active) > want and not indexed:
            for p in sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)[: len(active) - want]:
                self._delete_pod(job, p)
                active.remove(p)
        if missing:
            wait = self._backoff_remaining(status, failed_pods)
            if wait > 0:
                requeue = wait
            else:
                for n in range(missing):
                    idx = todo[n] if indexed else None
                    active.append(self._create_pod(job, idx))
        self._counts(status, active, terminating)
        ads = spec.get("activeDeadlineSeconds")
        if ads is not None:
            start = parse_time(status["startTime"]) or dt.datetime.now(dt.UTC)
            left = (start + dt.timedelta(seconds=int(ads)) - dt.datetime.now(dt.UTC)).total_seconds()
            requeue = max(0.05, min(requeue if requeue is not None else left, left))
        self._write(job, status)
        return Result(requeue_after=requeue) if requeue is not None else None

    # -- pieces -------------------------------------------------------------------------------------------------

    def _pods(self, job: dict) -> list[dict]:
        """The Job's pods: matched by its selector's labels (narrowed in the store), owned by its uid."""
        ml = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or None
        return [p for p in self.client.list(POD, job["metadata"]["namespace"], ml) if self._owned(job, p)]

    @staticmethod
    def _owned(job: dict, pod: dict) -> bool:
        if not any(o.get("uid") == job["metadata"]["uid"] and o.get("controller") for o in pod["metadata"].get("ownerReferences") or []):
            return False
        return label_matches((job.get("spec") or {}).get("selector"), pod["metadata"].get("labels") or {})

    @staticmethod
    def _finished(job: dict) -> bool:
        return any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in (job.get("status") or {}).get("conditions") or []
        )

    @staticmethod
    def _counts(status: dict, active: list[dict], terminating: list[dict]) -> None:
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if _ready(p))
        status["terminating"] = len(terminating)
        if not status["active"]:
            status.pop("active")

    @staticmethod
    def _check_failure(spec: dict, status: dict) -> tuple[str, str] | None:
        if int(status.get("failed", 0)) > int(spec.get("backoffLimit", 6)):
            return ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        ads = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime"))
        if ads is not None and start is not None and (dt.datetime.now(dt.UTC) - start).total_seconds() >= int(ads):
            return ("DeadlineExceeded", "Job was active longer than specified deadline")
        return None

    @staticmethod
    def _succeeded(spec: dict, status: dict, active: list[dict], succeeded: list[dict], done_idx: set[int]) -> bool:
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed":
            return completions is not None and len(done_idx) >= int(completions)
        if completions is None:  # work-queue Job: done once one Pod succeeded and none is left running
            return bool(succeeded) and not active
        return int(status.get("succeeded", 0)) >= int(completions)

    @staticmethod
    def _wanted(spec: dict, status: dict, active: list[dict], succeeded: list[dict]) -> int:
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            return 0 if succeeded else parallelism
        return max(0, min(parallelism, int(completions) - int(status.get("succeeded", 0))))

    @staticmethod
    def _backoff_remaining(status: dict, failed_pods: list[dict]) -> float:
        n = int(status.get("failed", 0))
        if n == 0 or not failed_pods:
            return 0.0
        last = max((t for p in failed_pods if (t := _finished_at(p)) is not None), default=None)
        if last is None:
            return 0.0
        delay = min(backoff_base() * 2 ** (n - 1), MAX_BACKOFF)
        return (last + dt.timedelta(seconds=delay) - dt.datetime.now(dt.UTC)).total_seconds()

    def _create_pod(self, job: dict, index: int | None) -> dict:
        md = job["metadata"]
        tmpl = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        pmd = tmpl.get("metadata") or {}
        labels = dict(pmd.get("labels") or {})
        labels.setdefault("batch.kubernetes.io/job-name", md["name"])
        labels.setdefault("job-name", md["name"])
        labels.setdefault("batch.kubernetes.io/controller-uid", md["uid"])
        labels.setdefault("controller-uid", md["uid"])
        annotations = dict(pmd.get("annotations") or {})
        pspec = tmpl.get("spec") or {}
        prefix = f"{md['name']}-"
        if index is not None:
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            prefix = f"{md['name']}-{index}-"
            pspec.setdefault("hostname", f"{md['name']}-{index}")
            for c in (pspec.get("containers") or []) + (pspec.get("initContainers") or []):
                env = [e for e in c.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
                env.append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
                c["env"] = env
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": prefix,
                "namespace": md["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner_reference(job)],
            },
            "spec": pspec,
        }
        if not annotations:
            del pod["metadata"]["annotations"]
        created = self.client.create(pod)
        self.client.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", "job-controller")
        return created

    def _delete_pod(self, job: dict, pod: dict) -> None:
        try:
            self.client.delete(POD, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except StatusError as e:
            if e.code != 409:
                raise
        self.client.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}", "job-controller")

    def _write(self, job: dict, status: dict) -> None:
        if status != (job.get("status") or {}):
            new = copy.deepcopy(job)
            new["status"] = status
            self.client.update_status(new)

    def _after_finish(self, job: dict, pods: list[dict]) -> Result | None:
        """A finished Job keeps its Pods (for logs) until ``ttlSecondsAfterFinished``, then goes with them."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        st = job.get("status") or {}
        done = parse_time(st.get("completionTime"))
        if done is None:
            for c in st.get("conditions") or []:
                if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
                    done = parse_time(c.get("lastTransitionTime"))
        left = 0.0 if done is None else (done + dt.timedelta(seconds=int(ttl)) - dt.datetime.now(dt.UTC)).total_seconds()
        if left > 0:
            return Result(requeue_after=left)
        md = job["metadata"]
        self.client.delete(JOB, md["namespace"], md["name"], propagation="Background")
        return None


CONTROLLERS = [JobController]
