"""How far a long operation has got, read from an object's status, and how the CLI shows it: a rich bar on a
terminal, plain ``done/total`` text when stdout is a pipe or a file (CI logs, scripts, tests), so what a
script greps for is the same words a person sees.

One reader per kind, in the terms the operators themselves report: a PipelineRun's leaf tasks (its
``status.summary``, kept by the pipelines controller), a training job's replicas (``replicaStatuses``, or a
TrainJob's ``jobsStatus``), an Experiment's finished trials against ``maxTrialCount``, a batch Job's
succeeded Pods against ``completions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Progress:
    done: int
    total: int
    unit: str = ""  # what is counted ("tasks", "trials", ...)
    extra: str = ""  # more words after the count ("1 active")

    def text(self) -> str:
        """The words of the count, identical on a terminal and in a pipe: ``3/5 tasks, 1 running``."""
        s = f"{self.done}/{self.total}" + (f" {self.unit}" if self.unit else "")
        return s + (f", {self.extra}" if self.extra else "")


def fraction(s: Any) -> tuple[int, int] | None:
    """``"3/5"`` -> (3, 5); None for anything else (an old object without a summary)."""
    if not isinstance(s, str) or "/" not in s:
        return None
    a, _, b = s.partition("/")
    try:
        return int(a), int(b)
    except ValueError:
        return None


def pipeline_run(o: dict) -> Progress | None:
    f = fraction((o.get("status") or {}).get("summary"))
    return Progress(*f, unit="tasks") if f else None


def training_job(o: dict) -> Progress | None:
    """Replicas succeeded of those the spec asks for (Kubeflow's v1 jobs: ``*ReplicaSpecs``), with how many
    are active (running or starting); a Trainer v2 TrainJob counts the Pods of its steps (``jobsStatus``)."""
    spec, st = o.get("spec") or {}, o.get("status") or {}
    if "jobsStatus" in st:
        js = st.get("jobsStatus") or []
        ok = sum(int(j.get("succeeded") or 0) for j in js)
        active = sum(int(j.get("active") or 0) for j in js)
        total = ok + active + sum(int(j.get("failed") or 0) for j in js)
        return Progress(ok, total, "Pods succeeded", f"{sum(int(j.get('ready') or 0) for j in js)} ready") if total else None
    specs = next((v for k, v in spec.items() if k.endswith("ReplicaSpecs") and isinstance(v, dict)), None)
    if not specs:
        return None
    total = sum(int((r or {}).get("replicas", 1) or 0) for r in specs.values())
    rs = (st.get("replicaStatuses") or {}).values()
    ok = sum(int(r.get("succeeded") or 0) for r in rs)
    active = sum(int(r.get("active") or 0) for r in rs)
    return Progress(ok, total, "replicas succeeded", f"{active} active")


def experiment(o: dict) -> Progress | None:
    """Trials that have ended (succeeded, failed, killed, early-stopped, without metrics) of maxTrialCount,
    the way Katib's UI counts them."""
    spec, st = o.get("spec") or {}, o.get("status") or {}
    keys = ("trialsSucceeded", "trialsFailed", "trialsKilled", "trialsEarlyStopped", "trialMetricsUnavailable")
    done = sum(int(st.get(k) or 0) for k in keys)
    total = int(spec.get("maxTrialCount") or st.get("trials") or 0)
    return Progress(done, total, "trials", f"{int(st.get('trialsRunning') or 0)} running") if total else None


def batch_job(o: dict) -> Progress | None:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    total = int(spec.get("completions") or 1)
    return Progress(int(st.get("succeeded") or 0), total, "completions", f"{int(st.get('active') or 0)} active")


def cell(p: Progress | None, tty: bool) -> Any:
    """A table cell: a bar and the count on a terminal, the count alone otherwise."""
    if p is None:
        return ""
    if not tty:
        return p.text()
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    g = Table.grid(padding=(0, 1))
    g.add_row(ProgressBar(total=max(p.total, 1), completed=min(p.done, p.total), width=20), p.text())
    return g
