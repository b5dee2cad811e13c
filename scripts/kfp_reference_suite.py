"""Run KFP's own compiled test pipelines (kubeflow/pipelines test_data/sdk_compiled_pipelines/valid) through
ketch's IR loader, DAG engine and task launcher, each task a real process, and tabulate the outcome.

    python scripts/kfp_reference_suite.py DIR [--timeout 60] [--out results.json]

A pipeline counts as run when it ends SUCCEEDED (or FAILED for the ones under failing/, which are meant to
fail). Parameters without defaults get a plain value of their type. Others are classified: refused at
submission (with the reason), needs artifact inputs,
failed (with the first task error), or timed out.
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
warnings.filterwarnings("ignore")

from ketch.pipelines import engine, ir  # noqa: E402
from pipelines_helpers import ProcRunner  # noqa: E402


def run_one(path: Path, timeout: float) -> dict:
    try:
        p = ir.load(path.read_text())
    except ir.IRError as e:
        return {"outcome": "refused", "why": str(e)}
    # parameters without defaults get a plain value of their type, as a person running the sample would
    fill = {"STRING": "ketch", "NUMBER_INTEGER": 2, "NUMBER_DOUBLE": 1.5, "BOOLEAN": True, "LIST": ["a", "b"], "STRUCT": {"a": 1}}
    params = {k: fill[d.get("parameterType", "STRING")] for k, d in ((p.root.get("inputDefinitions") or {}).get("parameters") or {}).items()
              if "defaultValue" not in d and not d.get("isOptional") and d.get("parameterType", "STRING") in fill}
    need = [k for k, d in ((p.root.get("inputDefinitions") or {}).get("artifacts") or {}).items() if not d.get("isOptional")]
    if need:
        return {"outcome": "needs-artifact-inputs", "why": ", ".join(need)}
    if any(str((ex.get("container") or {}).get("image", "")) in ir.PLATFORM_OPS for ex in ((p.spec.get("deploymentSpec") or {}).get("executors") or {}).values()):
        # CreatePVC/DeletePVC make real claims that the kubelet mounts: run these through a server
        return {"outcome": "needs-server", "why": "kfp-kubernetes CreatePVC/DeletePVC (PVC objects and mounts)"}
    tmp = Path(tempfile.mkdtemp(prefix="kfpref-"))
    info = engine.RunInfo("ref", f"{p.name}-ref", "ref", str(tmp / "artifacts"), str(tmp / "tasks"), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    runner = ProcRunner(info)
    tasks: dict = {}
    t0 = time.time()
    while True:
        try:
            st, _ = engine.Engine(p, info, tasks, params, runner).step()
        except Exception as e:  # noqa: BLE001 - tabulate, do not stop the suite
            return {"outcome": "error", "why": f"{type(e).__name__}: {e}"}
        if st not in ("RUNNING", "CANCELING"):
            break
        if time.time() - t0 > timeout:
            for r in tasks.values():
                if r.get("pod") and r["state"] == "RUNNING":
                    runner.stop(r)
            return {"outcome": "timeout", "why": f"> {timeout}s"}
        time.sleep(0.05)
    errs = [f"{r['id']}: {r['error']}" for r in tasks.values() if r["state"] == "FAILED" and r["kind"] in ("container", "importer") and r.get("error")]
    if st == "SUCCEEDED":
        return {"outcome": "succeeded", "seconds": round(time.time() - t0, 2)}
    logs = ""
    for r in tasks.values():
        if r["state"] == "FAILED" and r["kind"] == "container":
            lp = Path(info.task_root) / engine.slug(r["id"])
            for f in sorted(lp.glob("log-*"))[-1:]:
                logs = f.read_text()[-400:]
    return {"outcome": st.lower(), "why": (errs[0] if errs else "")[:300], "log": logs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="comma-separated relative paths to run")
    a = ap.parse_args()
    results = {}
    only = set(a.only.split(",")) if a.only else None
    for path in sorted(Path(a.dir).rglob("*.yaml")):
        rel = str(path.relative_to(a.dir))
        if only and rel not in only:
            continue
        res = run_one(path, a.timeout)
        if "failing/" in rel and res["outcome"] == "failed":
            res["outcome"] = "failed-as-expected"
        results[rel] = res
        print(f"{res['outcome']:<20} {rel}  {res.get('why', '')[:160]}", flush=True)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    print(json.dumps(counts))
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
