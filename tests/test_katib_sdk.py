"""Katib's own ``kubeflow-katib`` SDK (``KatibClient``) run unchanged against ketch through a kubeconfig.

``KatibClient.tune`` serialises a Python objective into a ``bash -c`` script (a heredoc written to a temp
file, then ``python -u``) inside a batch/v1 Job trial template on the SDK's default PyTorch image; ketch runs
those trial Jobs on its local kubelet and reads the metric from stdout (the StdOut collector).

kubeflow-katib pins ``protobuf<5`` and ``kubeflow-training==1.9.0``, which ketch's test environment cannot
share, so it lives in its own virtualenv (``KETCH_KATIB_PYTHON``, default ``/tmp/katib-venv/bin/python``;
scripts/test.sh builds it with ``pip install kubeflow-katib==0.19.0 kubernetes==31.0.0``: the SDK cannot
deserialize the models of kubernetes >= 32). Without it this test is skipped, and
says so.
"""

from __future__ import annotations

import os
import subprocess

import pytest

PY = os.environ.get("KETCH_KATIB_PYTHON", "/tmp/katib-venv/bin/python")

SCRIPT = r'''
import sys
import kubeflow.katib as katib

kubeconfig = sys.argv[1]


def objective(parameters):
    # Runs inside each trial's container: the SDK ships this function's source, not a pickle.
    x = float(parameters["x"])
    shift = 0.0 if parameters["kind"] == "good" else 1.0
    print(f"score={-((x - 0.3) ** 2) - shift:.6f}", flush=True)


kc = katib.KatibClient(config_file=kubeconfig, namespace="default")
name = "sdk-tune"
kc.tune(
    name=name,
    objective=objective,
    parameters={
        "x": katib.search.double(min=0.0, max=1.0),
        # katib.search.categorical(...) puts the list in ``distribution`` (kubeflow/katib#2625), which Katib's
        # webhook and ketch both refuse; users spell the spec out, as here.
        "kind": katib.V1beta1ParameterSpec(parameter_type="categorical",
                                           feasible_space=katib.V1beta1FeasibleSpace(list=["good", "bad"])),
    },
    objective_metric_name="score",
    objective_type="maximize",
    algorithm_name="random",
    max_trial_count=4,
    parallel_trial_count=2,
    max_failed_trial_count=1,
)
kc.wait_for_experiment_condition(name=name, timeout=240, polling_interval=1)
assert kc.is_experiment_succeeded(name), kc.get_experiment_conditions(name)
assert name in {e.metadata.name for e in kc.list_experiments()}
trials = kc.list_trials(name)
assert len(trials) == 4, [t.metadata.name for t in trials]
# Every trial's reported metric is the objective of its own assignments.
best_seen = None
for t in trials:
    a = {p.name: p.value for p in t.spec.parameter_assignments}
    [m] = [m for m in t.status.observation.metrics if m.name == "score"]
    want = -((float(a["x"]) - 0.3) ** 2) - (0.0 if a["kind"] == "good" else 1.0)
    assert abs(float(m.latest) - want) < 1e-4, (a, m)
    if best_seen is None or want > best_seen[0]:
        best_seen = (want, a)
opt = kc.get_optimal_hyperparameters(name)
got = {p.name: p.value for p in opt.parameter_assignments}
assert got == best_seen[1], (got, best_seen)
[om] = [m for m in opt.observation.metrics if m.name == "score"]
assert abs(float(om.max) - best_seen[0]) < 1e-4, om
kc.delete_experiment(name)
assert name not in {e.metadata.name for e in kc.list_experiments()}
print("OK")
'''


@pytest.mark.skipif(not os.path.exists(PY), reason=f"no kubeflow-katib virtualenv at {PY} (set KETCH_KATIB_PYTHON)")
def test_katib_client_tune_against_ketch(ketch, tmp_path):
    script = tmp_path / "tune.py"  # a file, not ``-c``: the SDK reads the objective's source with inspect
    script.write_text(SCRIPT)
    r = subprocess.run([PY, str(script), str(ketch.kubeconfig)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), f"{r.stdout}\n{r.stderr[-4000:]}\n{ketch.log()[-3000:]}"
