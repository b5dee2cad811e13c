"""``ketch run pipeline.py|pipeline.yaml -p name=value``: submit a KFP pipeline to a running ketch through
the KFP REST API, show each task's progress as it happens, and exit non-zero unless the run succeeds."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from ketch.cli import progress
from ketch.machinery.connect import resolve

FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


def load_package(path: Path, pipeline: str | None) -> dict:
    """The body's pipeline_spec: a compiled YAML/JSON file as is, or a .py file compiled with kfp."""
    import yaml

    if path.suffix == ".py":
        from kfp import compiler
        from kfp.dsl.graph_component import GraphComponent

        spec = importlib.util.spec_from_file_location(f"_ketch_pipeline_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise typer.BadParameter(f"cannot import {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent.resolve()))
        spec.loader.exec_module(mod)
        found = {n: v for n, v in vars(mod).items() if isinstance(v, GraphComponent)}
        if pipeline:
            if pipeline not in found:
                raise typer.BadParameter(f"no pipeline {pipeline!r} in {path} (found: {', '.join(found) or 'none'})")
            func = found[pipeline]
        elif len(found) == 1:
            func = next(iter(found.values()))
        else:
            raise typer.BadParameter(f"{path} defines {len(found)} pipelines ({', '.join(found) or 'none'}); choose one with --pipeline")
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "pipeline.yaml"
            compiler.Compiler().compile(func, str(out))
            text = out.read_text()
    else:
        text = path.read_text()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) == 2:
        return {"pipeline_spec": docs[0], "platform_spec": docs[1]}
    return docs[0]


def parse_params(items: list[str]) -> dict:
    out = {}
    for it in items:
        if "=" not in it:
            raise typer.BadParameter(f"-p {it!r}: expected name=value")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def run(
    package: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="pipeline.py (compiled with kfp) or a compiled pipeline.yaml")],
    param: Annotated[list[str] | None, typer.Option("-p", "--param", help="Pipeline parameter name=value (JSON values are parsed); for an Input[...] artifact of the pipeline, name=URI.")] = None,
    server: Annotated[str | None, typer.Option("--server", help="ketch server URL (default: $KETCH_SERVER, else the kubeconfig's current context).")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Which @dsl.pipeline of a .py file to run.")] = None,
    name: Annotated[str | None, typer.Option(help="Run display name.")] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment name (created if missing; default 'Default').")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Let tasks use cached results.")] = True,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the run until it ends.")] = True,
) -> None:
    """Run a Kubeflow pipeline on ketch and follow it task by task."""
    spec = load_package(package, pipeline)
    params = parse_params(param or [])
    if not cache:
        _disable_cache(spec)
    conn = resolve(server)
    server = conn.server
    api = server + "/apis/v2beta1"
    with conn.client() as http:
        body: dict = {"display_name": name or package.stem, "pipeline_spec": spec, "runtime_config": {"parameters": params}}
        if experiment:
            body["experiment_id"] = _experiment(http, api, experiment)
        r = http.post(f"{api}/runs", json=body)
        if r.status_code >= 400:
            typer.echo(f"error: {r.json().get('message', r.text)}", err=True)
            raise typer.Exit(2)
        run_id = r.json()["run_id"]
        typer.echo(f"run {run_id} submitted ({server}/#/runs/details/{run_id})")
        if not wait:
            return
        run_obj, t0 = _follow(http, api, run_id, body["display_name"])
        state = run_obj["state"]
        outputs = (run_obj.get("pipeline_outputs") or {}).get("parameters")
        if outputs:
            typer.echo(f"outputs: {json.dumps(outputs)}")
        if state != "SUCCEEDED":
            for t in (run_obj.get("run_details") or {}).get("task_details") or []:
                if t["state"] == "FAILED" and t.get("pod_name"):
                    ns = run_obj.get("namespace") or "kubeflow"
                    for _ in range(10):  # the kubelet may still be writing the ended container's log
                        logs = http.get(f"{server.rstrip('/')}/api/v1/namespaces/{ns}/pods/{t['pod_name']}/log", params={"tailLines": 15})
                        if logs.status_code == 200 and logs.text.strip():
                            break
                        time.sleep(0.3)
                    if logs.status_code == 200 and logs.text.strip():
                        typer.echo(f"--- last lines of {t['task_id']} ({t['pod_name']}) ---\n{logs.text.rstrip()}")
        msg = (run_obj.get("error") or {}).get("message", "")
        done = f" ({run_obj['task_summary']} tasks)" if run_obj.get("task_summary") else ""
        typer.echo(f"run {run_id} {state} in {time.time() - t0:.2f}s{done}{': ' + msg if msg else ''}")
        if state != "SUCCEEDED":
            raise typer.Exit(1)


def _follow(http: httpx.Client, api: str, run_id: str, title: str) -> tuple[dict, float]:
    """Poll the run until it ends, printing a line for each task state change, and show how many of its
    tasks are done: a live bar under the lines on a terminal; in a pipe each line ends with the count
    (``[2/5 tasks]``) so CI logs read the same without escape codes. Returns the final run and the start time."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(highlight=False)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"), TimeElapsedColumn(),
                   console=console, disable=not console.is_terminal)
    seen: dict[str, str] = {}
    t0 = time.time()
    with bar:
        job = bar.add_task(title, total=None)
        while True:
            run_obj = http.get(f"{api}/runs/{run_id}").json()
            counts = progress.fraction(run_obj.get("task_summary"))
            if counts:
                bar.update(job, completed=counts[0], total=counts[1])
            tail = f"  [{counts[0]}/{counts[1]} tasks]" if counts and bar.disable else ""
            for t in (run_obj.get("run_details") or {}).get("task_details") or []:
                if t.get("kind") in ("dag", "loop", "iteration"):
                    continue
                st = t["state"] + (" (cached)" if t.get("cached") else "")
                if seen.get(t["task_id"]) != st:
                    seen[t["task_id"]] = st
                    extra = f"  {t['error']['message']}" if t.get("error") else ""
                    outs = t.get("parameters", {}).get("outputs") if t["state"] == "SUCCEEDED" else None
                    console.print(f"[{time.time() - t0:7.2f}s] {t['task_id']:<40} {st}{extra}{'  ' + json.dumps(outs) if outs else ''}{tail}",
                                  markup=False, soft_wrap=True)
            if run_obj.get("state") in FINAL:
                return run_obj, t0
            time.sleep(0.2)


def _experiment(http: httpx.Client, api: str, name: str) -> str:
    f = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]})
    found = http.get(f"{api}/experiments", params={"filter": f}).json().get("experiments") or []
    if found:
        return found[0]["experiment_id"]
    return http.post(f"{api}/experiments", json={"display_name": name}).json()["experiment_id"]


def _disable_cache(body: dict) -> None:
    spec = body.get("pipeline_spec", body)
    for comp in [spec.get("root", {}), *(spec.get("components") or {}).values()]:
        for t in ((comp.get("dag") or {}).get("tasks") or {}).values():
            t["cachingOptions"] = {}



def _suspend(run_id: str, server: str | None, value: bool) -> None:
    """Set spec.suspend of the PipelineRun behind a KFP run id (KFP's REST API has no pause call; the
    Kubernetes object is the way in, as ``kubectl patch pipelinerun ID --type merge`` would be)."""
    conn = resolve(server)
    base = conn.server + "/apis/pipelines.kubeflow.org/v1"
    with conn.client() as http:
        found = http.get(f"{base}/pipelineruns", params={"fieldSelector": f"metadata.name={run_id}"}).json().get("items") or []
        if not found:
            typer.echo(f"no run {run_id}", err=True)
            raise typer.Exit(1)
        ns = found[0]["metadata"]["namespace"]
        r = http.patch(f"{base}/namespaces/{ns}/pipelineruns/{run_id}", json={"spec": {"suspend": value or None}},
                       headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code >= 400:
            typer.echo(r.json().get("message", r.text), err=True)
            raise typer.Exit(1)
    typer.echo(f"run {run_id} {'paused: no new task starts; running tasks finish' if value else 'resumed'}")


def pause(
    run_id: Annotated[str, typer.Argument(help="The run id (kfp.Client's run_id).")],
    server: Annotated[str | None, typer.Option("--server", help="ketch server URL (default: $KETCH_SERVER, else the kubeconfig's current context).")] = None,
) -> None:
    """Pause a pipeline run (state PAUSED): tasks already running finish, no new task starts until resumed."""
    _suspend(run_id, server, True)


def resume(
    run_id: Annotated[str, typer.Argument(help="The run id (kfp.Client's run_id).")],
    server: Annotated[str | None, typer.Option("--server", help="ketch server URL (default: $KETCH_SERVER, else the kubeconfig's current context).")] = None,
) -> None:
    """Resume a paused pipeline run."""
    _suspend(run_id, server, False)
