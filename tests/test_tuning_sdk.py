"""The ``kubeflow`` SDK's OptimizerClient (Katib through Trainer v2), run unchanged against ketch through a
kubeconfig: it creates an Experiment whose trials are TrainJobs on the ``python-distributed`` runtime; the
trial processes are real (the local kubelet runs them) and print their metric, which ketch collects from the
``node`` container's stdout."""

from __future__ import annotations

import pytest

from conftest import make_ketch, wait_for


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("tuning-sdk")).start()
    try:
        yield kk
    finally:
        kk.stop()


def quadratic(x: float, c: str = "a"):
    """A trial: the SDK passes each parameter as a keyword (a string after substitution)."""
    x = float(x)
    loss = (x - 0.3) ** 2 + (0.0 if c == "a" else 1.0)
    print(f"loss={loss:.6f}", flush=True)


def test_optimizer_client_end_to_end(k):
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.optimizer import (
        Objective,
        OptimizerClient,
        RandomSearch,
        Search,
        TrainJobTemplate,
        TrialConfig,
    )
    from kubeflow.trainer import CustomTrainer, TrainerClient

    cfg = KubernetesBackendConfig(config_file=str(k.kubeconfig), namespace="default")
    runtime = TrainerClient(cfg).get_runtime("python-distributed")
    oc = OptimizerClient(cfg)
    name = oc.optimize(
        TrainJobTemplate(runtime=runtime, trainer=CustomTrainer(func=quadratic)),
        search_space={"x": Search.uniform(0.0, 1.0), "c": Search.choice(["a", "b"])},
        objectives=[Objective(metric="loss", direction="minimize")],
        algorithm=RandomSearch(random_state=7),
        trial_config=TrialConfig(num_trials=4, parallel_trials=2, max_failed_trials=1),
    )
    assert name in {j.name for j in oc.list_jobs()}
    job = oc.wait_for_job_status(name, timeout=180, polling_interval=1)
    assert job.status == "Complete"
    assert len(job.trials) == 4
    for t in job.trials:
        assert set(t.parameters) == {"x", "c"}
        assert t.trainjob.status == "Complete"
        [m] = t.metrics
        x = float(t.parameters["x"])
        assert abs(float(m.latest) - ((x - 0.3) ** 2 + (0.0 if t.parameters["c"] == "a" else 1.0))) < 1e-4
    best = oc.get_best_results(name)
    assert best is not None
    losses = {t.name: float(t.metrics[0].latest) for t in job.trials}
    assert float(best.metrics[0].latest) == min(losses.values())
    best_trial = min(job.trials, key=lambda t: float(t.metrics[0].latest))
    assert best.parameters == best_trial.parameters
    # The trial's TrainJob and pods are retained (the SDK sets retain): the metric came from rank 0's stdout.
    pods = k.kjson("get", "pods", "-l", f"katib.kubeflow.org/trial={best_trial.name}")["items"]
    assert [p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] for p in pods] == ["0"]
    assert "loss=" in k.kubectl("logs", pods[0]["metadata"]["name"], "-c", "node").stdout
    oc.delete_job(name)
    wait_for(lambda: name not in {j.name for j in oc.list_jobs()}, what="experiment deleted")
    wait_for(lambda: not k.kjson("get", "trainjobs")["items"], what="trial trainjobs collected")


def broken(x: float):
    raise SystemExit(f"cannot train with x={x}")


def test_optimizer_client_failed_trials_fail_the_job(k):
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.optimizer import OptimizerClient, Search, TrainJobTemplate, TrialConfig
    from kubeflow.trainer import CustomTrainer, TrainerClient

    cfg = KubernetesBackendConfig(config_file=str(k.kubeconfig), namespace="default")
    oc = OptimizerClient(cfg)
    name = oc.optimize(
        TrainJobTemplate(runtime=TrainerClient(cfg).get_runtime("python-distributed"), trainer=CustomTrainer(func=broken)),
        search_space={"x": Search.uniform(0.0, 1.0)},
        trial_config=TrialConfig(num_trials=3, parallel_trials=1, max_failed_trials=1),
    )
    with pytest.raises(RuntimeError, match="is Failed"):
        oc.wait_for_job_status(name, timeout=120, polling_interval=1)
    job = oc.get_job(name)
    assert job.status == "Failed"
    assert job.trials and all(t.trainjob.status == "Failed" for t in job.trials)
    assert oc.get_best_results(name) is None
    exp = k.kjson("get", "experiment", name)
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in exp["status"]["conditions"])
    oc.delete_job(name)
