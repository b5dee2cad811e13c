"""Shared by the pipelines tests: drive the DAG engine with the real launcher as a subprocess per task (the
same program a task Pod runs), so the engine and launcher are tested without a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from ketch.pipelines import engine, ir

warnings.filterwarnings("ignore", category=FutureWarning)
SRC = Path(__file__).resolve().parents[1] / "src"


class ProcRunner:
    def __init__(self, info: engine.RunInfo) -> None:
        self.info = info
        self.procs: dict[str, subprocess.Popen] = {}
        self.cache: dict[str, dict] = {}
        self.started: list[str] = []
        self.max_running = 0

    def pod_phase(self, rec: dict) -> str:
        p = self.procs.get(rec["pod"])
        if p is None:
            return "Missing"
        rc = p.poll()
        return "Running" if rc is None else ("Succeeded" if rc == 0 else "Failed")

    def start(self, rec: dict, task: dict) -> str:
        tdir = Path(task["taskDir"])
        tdir.mkdir(parents=True, exist_ok=True)
        f = tdir / f"task-{rec['attempt']}.json"
        f.write_text(json.dumps(task))
        (tdir / "result.json").unlink(missing_ok=True)
        name = f"{engine.slug(rec['id'])}-{rec['attempt']}"
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        for e in task.get("env") or []:
            env[e["name"]] = str(e.get("value", ""))
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "ketch.pipelines.launcher", str(f)], env=env,
                                            stdout=open(tdir / f"log-{rec['attempt']}", "w"), stderr=subprocess.STDOUT)
        self.started.append(rec["id"])
        running = sum(1 for p in self.procs.values() if p.poll() is None)
        self.max_running = max(self.max_running, running)
        return name

    def stop(self, rec: dict) -> None:
        self.procs[rec["pod"]].kill()

    def result(self, rec: dict) -> dict | None:
        p = Path(self.info.task_root) / engine.slug(rec["id"]) / "result.json"
        return json.loads(p.read_text()) if p.exists() else None

    def cache_get(self, k: str) -> dict | None:
        return self.cache.get(k)

    def cache_put(self, k: str, o: dict) -> None:
        self.cache[k] = o

    def note(self, m: str) -> None:
        pass


def compile_ir(func, tmp: Path) -> ir.Pipeline:
    from kfp import compiler

    path = tmp / f"{func.name if hasattr(func, 'name') else 'p'}.yaml"
    compiler.Compiler().compile(func, str(path))
    return ir.load(path.read_text())


def run_engine(p: ir.Pipeline, tmp: Path, params: dict | None = None, runner: ProcRunner | None = None,
               caching: bool | None = None, timeout: float = 90) -> tuple[str, dict, dict, ProcRunner]:
    info = engine.RunInfo("run-1", "run-1", "run-1", str(tmp / "artifacts"), str(tmp / "tasks"), "2026-01-01T00:00:00Z",
                          "2026-01-01T00:00:00Z", enable_caching=caching)
    runner = runner or ProcRunner(info)
    runner.info = info
    tasks: dict = {}
    deadline = time.time() + timeout
    while True:
        st, out = engine.Engine(p, info, tasks, dict(params or {}), runner).step()
        if st not in ("RUNNING", "CANCELING"):
            return st, out, tasks, runner
        if time.time() > deadline:
            raise AssertionError(f"run did not finish: {json.dumps(tasks, indent=1)[:4000]}")
        time.sleep(0.02)
