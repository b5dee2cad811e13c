"""Katib Experiments end to end on a real ketch server: Experiment -> Suggestion (optuna in process) ->
Trials -> batch Jobs -> Pods. With no kubelet in this server, the test plays the kubelet: it "runs" each trial
pod by computing the objective from the trial's command line (what the template substitution produced),
reporting it the way trial code would (the ``ketch.tuning.report`` helper over HTTP, or a metrics file), and
writing the pod's final status through the status subresource."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

import httpx
import pytest

from conftest import make_ketch, wait_for
from ketch.kubelet.env import expand

TOKEN: list[str] = [""]


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory):
    kk = make_ketch(tmp_path_factory.mktemp("tuning"), env={"KETCH_DISABLE": "kubelet", "KETCH_JOB_BACKOFF_SECONDS": "0"}).start()
    TOKEN[:] = [kk.token]
    try:
        yield kk
    finally:
        kk.stop()


def branin(x1: float, x2: float) -> float:
    a, b, c, r, s, t = 1, 5.1 / (4 * math.pi**2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def experiment(name: str, algorithm: str = "random", max_trials: int = 10, parallel: int = 3, collector: dict | None = None,
               goal: float | None = None, max_failed: int | None = None, settings: list | None = None, params: list | None = None) -> str:
    spec = {
        "objective": {"type": "minimize", "objectiveMetricName": "loss", **({"goal": goal} if goal is not None else {})},
        "algorithm": {"algorithmName": algorithm, **({"algorithmSettings": settings} if settings else {})},
        "parallelTrialCount": parallel,
        "maxTrialCount": max_trials,
        "metricsCollectorSpec": collector or {"collector": {"kind": "Push"}},
        "parameters": params or [
            {"name": "x1", "parameterType": "double", "feasibleSpace": {"min": "-5", "max": "10"}},
            {"name": "x2", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "15"}},
        ],
        "trialTemplate": {
            "primaryContainerName": "training",
            "trialParameters": [{"name": "x1", "reference": "x1"}, {"name": "x2", "reference": "x2"}, {"name": "me", "reference": "${trialSpec.Name}"}],
            "trialSpec": {
                "apiVersion": "batch/v1", "kind": "Job",
                "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
                    "name": "training", "image": "python",
                    "command": ["python", "branin.py", "--x1=${trialParameters.x1}", "--x2=${trialParameters.x2}", "--name=${trialParameters.me}"]}]}}},
            },
        },
    }
    if max_failed is not None:
        spec["maxFailedTrialCount"] = max_failed
    return json.dumps({"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name}, "spec": spec})


def set_pod(k, pod: dict, phase: str, code: int) -> None:
    ts = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    st = {"phase": phase, "podIP": "127.0.0.1", "containerStatuses": [{"name": "training", "ready": False, "restartCount": 0, "image": "python", "imageID": "",
          "state": {"terminated": {"exitCode": code, "startedAt": ts, "finishedAt": ts, "reason": "Completed" if code == 0 else "Error"}}}]}
    md = pod["metadata"]
    with k.http() as h:
        r = h.patch(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/status", json={"status": st}, headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text


def args_of(pod: dict) -> dict[str, str]:
    out = {}
    for a in pod["spec"]["containers"][0]["command"][2:]:
        key, _, v = a[2:].partition("=")
        out[key] = v
    return out


def drive(k, ns: str, exp: str, run, timeout: float = 120, until=None) -> dict:
    """Play kubelet for the experiment's trial pods until the experiment ends. ``run(pod, args, env)``
    reports metrics and returns the exit code."""
    seen: set[str] = set()
    h = k.http()

    def step():
        e = h.get(f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/experiments/{exp}").json()
        if any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True" for c in e.get("status", {}).get("conditions", [])):
            return e
        if until is not None and until(e):
            return e
        pods = h.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"katib.kubeflow.org/experiment={exp}"}).json()["items"]
        for p in pods:
            if p["metadata"]["name"] in seen or p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            seen.add(p["metadata"]["name"])
            # as a kubelet would: $(KETCH_SERVER) is where the Pod reaches ketch
            env = {e["name"]: expand(e.get("value") or "", {"KETCH_SERVER": k.url}) for e in p["spec"]["containers"][0].get("env") or []}
            code = run(p, args_of(p), env)
            set_pod(k, p, "Succeeded" if code == 0 else "Failed", code)
        return None

    try:
        return wait_for(step, timeout=timeout, interval=0.05, what=f"experiment {exp} to end")
    finally:
        h.close()


def push_branin(pod: dict, args: dict, env: dict) -> int:
    """What trial code does: compute, then ketch.tuning.report(...) with the env ketch gave the container."""
    from ketch.tuning import report

    assert env["KATIB_TRIAL_NAME"] == args["name"] == pod["metadata"]["labels"]["katib.kubeflow.org/trial"]
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k in ("KATIB_TRIAL_NAME", "KETCH_TRIAL_NAMESPACE", "KETCH_URL")})
    os.environ["KETCH_TOKEN"] = TOKEN[0]  # the credential a pod would have (this test plays kubelet)
    try:
        report(loss=branin(float(args["x1"]), float(args["x2"])))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0


def cond(obj: dict, t: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == t), None)


SEED = [{"name": "random_state", "value": "7"}]
# Seeded, but parallel trials finish in whatever order the machine gives them, and each suggestion sees the
# results in hand: the same seed can take another path (TPE once ended at 2.18 of Branin's 0.398 minimum).


@pytest.mark.parametrize("algorithm,budget,good,settings", [
    ("random", 30, 5.0, SEED), ("tpe", 40, 2.5, SEED), ("multivariate-tpe", 30, 5.0, SEED), ("cmaes", 40, 10.0, SEED),
    ("sobol", 30, 8.0, None), ("bayesianoptimization", 12, 8.0, SEED + [{"name": "n_initial_points", "value": "5"}]),
])
def test_search_finds_good_branin_region(k, algorithm, budget, good, settings):
    ns = f"branin-{algorithm}"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("b", algorithm, max_trials=budget, parallel=3, settings=settings))
    e = drive(k, ns, "b", push_branin)
    assert cond(e, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    st = e["status"]
    assert st["trials"] == budget and st["trialsSucceeded"] == budget
    best = st["currentOptimalTrial"]
    a = {p["name"]: float(p["value"]) for p in best["parameterAssignments"]}
    value = float(best["observation"]["metrics"][0]["latest"])
    assert value == pytest.approx(branin(a["x1"], a["x2"]), rel=1e-6)
    assert value < good, f"{algorithm} best {value} after {budget} trials"
    # the best is the minimum over every trial's observation
    trials = k.kjson("get", "trials", "-n", ns)["items"]
    assert min(float(t["status"]["observation"]["metrics"][0]["latest"]) for t in trials) == value
    assert all(-5 <= float(p["value"]) <= 15 for t in trials for p in t["spec"]["parameterAssignments"])
    sug = k.kjson("get", "suggestion", "b", "-n", ns)
    assert sug["status"]["suggestionCount"] == budget
    out = k.kubectl("get", "experiments", "-n", ns).stdout
    assert "Succeeded" in out and str(budget) in out
    assert "Succeeded" in k.kubectl("get", "trials", "-n", ns).stdout
    # observation logs are queryable per trial
    with httpx.Client(base_url=k.url, headers=k.headers) as h:
        r = h.get(f"/katib/v1/namespaces/{ns}/trials/{best['bestTrialName']}/observations")
        logs = r.json()["observationLog"]["metricLogs"]
        assert [m["metric"]["name"] for m in logs] == ["loss"] and float(logs[0]["metric"]["value"]) == value


def test_goal_stops_experiment(k):
    ns = "goal"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("g", max_trials=50, parallel=1, goal=20.0))
    e = drive(k, ns, "g", push_branin)
    assert cond(e, "Succeeded")["reason"] == "ExperimentGoalReached"
    assert float(e["status"]["currentOptimalTrial"]["observation"]["metrics"][0]["latest"]) <= 20.0
    assert e["status"]["trials"] < 50


def test_failed_trial_budget(k):
    ns = "fail"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("f", max_trials=10, parallel=2, max_failed=3))
    e = drive(k, ns, "f", lambda pod, args, env: 1)
    assert cond(e, "Failed")["reason"] == "ExperimentMaxFailedTrialsReached"
    assert e["status"]["trialsFailed"] >= 3
    t = k.kjson("get", "trial", e["status"]["failedTrialList"][0], "-n", ns)
    assert cond(t, "Failed")["reason"].startswith("TrialFailed. Job reason: BackoffLimitExceeded")


def test_metrics_unavailable_when_nothing_reported(k):
    ns = "unavail"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("u", max_trials=2, parallel=2))
    e = drive(k, ns, "u", lambda pod, args, env: 0)
    assert e["status"]["trialMetricsUnavailable"] == 2
    t = k.kjson("get", "trial", e["status"]["metricsUnavailableTrialList"][0], "-n", ns)
    assert t["status"]["observation"]["metrics"][0] == {"name": "loss", "min": "unavailable", "max": "unavailable", "latest": "unavailable"}


def test_file_collector_text_and_json(k, tmp_path: Path):
    ns = "files"
    k.kubectl("create", "namespace", ns)
    path = str(tmp_path / "$(KATIB_TRIAL_NAME).log")
    for fmt in ("TEXT", "JSON"):
        coll = {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": path, "kind": "File", "format": fmt}}}
        name = f"file-{fmt.lower()}"
        k.kubectl("apply", "-n", ns, "-f", "-", input=experiment(name, max_trials=3, parallel=3, collector=coll))

        def run(pod, args, env, fmt=fmt):
            v = branin(float(args["x1"]), float(args["x2"]))
            p = Path(path.replace("$(KATIB_TRIAL_NAME)", env["KATIB_TRIAL_NAME"]))
            if fmt == "TEXT":
                p.write_text(f"2026-01-01T00:00:01Z epoch 1 loss={v + 10}\nnoise line\n2026-01-01T00:00:05Z epoch 2 loss={v}\n")
            else:
                p.write_text(json.dumps({"loss": str(v + 10), "timestamp": 1.0}) + "\n" + json.dumps({"loss": str(v), "timestamp": 2.0}) + "\n")
            return 0

        e = drive(k, ns, name, run)
        assert e["status"]["trialsSucceeded"] == 3
        best = e["status"]["currentOptimalTrial"]
        a = {p["name"]: float(p["value"]) for p in best["parameterAssignments"]}
        m = best["observation"]["metrics"][0]
        assert float(m["latest"]) == pytest.approx(branin(a["x1"], a["x2"]))
        assert float(m["max"]) == pytest.approx(float(m["min"]) + 10)


def test_grid_exhausts_search_space(k):
    ns = "grid"
    k.kubectl("create", "namespace", ns)
    params = [{"name": "x1", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "2"}},
              {"name": "x2", "parameterType": "categorical", "feasibleSpace": {"list": ["1", "5"]}}]
    body = json.loads(experiment("grid", "grid", max_trials=6, parallel=4, params=params))
    del body["spec"]["maxTrialCount"]
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    e = drive(k, ns, "grid", push_branin)
    assert cond(e, "Succeeded")["reason"] == "ExperimentSuggestionEndReached"
    trials = k.kjson("get", "trials", "-n", ns)["items"]
    combos = sorted(tuple(p["value"] for p in t["spec"]["parameterAssignments"]) for t in trials)
    assert combos == [(a, b) for a in ("0", "1", "2") for b in ("1", "5")]


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s["algorithm"].update(algorithmName="simulated-annealing"), "unknown algorithm 'simulated-annealing'"),
    (lambda s: s["algorithm"].update(algorithmSettings=[{"name": "n_trees", "value": "3"}]), "unknown setting 'n_trees'"),
    (lambda s: s["algorithm"].update(algorithmSettings=[{"name": "gamma", "value": "2"}], algorithmName="tpe"), "setting 'gamma'='2'"),
    (lambda s: s["parameters"][0]["feasibleSpace"].update(min="20"), "min 20 is greater than max 10"),
    (lambda s: s.update(parameters=[]), "spec.parameters"),
    (lambda s: s["parameters"][1].update(feasibleSpace={}), "feasibleSpace of parameter 'x2' must not be empty"),
    (lambda s: s["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"].append("${trialParameters.lr}"),
     "${trialParameters.lr}"),
    (lambda s: s["trialTemplate"]["trialParameters"].append({"name": "y", "reference": "nope"}), "reference 'nope'"),
    (lambda s: s.update(parallelTrialCount=20), "parallelTrialCount 20 must not exceed maxTrialCount 10"),
])
def test_bad_experiments_refused_with_named_problem(k, mutate, message):
    body = json.loads(experiment("bad"))
    mutate(body["spec"])
    r = k.kubectl("apply", "-n", "default", "-f", "-", input=json.dumps(body), check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert k.kubectl("get", "experiment", "bad", "-n", "default", check=False).returncode != 0  # nothing written


def test_push_endpoint_rejects_bad_input(k):
    with httpx.Client(base_url=k.url, headers=k.headers) as h:
        r = h.post("/katib/v1/namespaces/default/trials/nope/metrics", json={"metrics": {"loss": 1}})
        assert r.status_code == 404
        r = h.post("/katib/v1/namespaces/default/trials/nope/metrics", json={"metrics": {"loss": "abc"}})
        assert r.status_code == 400 and "loss" in r.json()["message"]


def test_medianstop_stops_a_bad_running_trial(k):
    ns = "median"
    k.kubectl("create", "namespace", ns)
    body = json.loads(experiment("m", max_trials=3, parallel=1))
    body["spec"]["earlyStopping"] = {"algorithmName": "medianstop", "algorithmSettings": [
        {"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}]}
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))

    def push(trial: str, *values: float) -> None:
        with httpx.Client(base_url=k.url, headers=k.headers) as h:
            for v in values:
                assert h.post(f"/katib/v1/namespaces/{ns}/trials/{trial}/metrics", json={"metrics": {"loss": v}}).status_code == 200

    done: set[str] = set()
    for loss in ([1.0, 2.0, 0.5], [3.0, 2.0]):  # first two trials run to the end: rule = mean(1.5, 2.5) = 2.0
        pod = wait_for(lambda: [p for p in k.kjson("get", "pods", "-n", ns)["items"] if p["metadata"]["name"] not in done], what="trial pod")[0]
        done.add(pod["metadata"]["name"])
        push(pod["metadata"]["labels"]["katib.kubeflow.org/trial"], *loss)
        set_pod(k, pod, "Succeeded", 0)
    pod = wait_for(lambda: [p for p in k.kjson("get", "pods", "-n", ns)["items"] if p["metadata"]["name"] not in done], what="third trial pod")[0]
    trial = pod["metadata"]["labels"]["katib.kubeflow.org/trial"]
    push(trial, 1.0)  # one value: before start_step, never stopped
    push(trial, 9.0)  # second value worse than the rule (minimize: 9 > 2) -> EarlyStopped while running
    t = wait_for(lambda: cond(x := k.kjson("get", "trial", trial, "-n", ns), "EarlyStopped") and x, what="early stopped")
    assert cond(t, "EarlyStopped")["reason"] == "TrialEarlyStopped"
    assert t["status"]["observation"]["metrics"][0]["latest"] == "9.0"
    e = wait_for(lambda: cond(x := k.kjson("get", "experiment", "m", "-n", ns), "Succeeded") and x, what="experiment done")
    assert e["status"]["trialsEarlyStopped"] == 1 and e["status"]["earlyStoppedTrialList"] == [trial]
    wait_for(lambda: k.kubectl("get", "job", trial, "-n", ns, check=False).returncode != 0, what="stopped trial's job deleted")


def test_hyperband_promotes_the_best_of_each_rung(k):
    ns = "hyperband"
    k.kubectl("create", "namespace", ns)
    params = [{"name": "x1", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
              {"name": "x2", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}}]
    body = json.loads(experiment("hb", "hyperband", parallel=9, params=params, settings=[
        {"name": "r_l", "value": "9"}, {"name": "eta", "value": "3"}, {"name": "resource_name", "value": "x2"}]))
    del body["spec"]["maxTrialCount"]
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))

    def run(pod, args, env):  # loss falls with the resource (x2) and is best at x1 = 0.3
        return push_branin_value(env, (float(args["x1"]) - 0.3) ** 2 + 1 / float(args["x2"]))

    e = drive(k, ns, "hb", run)
    assert cond(e, "Succeeded")["reason"] == "ExperimentSuggestionEndReached"
    sug = k.kjson("get", "suggestion", "hb", "-n", ns)["status"]["suggestions"]
    assert len(sug) == 22 == e["status"]["trials"]  # brackets s=2: 9,3,1; s=1: 5,1; s=0: 3
    res = [next(p["value"] for p in s["parameterAssignments"] if p["name"] == "x2") for s in sug]
    assert res == ["1"] * 9 + ["3"] * 3 + ["9"] + ["3"] * 5 + ["9"] + ["9"] * 3
    x1 = [next(p["value"] for p in s["parameterAssignments"] if p["name"] == "x1") for s in sug]
    best3 = sorted(x1[:9], key=lambda v: (float(v) - 0.3) ** 2)[:3]
    assert sorted(x1[9:12]) == sorted(best3)  # the rung at resource 3 continues the best three at resource 1
    assert x1[12] == min(x1[9:12], key=lambda v: (float(v) - 0.3) ** 2)


def test_hyperband_settings_validated(k):
    body = json.loads(experiment("hbbad", "hyperband", parallel=3, settings=[{"name": "r_l", "value": "9"}, {"name": "resource_name", "value": "epochs"}]))
    r = k.kubectl("apply", "-n", "default", "-f", "-", input=json.dumps(body), check=False)
    assert r.returncode != 0
    assert "resource_name 'epochs' is not one of spec.parameters" in r.stderr and "parallelTrialCount must be >= 9" in r.stderr


def push_branin_value(env: dict, value: float) -> int:
    from ketch.tuning import report

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k in ("KATIB_TRIAL_NAME", "KETCH_TRIAL_NAMESPACE", "KETCH_URL")})
    os.environ["KETCH_TOKEN"] = TOKEN[0]  # the credential a pod would have (this test plays kubelet)
    try:
        report(loss=value)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0


def test_pbt_generations_exploit_and_explore(k):
    ns = "pbt"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("pbt", "pbt", max_trials=12, parallel=2, settings=[
        {"name": "suggestion_trial_dir", "value": "/tmp/pbt"}, {"name": "n_population", "value": "5"},
        {"name": "truncation_threshold", "value": "0.4"}, {"name": "random_state", "value": "1"}]))
    e = drive(k, ns, "pbt", push_branin)
    assert e["status"]["trialsSucceeded"] == 12
    trials = {t["metadata"]["name"]: t for t in k.kjson("get", "trials", "-n", ns)["items"]}
    gen = "pbt.suggestion.katib.kubeflow.org/generation"
    children = [t for t in trials.values() if t["metadata"]["labels"].get(gen) != "0"]
    assert len(children) == 7 and sum(1 for t in trials.values() if t["metadata"]["labels"][gen] == "0") == 5
    for c in children:
        parent = trials[c["metadata"]["labels"]["pbt.suggestion.katib.kubeflow.org/parent"]]
        assert int(c["metadata"]["labels"][gen]) == int(parent["metadata"]["labels"][gen]) + 1
        pa = {p["name"]: float(p["value"]) for p in parent["spec"]["parameterAssignments"]}
        for p in c["spec"]["parameterAssignments"]:
            lo, hi = {"x1": (-5, 10), "x2": (0, 15)}[p["name"]]
            options = [min(max(pa[p["name"]] * f, lo), hi) for f in (0.8, 1.2)]
            assert any(float(p["value"]) == pytest.approx(o) for o in options), (p, pa)


def test_experiment_survives_kill9_half_done(tmp_path):
    kk = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet", "KETCH_JOB_BACKOFF_SECONDS": "0"}).start()
    saved, TOKEN[:] = TOKEN[:], [kk.token]
    try:
        kk.kubectl("apply", "-f", "-", input=experiment("r", "tpe", max_trials=8, parallel=2, settings=[{"name": "n_startup_trials", "value": "3"}]))
        drive(kk, "default", "r", push_branin, until=lambda e: e.get("status", {}).get("trialsSucceeded", 0) >= 3)
        kk.kill9()
        kk.start()
        e = drive(kk, "default", "r", push_branin)
        assert cond(e, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
        assert e["status"]["trials"] == 8 and e["status"]["trialsSucceeded"] == 8
        sug = kk.kjson("get", "suggestion", "r")["status"]["suggestions"]
        names = [t["metadata"]["name"] for t in kk.kjson("get", "trials")["items"]]
        assert set(names) <= {s["name"] for s in sug}  # every trial came from the one suggestion list
        TOKEN[:] = saved
        assert len(set(names)) == 8
    finally:
        kk.stop()


def test_long_running_experiment_restarts_when_budget_raised(k):
    ns = "resume"
    k.kubectl("create", "namespace", ns)
    body = json.loads(experiment("lr", max_trials=2, parallel=2))
    body["spec"]["resumePolicy"] = "LongRunning"
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    e = drive(k, ns, "lr", push_branin)
    assert cond(e, "Succeeded")["reason"] == "ExperimentMaxTrialsReached" and e["status"]["trials"] == 2
    r = k.kubectl("patch", "experiment", "lr", "-n", ns, "--type=merge", "-p", '{"spec":{"maxTrialCount":2}}', check=False)
    assert r.returncode == 0  # no change is not a restart
    r = k.kubectl("patch", "experiment", "lr", "-n", ns, "--type=merge", "-p", '{"spec":{"parallelTrialCount":1, "maxTrialCount":1}}', check=False)
    assert r.returncode != 0 and "must be greater than the 2 trials" in r.stderr
    k.kubectl("patch", "experiment", "lr", "-n", ns, "--type=merge", "-p", '{"spec":{"maxTrialCount":4}}')
    wait_for(lambda: cond(k.kjson("get", "experiment", "lr", "-n", ns), "Succeeded")["status"] == "False", what="restarting")
    e = drive(k, ns, "lr", push_branin)
    assert cond(e, "Succeeded")["status"] == "True" and e["status"]["trials"] == 4 and e["status"]["trialsSucceeded"] == 4
    assert cond(e, "Restarting")["status"] == "False"


def test_never_resume_experiment_cannot_restart(k):
    ns = "noresume"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("nr", max_trials=1, parallel=1))
    drive(k, ns, "nr", push_branin)
    r = k.kubectl("patch", "experiment", "nr", "-n", ns, "--type=merge", "-p", '{"spec":{"maxTrialCount":3}}', check=False)
    assert r.returncode != 0 and "resumePolicy is LongRunning or FromVolume" in r.stderr


def test_lowering_parallel_trial_count_deletes_excess_trials(k):
    ns = "lower"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("lw", max_trials=6, parallel=3))
    wait_for(lambda: len(k.kjson("get", "trials", "-n", ns)["items"]) == 3, what="3 trials")
    k.kubectl("patch", "experiment", "lw", "-n", ns, "--type=merge", "-p", '{"spec":{"parallelTrialCount":1}}')
    wait_for(lambda: len(k.kjson("get", "trials", "-n", ns)["items"]) == 1, what="excess trials deleted")
    e = drive(k, ns, "lw", push_branin)
    assert e["status"]["trialsSucceeded"] == 6
    out = k.kubectl("get", "suggestions", "-n", ns).stdout
    assert "Succeeded" in out and "random" in out
