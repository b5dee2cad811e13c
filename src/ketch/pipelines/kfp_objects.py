"""KFP's REST resources <-> ketch objects. Every KFP entity is an object in the store (namespace ``kubeflow``
unless the caller names one), so `kubectl get pipelineruns,pipelines,recurringruns -A` shows what the KFP
API shows, and the API's JSON (snake_case, int64 as strings, RFC3339 times) is made here."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

GROUP = "pipelines.kubeflow.org/v1"
RUN = (GROUP, "PipelineRun")
EXPERIMENT = (GROUP, "PipelineExperiment")
PIPELINE = (GROUP, "Pipeline")
VERSION = (GROUP, "PipelineVersion")
RECURRING = (GROUP, "RecurringRun")
NS = "kubeflow"
EPOCH = "1970-01-01T00:00:00Z"
LABEL_EXPERIMENT = "pipelines.kubeflow.org/experiment-id"
LABEL_PIPELINE = "pipelines.kubeflow.org/pipeline-id"
LABEL_RECURRING = "pipelines.kubeflow.org/recurring-run-id"


def new_id() -> str:
    return str(uuid.uuid4())


def g(body: dict, snake: str, default: Any = None) -> Any:
    """A request field by its snake_case name or its lowerCamelCase json name (protojson accepts both)."""
    if snake in body:
        return body[snake]
    parts = snake.split("_")
    camel = parts[0] + "".join(p.title() for p in parts[1:])
    return body.get(camel, default)


def ts(obj: dict) -> str:
    return obj["metadata"].get("creationTimestamp") or EPOCH


def epoch(s: str | None) -> float:
    if not s:
        return 0.0
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def experiment_json(o: dict) -> dict:
    s = o.get("spec") or {}
    return {
        "experiment_id": o["metadata"]["name"], "display_name": s.get("displayName", ""), "description": s.get("description", ""),
        "created_at": ts(o), "namespace": s.get("namespace", ""), "storage_state": s.get("storageState", "AVAILABLE"),
        "last_run_created_at": (o.get("status") or {}).get("lastRunCreatedAt", EPOCH),
    }


def pipeline_json(o: dict) -> dict:
    s = o.get("spec") or {}
    return {
        "pipeline_id": o["metadata"]["name"], "display_name": s.get("displayName", ""), "name": s.get("name") or s.get("displayName", ""),
        "description": s.get("description", ""), "created_at": ts(o), "namespace": s.get("namespace", ""), "tags": s.get("tags") or {},
    }


def version_json(o: dict, with_spec: bool = True) -> dict:
    s = o.get("spec") or {}
    d = {
        "pipeline_id": s.get("pipelineId", ""), "pipeline_version_id": o["metadata"]["name"], "display_name": s.get("displayName", ""),
        "name": s.get("name") or s.get("displayName", ""), "description": s.get("description", ""), "created_at": ts(o),
        "code_source_url": s.get("codeSourceUrl", ""), "tags": s.get("tags") or {},
    }
    if s.get("packageUrl"):
        d["package_url"] = {"pipeline_url": s["packageUrl"]}
    if with_spec:
        d["pipeline_spec"] = s.get("pipelineSpec") if not s.get("platformSpec") else {"pipeline_spec": s.get("pipelineSpec"), "platform_spec": s.get("platformSpec")}
    return d


def task_details(run: dict) -> list[dict]:
    st = run.get("status") or {}
    out = []
    children: dict[str, list] = {}
    for tid, r in (st.get("tasks") or {}).items():
        children.setdefault(r.get("parent") or "", []).append(tid)
    for tid, r in (st.get("tasks") or {}).items():
        d: dict[str, Any] = {
            "run_id": run["metadata"]["name"], "task_id": tid, "display_name": r.get("displayName") or r["name"],
            "create_time": r.get("createTime", EPOCH), "start_time": r.get("startTime", EPOCH), "end_time": r.get("endTime", EPOCH),
            "state": r["state"], "parent_task_id": r.get("parent", ""),
            "inputs": {n: {"artifact_ids": [a.get("id", "") for a in v]} for n, v in (r.get("inputs") or {}).get("artifacts", {}).items()},
            "outputs": {n: {"artifact_ids": [a.get("id", "") for a in v]} for n, v in (r.get("outputs") or {}).get("artifacts", {}).items()},
            "child_tasks": [{"task_id": c} for c in children.get(tid, [])],
            # ketch extras (ignored by kfp_server_api's models; read them with plain HTTP):
            "task_name": r["name"], "kind": r["kind"], "cached": bool(r.get("cached")), "attempts": r.get("attempt", 0),
            "parameters": {"inputs": (r.get("inputs") or {}).get("parameters", {}), "outputs": (r.get("outputs") or {}).get("parameters", {})},
            "artifacts": {"inputs": (r.get("inputs") or {}).get("artifacts", {}), "outputs": (r.get("outputs") or {}).get("artifacts", {})},
        }
        pod = r.get("pod") or (r.get("failedPods") or [None])[-1]
        if pod:
            d["pod_name"] = pod
            d["executor_detail"] = {"main_job": pod, "failed_main_jobs": r.get("failedPods") or []}
        if r.get("error") and r["state"] in ("FAILED", "CANCELED"):
            d["error"] = {"code": 2, "message": r["error"]}
        out.append(d)
    return out


def run_json(o: dict, details: bool = True) -> dict:
    s = o.get("spec") or {}
    st = o.get("status") or {}
    md = o["metadata"]
    d: dict[str, Any] = {
        "run_id": md["name"], "experiment_id": s.get("experimentId", ""), "display_name": s.get("displayName") or md["name"],
        "description": s.get("description", ""), "storage_state": s.get("storageState", "AVAILABLE"),
        "runtime_config": {"parameters": (s.get("runtimeConfig") or {}).get("parameters") or {}, "pipeline_root": (s.get("runtimeConfig") or {}).get("pipelineRoot", "")},
        "service_account": s.get("serviceAccount", ""), "created_at": ts(o), "scheduled_at": s.get("scheduledAt") or ts(o),
        "finished_at": st.get("finishedAt", EPOCH), "state": st.get("state") or "PENDING",
        "state_history": st.get("stateHistory") or [], "recurring_run_id": s.get("recurringRunId", ""),
        "namespace": md.get("namespace", ""),
        "pipeline_outputs": st.get("outputs") or {},
    }
    if s.get("pipelineVersionReference"):
        d["pipeline_version_reference"] = {"pipeline_id": s["pipelineVersionReference"].get("pipelineId", ""), "pipeline_version_id": s["pipelineVersionReference"].get("pipelineVersionId", "")}
        d["pipeline_version_id"] = d["pipeline_version_reference"]["pipeline_version_id"]
    if details:
        d["pipeline_spec"] = s.get("pipelineSpec") or {}
        d["run_details"] = {"task_details": task_details(o)}
    if st.get("error"):
        d["error"] = st["error"]
    if st.get("summary"):  # a ketch extra, as task_details' are: "done/total" leaf tasks, for progress bars
        d["task_summary"] = st["summary"]
    return d


def recurring_json(o: dict) -> dict:
    s = o.get("spec") or {}
    st = o.get("status") or {}
    trig = s.get("trigger") or {}
    d = {
        "recurring_run_id": o["metadata"]["name"], "display_name": s.get("displayName", ""), "description": s.get("description", ""),
        "runtime_config": {"parameters": (s.get("runtimeConfig") or {}).get("parameters") or {}, "pipeline_root": (s.get("runtimeConfig") or {}).get("pipelineRoot", "")},
        "service_account": s.get("serviceAccount", ""), "max_concurrency": str(s.get("maxConcurrency", 1)), "trigger": trig,
        "mode": s.get("mode", "ENABLE"), "created_at": ts(o), "updated_at": st.get("updatedAt") or ts(o),
        "status": "ENABLED" if s.get("mode", "ENABLE") == "ENABLE" else "DISABLED", "no_catchup": bool(s.get("noCatchup")),
        "namespace": o["metadata"].get("namespace", ""), "experiment_id": s.get("experimentId", ""),
    }
    if s.get("pipelineSpec"):
        d["pipeline_spec"] = s["pipelineSpec"]
    if s.get("pipelineVersionReference"):
        d["pipeline_version_reference"] = {"pipeline_id": s["pipelineVersionReference"].get("pipelineId", ""), "pipeline_version_id": s["pipelineVersionReference"].get("pipelineVersionId", "")}
    return d


# -- list filters, sorting, paging (KFP's list_request_util semantics) ---------------------------------------

OPS = {1: "EQUALS", 2: "NOT_EQUALS", 3: "GREATER_THAN", 5: "GREATER_THAN_EQUALS", 6: "LESS_THAN", 7: "LESS_THAN_EQUALS", 8: "IN", 9: "IS_SUBSTRING"}
_ALIASES = {"id": None, "name": "display_name", "created_at": "created_at", "run_id": "run_id"}


class FilterError(ValueError):
    pass


def parse_filter(text: str | None) -> list[dict]:
    if not text:
        return []
    try:
        f = json.loads(text)
    except ValueError as e:
        raise FilterError(f"filter: not valid JSON: {e}") from e
    if not isinstance(f, dict):
        raise FilterError("filter: must be a JSON object with a list of predicates")
    preds = f.get("predicates") or []
    if not isinstance(preds, list) or not all(isinstance(p, dict) for p in preds):
        raise FilterError("filter.predicates: must be a list of objects")
    for p in preds:
        if not isinstance(p.get("key", ""), str):
            raise FilterError("filter.predicates.key: must be a string")
        op = p.get("operation", p.get("op"))
        if isinstance(op, int):
            op = OPS.get(op)
        if op not in OPS.values():
            raise FilterError(f"filter: unsupported operation {p.get('operation')!r}")
        p["_op"] = op
        p["_key"] = p.get("key", "")
    return preds


def _pred_value(p: dict) -> Any:
    for k in ("string_value", "stringValue", "int_value", "intValue", "long_value", "longValue", "timestamp_value", "timestampValue"):
        if k in p:
            return p[k]
    for k in ("string_values", "stringValues", "int_values", "intValues", "long_values", "longValues"):
        if k in p:
            return (p[k] or {}).get("values") or []
    return None


def _field(d: dict, key: str) -> Any:
    if key in d:
        return d[key]
    if key == "name" and "display_name" in d:
        return d["display_name"]
    if key.endswith(".id") or key == "id":
        for k in d:
            if k.endswith("_id"):
                return d[k]
    if "." in key:  # e.g. "run_details.state"
        cur: Any = d
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        return cur
    return None


def matches(d: dict, preds: list[dict]) -> bool:
    for p in preds:
        have = _field(d, p["_key"])
        want = _pred_value(p)
        op = p["_op"]
        if p["_key"].endswith("_at") and isinstance(have, str):
            have = epoch(have)
            want = epoch(want) if isinstance(want, str) and not str(want).isdigit() else float(want or 0)
        elif isinstance(want, str) and isinstance(have, int | float) and not isinstance(have, bool):
            try:
                want = float(want)
            except ValueError:
                pass
        ok = _compare(op, have, want)
        if not ok:
            return False
    return True


def _compare(op: str, have: Any, want: Any) -> bool:
    try:
        if op == "EQUALS":
            return have == want
        if op == "NOT_EQUALS":
            return have != want
        if op == "GREATER_THAN":
            return have > want
        if op == "GREATER_THAN_EQUALS":
            return have >= want
        if op == "LESS_THAN":
            return have < want
        if op == "LESS_THAN_EQUALS":
            return have <= want
        if op == "IN":
            return have in (want or [])
        return str(want) in str(have or "")
    except TypeError:
        return False


def page(items: list[dict], sort_by: str | None, page_size: str | None, page_token: str | None) -> tuple[list[dict], str, int]:
    key, desc = "created_at", False
    if sort_by:
        parts = sort_by.split()
        key = parts[0]
        desc = len(parts) > 1 and parts[1].lower() == "desc"
    if key == "name":
        key = "display_name"
    items = sorted(items, key=lambda d: (str(_field(d, key) or ""), str(next((v for k, v in d.items() if k.endswith("_id")), ""))), reverse=desc)
    total = len(items)
    start = int(page_token) if page_token and page_token.isdigit() else 0
    size = int(page_size) if page_size and str(page_size).isdigit() and int(page_size) > 0 else 0
    if size:
        chunk = items[start:start + size]
        nxt = str(start + size) if start + size < total else ""
    else:
        chunk, nxt = items[start:], ""
    return chunk, nxt, total
