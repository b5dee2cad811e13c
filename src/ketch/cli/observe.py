"""``ketch logs RUN_ID [TASK] [-f]`` and ``ketch status``: what a pipeline task printed, and what is running
now — thin reads over the KFP and Kubernetes APIs, like the dashboard's home page."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer

from ketch.cli import progress
from ketch.machinery.connect import resolve

ServerOpt = Annotated[str | None, typer.Option("--server", help="ketch server URL (default: $KETCH_SERVER, else the kubeconfig's current context).")]
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


def _json(r: httpx.Response, what: str) -> Any:
    if r.status_code >= 400:
        try:
            msg = r.json().get("message") or r.text
        except ValueError:
            msg = r.text
        typer.echo(f"error: {what}: {msg}", err=True)
        raise typer.Exit(1)
    return r.json()


def logs(
    run_id: Annotated[str, typer.Argument(help="The run id (kfp.Client's run_id).")],
    task: Annotated[str | None, typer.Argument(help="A task's name (default: every task that has a Pod).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the task (or run) ends.")] = False,
    server: ServerOpt = None,
) -> None:
    """Print the logs of a pipeline run's tasks (their Pods' logs), optionally following them live."""
    conn = resolve(server)
    with conn.client(timeout=None) as http:
        run = _json(http.get(f"/apis/v2beta1/runs/{run_id}"), f"run {run_id}")
        ns = run.get("namespace") or "kubeflow"
        shown: set[str] = set()
        while True:
            tasks = [t for t in (run.get("run_details") or {}).get("task_details") or [] if t.get("pod_name")]
            if task:
                tasks = [t for t in tasks if task in (t.get("display_name"), t.get("task_id"))]
            for t in tasks:
                if t["pod_name"] in shown:
                    continue
                live = follow and t.get("state") not in FINAL
                if not live and t.get("state") not in FINAL:
                    continue
                shown.add(t["pod_name"])
                if not task:
                    typer.echo(f"--- {t.get('display_name') or t['task_id']} ({t['pod_name']}) ---")
                params = {"follow": "true"} if live else {}
                with http.stream("GET", f"/api/v1/namespaces/{ns}/pods/{t['pod_name']}/log", params=params) as r:
                    if r.status_code >= 400:
                        r.read()
                        typer.echo(f"({r.status_code}: {r.text.strip()[:200]})", err=True)
                        continue
                    for chunk in r.iter_text():
                        typer.echo(chunk, nl=False)
            if not follow or run.get("state") in FINAL and all(t["pod_name"] in shown for t in tasks):
                if task and not tasks:
                    typer.echo(f"error: run {run_id} has no task {task!r} with a Pod (yet)", err=True)
                    raise typer.Exit(1)
                return
            time.sleep(0.5)
            run = _json(http.get(f"/apis/v2beta1/runs/{run_id}"), f"run {run_id}")


def _notebook_state(o: dict) -> str:
    if "kubeflow-resource-stopped" in ((o.get("metadata") or {}).get("annotations") or {}):
        return "Stopped"
    return "Ready" if (o.get("status") or {}).get("readyReplicas") else "NotReady"


def _condition_state(o: dict) -> str:
    conds = (o.get("status") or {}).get("conditions") or []
    true = [c for c in conds if c.get("status") == "True"]
    return (true[-1] if true else conds[-1])["type"] if conds else "Pending"


def _job_state(o: dict) -> str:
    st = _condition_state(o)
    return "Running" if st == "Pending" and (o.get("status") or {}).get("active") else st


# (kind, collection path, how to read its state, how far it has got): the home page's list, in its order
KINDS: list[tuple[str, str, Callable[[dict], str], Callable[[dict], progress.Progress | None] | None]] = [
    ("PipelineRun", "/apis/pipelines.kubeflow.org/v1/pipelineruns", lambda o: (o.get("status") or {}).get("state") or "PENDING", progress.pipeline_run),
    ("PyTorchJob", "/apis/kubeflow.org/v1/pytorchjobs", _condition_state, progress.training_job),
    ("TFJob", "/apis/kubeflow.org/v1/tfjobs", _condition_state, progress.training_job),
    ("XGBoostJob", "/apis/kubeflow.org/v1/xgboostjobs", _condition_state, progress.training_job),
    ("JAXJob", "/apis/kubeflow.org/v1/jaxjobs", _condition_state, progress.training_job),
    ("PaddleJob", "/apis/kubeflow.org/v1/paddlejobs", _condition_state, progress.training_job),
    ("MPIJob", "/apis/kubeflow.org/v2beta1/mpijobs", _condition_state, progress.training_job),
    ("TrainJob", "/apis/trainer.kubeflow.org/v1alpha1/trainjobs", _condition_state, progress.training_job),
    ("Experiment", "/apis/kubeflow.org/v1beta1/experiments", _condition_state, progress.experiment),
    ("Notebook", "/apis/kubeflow.org/v1/notebooks", _notebook_state, None),
    ("InferenceService", "/apis/serving.kserve.io/v1beta1/inferenceservices", _condition_state, None),
    ("Job", "/apis/batch/v1/jobs", _job_state, progress.batch_job),
]
DONE = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED", "Succeeded", "Failed", "Complete", "Completed", "Stopped"}


def _rows(http: httpx.Client, namespace: str | None, everything: bool) -> list[tuple[str, str, str, str, progress.Progress | None, str]]:
    """(kind, namespace, name, state, progress, creationTimestamp) of what runs (or ran, with --all), newest first."""
    rows = []
    for kind, path, state_of, progress_of in KINDS:
        if namespace:
            g, _, plural = path.rpartition("/")
            path = f"{g}/namespaces/{namespace}/{plural}"
        r = http.get(path)
        if r.status_code == 404:
            continue  # the component is not running here
        for o in _json(r, kind)["items"]:
            st = state_of(o)
            if st in DONE and not everything:
                continue
            md = o["metadata"]
            rows.append((kind, md.get("namespace", ""), md["name"], st, progress_of(o) if progress_of else None, md.get("creationTimestamp") or ""))
    rows.sort(key=lambda r: r[5], reverse=True)
    return rows


def status(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: all).")] = None,
    everything: Annotated[bool, typer.Option("--all", "-a", help="Also what has finished.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the view up to date (bars move on a terminal; a new table on each change otherwise) until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes with --watch.", min=0.2)] = 1.0,
    server: ServerOpt = None,
) -> None:
    """What is running now: pipeline runs, training jobs, experiments, notebooks, inference services, Jobs,
    with how far each has got (tasks, replicas, trials, completions): a bar on a terminal, "3/5" in a pipe."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    conn = resolve(server)
    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: whole names, not ellipses
    tty = console.is_terminal
    where = f"namespace {namespace}" if namespace else "all namespaces"
    with conn.client() as http:
        def view() -> tuple[Any, tuple]:
            rows = _rows(http, namespace, everything)
            if not rows:
                return f"nothing {'here' if everything else 'running'} ({where})", ()
            table = Table(title=f"ketch at {conn.server}, {where}")
            for col in ("KIND", "NAMESPACE", "NAME", "STATE", "PROGRESS", "AGE"):
                table.add_column(col)
            for kind, ns, name, st, prog, ts in rows:
                table.add_row(kind, ns, name, st, progress.cell(prog, tty), _age(ts))
            return table, tuple((r[:4], r[4] and r[4].text()) for r in rows)

        shown, key = view()
        if not watch:
            console.print(shown)
            return
        try:
            if tty:
                with Live(shown, console=console, refresh_per_second=4) as live:
                    while True:
                        time.sleep(interval)
                        live.update(view()[0])
            console.print(shown)
            while True:  # a pipe: print again only when something changed (not for the ages alone)
                time.sleep(interval)
                shown, new = view()
                if new != key:
                    key = new
                    console.print(shown)
        except KeyboardInterrupt:
            return


def _age(ts: str | None) -> str:
    if not ts:
        return ""
    import datetime as dt

    s = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))).total_seconds()
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit}"
    return f"{int(s)}s"
