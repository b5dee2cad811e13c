"""``ketch logs RUN_ID [TASK] [-f]`` and ``ketch status``: what a pipeline task printed, and what is running
now — thin reads over the KFP and Kubernetes APIs, like the dashboard's home page."""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer

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


# (what, apiVersion path, how to read its state)
KINDS = [
    ("PipelineRun", "/apis/pipelines.kubeflow.org/v1/pipelineruns", lambda o: (o.get("status") or {}).get("state") or "PENDING"),
    ("PyTorchJob", "/apis/kubeflow.org/v1/pytorchjobs", None),
    ("TFJob", "/apis/kubeflow.org/v1/tfjobs", None),
    ("XGBoostJob", "/apis/kubeflow.org/v1/xgboostjobs", None),
    ("TrainJob", "/apis/trainer.kubeflow.org/v1alpha1/trainjobs", None),
    ("Experiment", "/apis/kubeflow.org/v1beta1/experiments", None),
    ("Notebook", "/apis/kubeflow.org/v1/notebooks", lambda o: "Ready" if (o.get("status") or {}).get("readyReplicas") else "NotReady"),
    ("InferenceService", "/apis/serving.kserve.io/v1beta1/inferenceservices", None),
    ("Job", "/apis/batch/v1/jobs", None),
]


def _condition_state(o: dict) -> str:
    conds = (o.get("status") or {}).get("conditions") or []
    true = [c for c in conds if c.get("status") == "True"]
    return (true[-1] if true else conds[-1])["type"] if conds else "Pending"


def status(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: all).")] = None,
    everything: Annotated[bool, typer.Option("--all", "-a", help="Also what has finished.")] = False,
    server: ServerOpt = None,
) -> None:
    """What is running now: pipeline runs, training jobs, experiments, notebooks, inference services."""
    from rich.console import Console
    from rich.table import Table

    done = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED", "Succeeded", "Failed", "Complete"}
    conn = resolve(server)
    table = Table(title=f"ketch at {conn.server}" + (f", namespace {namespace}" if namespace else ", all namespaces"))
    for col in ("KIND", "NAMESPACE", "NAME", "STATE", "AGE"):
        table.add_column(col)
    rows = 0
    with conn.client() as http:
        for kind, path, state_of in KINDS:
            if namespace:
                g, _, plural = path.rpartition("/")
                path = f"{g}/namespaces/{namespace}/{plural}"
            r = http.get(path)
            if r.status_code == 404:
                continue  # the component is not running here
            items = _json(r, kind)["items"]
            for o in items:
                st = (state_of or _condition_state)(o)
                if st in done and not everything:
                    continue
                md = o["metadata"]
                table.add_row(kind, md.get("namespace", ""), md["name"], st, _age(md.get("creationTimestamp")))
                rows += 1
    import sys

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: whole names, not ellipses
    if rows:
        console.print(table)
    else:
        console.print(f"nothing {'here' if everything else 'running'} ({'namespace ' + namespace if namespace else 'all namespaces'})")


def _age(ts: str | None) -> str:
    if not ts:
        return ""
    import datetime as dt

    s = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))).total_seconds()
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit}"
    return f"{int(s)}s"
