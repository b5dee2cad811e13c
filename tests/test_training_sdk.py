"""The SDKs users run against Kubeflow, run unchanged against ketch through a kubeconfig:
``kubeflow-training``'s TrainingClient (Training Operator v1) and the ``kubeflow`` SDK's TrainerClient
on its Kubernetes backend (Trainer v2 TrainJob)."""

from __future__ import annotations

import sys

import pytest

from conftest import make_ketch, wait_for

PY = sys.executable
# torch is the optional extra `torch` (a CPU build: `pip install torch==2.13.0`); without it these cannot run.
torch = pytest.importorskip("torch", reason="needs the torch extra")


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("training-sdk")).start()
    try:
        yield kk
    finally:
        kk.stop()


def ddp_func(steps: int = 5):
    """Run by torchrun in every replica: an all-reduce over gloo proves the replicas found each other."""
    import os

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    print(f"node_rank={os.environ.get('GROUP_RANK')} rank={dist.get_rank()} world={dist.get_world_size()} allreduce={t.item()} steps={steps}", flush=True)
    dist.destroy_process_group()


def ddp_func_v1(parameters):
    """kubeflow-training passes ``parameters`` as one dict."""
    import os

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    print(f"rank={dist.get_rank()} world={dist.get_world_size()} allreduce={t.item()} steps={parameters['steps']} pet_nnodes={os.environ['PET_NNODES']}", flush=True)
    dist.destroy_process_group()


def test_training_client_v1_flow(k):
    from kubeflow.training import TrainingClient, models
    from kubernetes.client import V1Container, V1ObjectMeta, V1PodSpec, V1PodTemplateSpec

    tc = TrainingClient(config_file=str(k.kubeconfig), namespace="default")

    def spec(n: int):
        c = V1Container(name="pytorch", image="python:3.11", command=[PY, "-c", "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])"])
        return models.KubeflowOrgV1ReplicaSpec(replicas=n, restart_policy="OnFailure",
                                               template=V1PodTemplateSpec(spec=V1PodSpec(containers=[c])))

    job = models.KubeflowOrgV1PyTorchJob(
        api_version="kubeflow.org/v1", kind="PyTorchJob", metadata=V1ObjectMeta(name="sdk-v1"),
        spec=models.KubeflowOrgV1PyTorchJobSpec(run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="None"),
                                                pytorch_replica_specs={"Master": spec(1), "Worker": spec(2)}))
    tc.create_job(job)
    got = tc.get_job("sdk-v1")
    assert got.metadata.name == "sdk-v1" and got.spec.pytorch_replica_specs["Worker"].replicas == 2
    tc.wait_for_job_conditions("sdk-v1", timeout=120, polling_interval=1)
    conds = [c.type for c in tc.get_job_conditions("sdk-v1")]
    assert "Created" in conds and conds[-1] == "Succeeded"
    assert tc.is_job_succeeded("sdk-v1")
    logs, _ = tc.get_job_logs("sdk-v1")
    assert list(logs) == ["sdk-v1-master-0"] and "rank 0 of 3" in logs["sdk-v1-master-0"]
    logs, _ = tc.get_job_logs("sdk-v1", is_master=False, replica_type="worker", replica_index=1)
    assert "rank 2 of 3" in logs["sdk-v1-worker-1"]
    tc.delete_job("sdk-v1")
    wait_for(lambda: not k.kjson("get", "pods", "-l", "training.kubeflow.org/job-name=sdk-v1")["items"], what="pods collected")


def test_training_client_train_func(k):
    from kubeflow.training import TrainingClient

    tc = TrainingClient(config_file=str(k.kubeconfig), namespace="default")
    tc.create_job(name="sdk-fn", train_func=ddp_func_v1, parameters={"steps": 7}, num_workers=2, num_procs_per_worker=1)
    tc.wait_for_job_conditions("sdk-fn", timeout=180, polling_interval=1)
    logs, _ = tc.get_job_logs("sdk-fn", is_master=False)
    assert set(logs) == {"sdk-fn-master-0", "sdk-fn-worker-0"}
    assert "rank=0 world=2 allreduce=3.0 steps=7 pet_nnodes=2" in logs["sdk-fn-master-0"], logs
    assert "rank=1 world=2 allreduce=3.0 steps=7" in logs["sdk-fn-worker-0"], logs
    tc.delete_job("sdk-fn")


def test_trainer_client_v2_flow(k):
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import CustomTrainer, TrainerClient

    client = TrainerClient(KubernetesBackendConfig(config_file=str(k.kubeconfig), namespace="default"))
    names = {r.name for r in client.list_runtimes()}
    assert {"torch-distributed", "python-distributed"} <= names
    job = client.train(runtime=client.get_runtime("torch-distributed"),
                       trainer=CustomTrainer(func=ddp_func, func_args={"steps": 3}, num_nodes=2, resources_per_node={"cpu": 1}))
    done = client.wait_for_job_status(job, timeout=180, polling_interval=1)
    assert done.status == "Complete" and done.num_nodes == 2
    assert [s.name for s in sorted(done.steps, key=lambda s: s.name)] == ["node-0", "node-1"]
    assert job in {j.name for j in client.list_jobs()}
    assert client.get_job(job).status == "Complete"
    out = "\n".join(client.get_job_logs(job))
    assert "node_rank=0 rank=0 world=2 allreduce=3.0 steps=3" in out, out
    out1 = "\n".join(client.get_job_logs(job, step="node-1"))
    assert "rank=1 world=2" in out1
    client.delete_job(job)
    wait_for(lambda: job not in {j.name for j in client.list_jobs()}, what="job deleted")
