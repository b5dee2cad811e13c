"""Metadata and lineage in the spirit of ML Metadata, read from the runs themselves.

Every task record of a PipelineRun is an execution; its input and output artifacts (with stable ids derived
from their URIs) are the events linking executions and artifacts; each run is a context, as is each
experiment. Deriving them from the run objects keeps one source of truth: there is nothing to keep in step,
and deleting a run removes its lineage with it. Queries scan runs, which is fine at one machine's scale.
"""

from __future__ import annotations

from typing import Any

from ketch.pipelines import ir

LEAF = ir.LEAF_KINDS


def _executions(runs: list[dict]):
    for run in runs:
        for tid, r in ((run.get("status") or {}).get("tasks") or {}).items():
            if r["kind"] in LEAF:
                yield run, tid, r


def execution_json(run: dict, tid: str, r: dict) -> dict[str, Any]:
    return {
        "execution_id": f"{run['metadata']['name']}/{tid}", "run_id": run["metadata"]["name"], "task_id": tid, "task_name": r["name"],
        "display_name": r.get("displayName") or r["name"], "type": "system.ImporterExecution" if r["kind"] == "importer" else "system.ContainerExecution",
        "state": r["state"], "cached": bool(r.get("cached")), "start_time": r.get("startTime"), "end_time": r.get("endTime"),
        "parameters": {"inputs": (r.get("inputs") or {}).get("parameters", {}), "outputs": (r.get("outputs") or {}).get("parameters", {})},
        "events": [
            {"type": "INPUT", "name": n, "artifact_id": a.get("id")} for n, v in (r.get("inputs") or {}).get("artifacts", {}).items() for a in v
        ] + [
            {"type": "OUTPUT", "name": n, "artifact_id": a.get("id")} for n, v in (r.get("outputs") or {}).get("artifacts", {}).items() for a in v
        ],
    }


def _art(a: dict) -> dict:
    return {"artifact_id": a.get("id"), "name": a.get("name"), "uri": a.get("uri"), "type": (a.get("type") or {}).get("schemaTitle", "system.Artifact"), "metadata": a.get("metadata") or {}}


def artifacts(runs: list[dict], run_id: str | None = None, uri: str | None = None) -> list[dict]:
    seen: dict[str, dict] = {}
    for run, tid, r in _executions(runs):
        if run_id and run["metadata"]["name"] != run_id:
            continue
        if r["state"] not in ("SUCCEEDED", "SKIPPED"):
            continue
        for n, v in (r.get("outputs") or {}).get("artifacts", {}).items():
            for a in v:
                if a.get("id") and (not uri or a.get("uri") == uri) and a["id"] not in seen:
                    d = _art(a)
                    d.update(run_id=run["metadata"]["name"], producer_task_id=tid, output_name=n)
                    seen[a["id"]] = d
    return list(seen.values())


def lineage(runs: list[dict], artifact_id: str) -> dict | None:
    """The artifact, the execution that produced it, and every execution that consumed it."""
    found = None
    producers, consumers = [], []
    for run, tid, r in _executions(runs):
        for _n, v in (r.get("outputs") or {}).get("artifacts", {}).items():
            for a in v:
                if a.get("id") == artifact_id and r["state"] == "SUCCEEDED":
                    found = found or _art(a)
                    producers.append(execution_json(run, tid, r))
        for _n, v in (r.get("inputs") or {}).get("artifacts", {}).items():
            for a in v:
                if a.get("id") == artifact_id:
                    found = found or _art(a)
                    consumers.append(execution_json(run, tid, r))
    if found is None:
        return None
    return {"artifact": found, "produced_by": producers, "consumed_by": consumers}


def executions(runs: list[dict], run_id: str | None = None) -> list[dict]:
    return [execution_json(run, tid, r) for run, tid, r in _executions(runs) if not run_id or run["metadata"]["name"] == run_id]


def contexts(runs: list[dict], experiments: list[dict]) -> list[dict]:
    out = [{"type": "system.PipelineRun", "name": r["metadata"]["name"], "pipeline": ((r.get("spec") or {}).get("pipelineSpec") or {}).get("pipelineInfo", {}).get("name"),
            "experiment_id": (r.get("spec") or {}).get("experimentId")} for r in runs]
    out += [{"type": "system.Experiment", "name": e["metadata"]["name"], "display_name": (e.get("spec") or {}).get("displayName")} for e in experiments]
    return out
