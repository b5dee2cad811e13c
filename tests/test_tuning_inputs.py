"""Katib's remaining inputs on a real ketch with its kubelet: a normal prior for TPE (and random), the
Custom metrics collector (the user's collector container as a sidecar pushing metrics), the TensorFlowEvent
collector (tfevents read with tensorboard's reader) and resumePolicy."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_ketch, wait_for

PY = sys.executable
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("tuning-inputs")).start()
    try:
        yield kk
    finally:
        kk.stop()


def experiment(name: str, params: list[dict], code: str, *, algorithm: str = "tpe", settings: dict | None = None,
               collector: dict | None = None, max_trials: int = 8, parallel: int = 2, containers: list | None = None,
               args: list | None = None, **spec) -> dict:
    names = [p["name"] for p in params]
    tps = [{"name": n, "reference": n} for n in names]
    main = {"name": "training", "image": "python:3.11", "command": [PY, "-c", code, *(args or []), *(f"${{trialParameters.{n}}}" for n in names)]}
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name},
            "spec": {"objective": {"type": "minimize", "objectiveMetricName": "loss"},
                     "algorithm": {"algorithmName": algorithm, "algorithmSettings": [{"name": k, "value": str(v)} for k, v in (settings or {}).items()]},
                     "maxTrialCount": max_trials, "parallelTrialCount": parallel, "parameters": params,
                     **({"metricsCollectorSpec": collector} if collector else {}), **spec,
                     "trialTemplate": {"primaryContainerName": "training", "trialParameters": tps, "trialSpec": {
                         "apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                             "restartPolicy": "Never", "containers": [main, *(containers or [])]}}}}}}}


def run(k, ns: str, exp: dict, timeout: float = 120) -> dict:
    k.kubectl("create", "namespace", ns)
    k.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(exp))
    name = exp["metadata"]["name"]
    k.kubectl("wait", "--for=condition=Succeeded", f"experiment/{name}", "-n", ns, f"--timeout={int(timeout)}s", timeout=timeout + 10)
    return k.kjson("get", "experiment", name, "-n", ns)


def trials(k, ns: str, exp: str) -> list[dict]:
    return k.kjson("get", "trials", "-n", ns, "-l", f"katib.kubeflow.org/experiment={exp}")["items"]


def value(t: dict, param: str) -> float:
    return float(next(a["value"] for a in t["spec"]["parameterAssignments"] if a["name"] == param))


LOSS = "import sys; x = float(sys.argv[-1]); print(f'loss={(x - 5.5) ** 2}')"


def test_tpe_with_a_normal_prior(k):
    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "10", "distribution": "normal"}}]
    exp = run(k, "tpe-normal", experiment("tpe-normal", params, LOSS, settings={"random_state": 7, "n_startup_trials": 5}, max_trials=10))
    ts = trials(k, "tpe-normal", "tpe-normal")
    xs = [value(t, "x") for t in ts]
    assert len(xs) == 10 and all(0 <= x <= 10 for x in xs), xs
    # a flat prior over [0, 10] puts the mean distance from 5 at 2.5; the normal prior (sigma 10/6) near 1.3
    assert statistics.mean(abs(x - 5) for x in xs) < 2.0, xs
    assert float(exp["status"]["currentOptimalTrial"]["observation"]["metrics"][0]["latest"]) < 1.0


def test_normal_prior_draws_follow_the_truncated_normal():
    """The algorithm itself, many draws: what the prior means (mean mid-range, sigma a sixth of it, inside)."""
    from ketch.tuning.algorithms import ALGORITHMS, Entry

    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "12", "distribution": "normal"}},
              {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "1e-4", "max": "1", "distribution": "logNormal"}}]
    exp = {"metadata": {"uid": "0123abcd-0000"}, "spec": {"parameters": params, "objective": {"type": "minimize"},
                                                         "algorithm": {"algorithmName": "random", "algorithmSettings": [{"name": "random_state", "value": "3"}]}}}
    out = ALGORITHMS["random"].suggest(exp, [], [f"t{i}" for i in range(2000)], {})
    xs = [float(a["x"]) for a in out]
    logs = [__import__("math").log10(float(a["lr"])) for a in out]
    assert all(0 <= x <= 12 for x in xs) and abs(statistics.mean(xs) - 6) < 0.15 and abs(statistics.stdev(xs) - 2) < 0.15
    assert abs(statistics.mean(logs) + 2) < 0.1 and sum(1 for v in logs if -3 <= v <= -1) / len(logs) > 0.6
    # TPE learns from what was observed, mapped back through the prior
    hist = [Entry(f"t{i}", a, "complete", (float(a["x"]) - 3) ** 2) for i, a in enumerate(out[:30])]
    nxt = ALGORITHMS["tpe"].suggest({**exp, "spec": {**exp["spec"], "algorithm": {"algorithmName": "tpe"}}}, hist, ["n1", "n2"], {})
    assert all(0 <= float(a["x"]) <= 12 for a in nxt)


def test_normal_refused_where_the_algorithm_has_no_prior(k):
    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "10", "distribution": "normal"}}]
    k.kubectl("create", "namespace", "cmaes-normal")
    r = k.kubectl("create", "-n", "cmaes-normal", "-f", "-", check=False,
                  input=yaml.safe_dump(experiment("g", params, LOSS, algorithm="grid")))
    assert r.returncode != 0 and "distribution 'normal' of parameter 'x' is not supported by 'grid'" in r.stderr, r.stderr


def test_custom_collector_sidecar_pushes_metrics(k):
    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "10"}}]
    # the trainer only writes a file; printing on stdout would not count (the collector is Custom)
    code = ("import sys, time; x = float(sys.argv[-1]); f = open(sys.argv[1], 'w')\n"
            "for step in range(3):\n    f.write(f'loss={(x - 5.5) ** 2 + 2 - step}\\n'); f.flush(); time.sleep(0.3)\n")
    collector = {"collector": {"kind": "Custom", "customCollector": {
        "name": "my-collector", "image": "python:3.11", "command": [PY, str(HERE / "tuning_scripts" / "custom_collector.py"), "/katib/metrics.log"]}},
        "source": {"fileSystemPath": {"path": "/katib/metrics.log", "kind": "File"}}}
    exp = experiment("custom", params, code, algorithm="random", collector=collector, max_trials=3, parallel=3, args=["/katib/metrics.log"])
    run(k, "custom-coll", exp)
    ts = trials(k, "custom-coll", "custom")
    assert len(ts) == 3
    for t in ts:
        assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in t["status"]["conditions"]), t["status"]
        m = t["status"]["observation"]["metrics"][0]
        want = (value(t, "x") - 5.5) ** 2
        assert abs(float(m["latest"]) - want) < 1e-6 and abs(float(m["max"]) - (want + 2)) < 1e-6, m


def test_tensorflow_event_collector(k, tmp_path):
    pytest.importorskip("torch", reason="the trial writes its events with torch's SummaryWriter (the torch extra)")
    import tensorboard  # noqa: F401 - the test extra; the collector's reader (ketch[tfevent])

    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "10"}}]
    # events only (no stdout metrics): loss in the log dir's root, accuracy in its train/ subdirectory
    code = ("import os, sys\nfrom torch.utils.tensorboard import SummaryWriter\nx = float(sys.argv[-1]); d = sys.argv[1]\n"
            "w = SummaryWriter(d); t = SummaryWriter(os.path.join(d, 'train'))\n"
            "for step in range(3):\n    w.add_scalar('loss', (x - 5.5) ** 2 + 2 - step, step); t.add_scalar('accuracy', 0.5 + step / 10, step)\n"
            "w.close(); t.close()\n")
    logdir = str(tmp_path / "tb" / "$(KATIB_TRIAL_NAME)")
    collector = {"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {"path": logdir, "kind": "Directory"}}}
    exp = experiment("tfevent", params, code, algorithm="random", collector=collector, max_trials=2, parallel=2, args=[logdir])
    exp["spec"]["objective"]["additionalMetricNames"] = ["train/accuracy"]
    run(k, "tfevent", exp, timeout=180)
    for t in trials(k, "tfevent", "tfevent"):
        ms = {m["name"]: m for m in t["status"]["observation"]["metrics"]}
        want = (value(t, "x") - 5.5) ** 2
        assert abs(float(ms["loss"]["latest"]) - want) < 1e-3 and abs(float(ms["loss"]["min"]) - want) < 1e-3, ms
        assert abs(float(ms["train/accuracy"]["latest"]) - 0.7) < 1e-6, ms


def test_resume_from_volume(k):
    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "10"}}]
    exp = experiment("fromvol", params, LOSS, settings={"random_state": 1}, max_trials=2, resumePolicy="FromVolume")
    run(k, "fromvol", exp)
    # the algorithm's state went to the suggestion's claim (<suggestion>-<algorithm>), its directory under ketch's home
    pvc = k.kjson("get", "pvc", "fromvol-tpe", "-n", "fromvol")
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "Suggestion"
    assert (k.home / "volumes" / "fromvol" / "fromvol-tpe" / "state.pkl").stat().st_size > 0
    k.kubectl("patch", "experiment", "fromvol", "-n", "fromvol", "--type=merge", "-p", '{"spec":{"maxTrialCount":4}}')
    wait_for(lambda: k.kjson("get", "experiment", "fromvol", "-n", "fromvol")["status"].get("trials") == 4
             and any(c["type"] == "Succeeded" and c["status"] == "True" for c in k.kjson("get", "experiment", "fromvol", "-n", "fromvol")["status"]["conditions"]),
             timeout=90, what="restarted experiment to run 4 trials")
    reasons = [e["reason"] for e in k.kjson("get", "events", "-n", "fromvol")["items"]]
    assert "SuggestionStateRestored" in reasons and "ExperimentRestarting" in reasons
    assert len(trials(k, "fromvol", "fromvol")) == 4


def test_resume_never_refuses_a_restart(k):
    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "10"}}]
    run(k, "never", experiment("never", params, LOSS, max_trials=1, parallel=1))
    r = k.kubectl("patch", "experiment", "never", "-n", "never", "--type=merge", "-p", '{"spec":{"maxTrialCount":3}}', check=False)
    assert r.returncode != 0 and "resumePolicy is LongRunning or FromVolume" in r.stderr, r.stderr
    assert not (k.home / "volumes" / "never" / "never-tpe").exists()
