"""Chaos: a mixed workload with ketch kill -9'd at random moments, several times.

Running together: a pipeline with a retried task and a ParallelFor, batch Jobs, a PyTorchJob (if torch is
installed), an InferenceService under light load and a small tuning Experiment, while a writer creates
ConfigMaps as fast as it can. ketch is killed (SIGKILL) at random moments and started again. Afterwards:
every write ketch acknowledged exists, every workload ends as it would have without the kills (Jobs
Complete, the run SUCCEEDED, trials counted once) and each piece of work ran exactly once (counted in
files), the served model's Pods were adopted rather than recreated, and once ketch stops no process of
its is left.

CI runs 3 kills (about a minute). ``KETCH_CHAOS_KILLS=20`` is the long mode; ``KETCH_CHAOS_SEED`` replays
a run's kill moments. The figures are printed and written to test-artifacts/chaos.json.
"""

import importlib.util
import json
import os
import random
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import List  # noqa: UP035 - kfp needs typing's generics

import httpx
import yaml
from kfp import dsl

from conftest import ARTIFACTS, make_ketch, wait_for
from serving_helpers import IRIS_ROW, train_sklearn
from test_pods_exit_codes import ketch_processes
from test_serving_isvc import isvc_yaml

warnings.filterwarnings("ignore", category=FutureWarning)
KILLS = int(os.environ.get("KETCH_CHAOS_KILLS") or 3)
SEED = int(os.environ.get("KETCH_CHAOS_SEED") or random.randrange(1 << 30))
TORCH = importlib.util.find_spec("torch") is not None


@dsl.component
def flaky(marker: str) -> str:
    import os
    import time

    n = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as f:
        f.write(str(n + 1))
    time.sleep(0.5)
    if n < 2:
        raise RuntimeError(f"attempt {n}")
    return f"ok after {n}"


@dsl.component
def items() -> List[int]:  # noqa: UP006
    return [0, 1, 2]


@dsl.component
def work(i: int, marker: str) -> int:
    import time

    with open(marker, "a") as f:
        f.write(f"{i}\n")
    time.sleep(1.5)
    return i * 10


@dsl.pipeline
def chaos_pipeline(m1: str, m2: str) -> List[int]:  # noqa: UP006
    flaky(marker=m1).set_retry(num_retries=3, backoff_duration="0s").set_caching_options(False)
    with dsl.ParallelFor(items().set_caching_options(False).output) as i:
        w = work(i=i, marker=m2).set_caching_options(False)
    return dsl.Collected(w.output)


def counted(path: Path, seconds: float, extra: str = "") -> list[str]:
    """A command that appends one line to ``path`` per run, then works for ``seconds``."""
    code = f"{extra}import time\nopen({str(path)!r}, 'a').write('run\\n')\ntime.sleep({seconds})\n"
    return ["python", "-c", code]


def job(name: str, count: Path, seconds: float) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "python", "command": counted(count, seconds)}]}}}}


def pytorchjob(count: Path) -> dict:
    c = {"name": "pytorch", "image": "python", "command": counted(count, 2, "import torch\nassert torch.ones(2).sum() == 2\n")}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "chaos-ptj"},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": {"containers": [c]}}}}}}


def experiment(counts: Path) -> dict:
    code = (f"import sys, time\nopen({str(counts)!r} + '/' + sys.argv[2], 'a').write('run\\n')\n"
            "time.sleep(1.0)\nprint('loss=' + sys.argv[1])\n")
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "chaos-exp"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 2, "maxTrialCount": 3, "maxFailedTrialCount": 0,
            "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.9"}}],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [{"name": "lr", "reference": "lr"}, {"name": "me", "reference": "${trialSpec.Name}"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "training", "image": "python",
                                    "command": ["python", "-c", code, "${trialParameters.lr}", "${trialParameters.me}"]}]}}}},
            },
        },
    }


class Writer(threading.Thread):
    """Creates ConfigMaps back to back; remembers those ketch acknowledged (201)."""

    def __init__(self, k) -> None:
        super().__init__(daemon=True)
        self.k, self.acked, self.tried, self.stop = k, [], 0, threading.Event()

    def run(self) -> None:
        with self.k.http(timeout=5) as h:
            while not self.stop.is_set():
                name = f"ack-{self.tried}"
                self.tried += 1
                try:
                    r = h.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": name}, "data": {"n": name}})
                    if r.status_code == 201:
                        self.acked.append(name)
                except httpx.HTTPError:
                    time.sleep(0.05)  # ketch is down


class Load(threading.Thread):
    """Light inference load through ketch's gateway: one predict every 100 ms."""

    def __init__(self, k, url: str) -> None:
        super().__init__(daemon=True)
        self.k, self.url, self.ok, self.failed, self.last_ok, self.stop = k, url, 0, 0, 0.0, threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5, headers=self.k.headers) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
                    if r.status_code == 200 and r.json()["predictions"] in ([1], [2]):
                        self.ok += 1
                        self.last_ok = time.time()
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                time.sleep(0.1)


def condition(obj: dict, typ: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == typ and c["status"] == "True"), None)


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines() if p.exists() else []


def test_kill9_at_random_moments_loses_nothing(tmp_path):
    rng = random.Random(SEED)
    print(f"\nchaos: KETCH_CHAOS_SEED={SEED} KETCH_CHAOS_KILLS={KILLS}", file=sys.stderr)
    t_begin = time.time()
    work_dir = tmp_path / "work"
    (work_dir / "trials").mkdir(parents=True)
    train_sklearn(tmp_path / "model")
    k = make_ketch(tmp_path, env={"KETCH_BACKOFF_BASE_SECONDS": "0.2", "KETCH_JOB_BACKOFF_SECONDS": "0"}).start()
    writer = load = None
    kills = 0
    try:
        k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", "default", str(tmp_path / "model")))
        k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "--timeout=120s")
        url = k.kjson("get", "isvc", "iris")["status"]["url"]
        serving_pods = sorted(p["metadata"]["uid"] for p in k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"])
        assert serving_pods
        writer, load = Writer(k), Load(k, url)
        writer.start()
        load.start()

        run = k.kfp_client().create_run_from_pipeline_func(chaos_pipeline, arguments={"m1": str(work_dir / "flaky"), "m2": str(work_dir / "loop")},
                                                           enable_caching=False)
        jobs = {f"chaos-job-{i}": (work_dir / f"job-{i}", s) for i, s in enumerate((1.0, 2.5, 4.0))}
        objs = [job(n, c, s) for n, (c, s) in jobs.items()] + [experiment(work_dir / "trials")]
        if TORCH:
            objs.append(pytorchjob(work_dir / "ptj"))
        k.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))

        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 3.0))
            k.kill9()
            kills += 1
            time.sleep(rng.uniform(0.0, 1.0))
            k.start(timeout=60)
        restarted = time.time()

        # -- every workload ends as it would have without the kills ------------------------------------------
        res = k.kfp_client().wait_for_run_completion(run.run_id, timeout=180)
        assert res.state == "SUCCEEDED", res
        assert lines(work_dir / "flaky") == ["3"], "the retried task ran three times, no more"
        assert sorted(lines(work_dir / "loop")) == ["0", "1", "2"], "each loop iteration ran once"
        with k.http() as h:
            d = h.get(f"/apis/v2beta1/runs/{run.run_id}").json()
        assert sorted(d["pipeline_outputs"]["parameters"]["Output"]) == [0, 10, 20]
        for name, (count, _) in jobs.items():
            wait_for(lambda n=name: condition(k.kjson("get", "job", n), "Complete") or condition(k.kjson("get", "job", n), "Failed"), timeout=60, what=name)
            j = k.kjson("get", "job", name)
            assert condition(j, "Complete") and j["status"].get("succeeded") == 1 and not j["status"].get("failed"), (name, j["status"])
            assert lines(count) == ["run"], f"{name} ran {len(lines(count))} times"
        if TORCH:
            wait_for(lambda: condition(k.kjson("get", "pytorchjob", "chaos-ptj"), "Succeeded") or condition(k.kjson("get", "pytorchjob", "chaos-ptj"), "Failed"),
                     timeout=90, what="PyTorchJob")
            assert condition(k.kjson("get", "pytorchjob", "chaos-ptj"), "Succeeded")
            assert lines(work_dir / "ptj") == ["run"], "the training ran more than once"
        wait_for(lambda: condition(k.kjson("get", "experiment", "chaos-exp"), "Succeeded") or condition(k.kjson("get", "experiment", "chaos-exp"), "Failed"),
                 timeout=120, what="experiment")
        e = k.kjson("get", "experiment", "chaos-exp")
        assert (condition(e, "Succeeded") or {}).get("reason") == "ExperimentMaxTrialsReached", json.dumps(e["status"])
        assert e["status"]["trials"] == 3 and e["status"]["trialsSucceeded"] == 3, e["status"]
        trials = k.kjson("get", "trials", "-l", "katib.kubeflow.org/experiment=chaos-exp")["items"]
        assert len(trials) == 3, [t["status"] for t in trials]
        ran = {f.name: lines(f) for f in (work_dir / "trials").iterdir()}
        assert ran == {t["metadata"]["name"]: ["run"] for t in trials}, ran  # each trial ran once

        # -- serving went on: the same Pods, answering again ----------------------------------------------------
        wait_for(lambda: load.last_ok > restarted, timeout=60, what="inference after the last restart")
        assert sorted(p["metadata"]["uid"] for p in k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"]) == serving_pods
        load.stop.set()
        writer.stop.set()
        writer.join(10)
        load.join(10)

        # -- every acknowledged write is there -----------------------------------------------------------------
        with k.http() as h:
            have = {c["metadata"]["name"] for c in h.get("/api/v1/namespaces/default/configmaps").json()["items"]}
        lost = [n for n in writer.acked if n not in have]
        assert not lost, f"{len(lost)} acknowledged ConfigMaps lost: {lost[:10]}"
        checked = len(writer.acked) + len(objs) + 2  # + the run and the InferenceService
    finally:
        for t in (writer, load):
            if t is not None:
                t.stop.set()
        k.stop()
    # -- nothing is left behind -----------------------------------------------------------------------------------
    wait_for(lambda: not ketch_processes(k), timeout=20, what="no process of ketch's left after it stopped")
    figures = {"seed": SEED, "kills": kills, "acknowledged_writes_checked": len(writer.acked), "writes_tried": writer.tried,
               "objects_checked": checked, "inference_ok": load.ok, "inference_failed_while_down": load.failed,
               "pytorchjob": TORCH, "seconds": round(time.time() - t_begin, 1)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chaos.json").write_text(json.dumps(figures, indent=1))
    print(f"\nchaos: {json.dumps(figures)}", file=sys.stderr)
