"""Training kinds and container rules beyond the PyTorchJob basics, run for real through the local kubelet:
args-only containers (the image's entrypoint from images.yaml with args appended), torchrun on PATH for an
interpreter that has torch, PaddleJob peers reaching each other, and MPIJob over OpenMPI and mpi4py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_ketch, wait_for

SCRIPTS = Path(__file__).parent / "training_scripts"
PY = sys.executable


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("training-kinds")).start()
    try:
        yield kk
    finally:
        kk.stop()


def create(k, ns: str, obj: dict) -> None:
    k.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


def ns_(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def logs(k, ns: str, pod: str, container: str | None = None) -> str:
    return k.kubectl("logs", pod, "-n", ns, *(["-c", container] if container else [])).stdout


def add_images(k, rules: list[dict]) -> None:
    p = k.home / "images.yaml"
    old = (yaml.safe_load(p.read_text()) or {}).get("images", []) if p.exists() else []
    p.write_text(yaml.safe_dump({"images": old + rules}))


def test_xgboostjob_with_args_only_runs_the_image_entrypoint(k):
    image = "docker.io/kubeflow/xgboost-dist-iris:latest"
    add_images(k, [{"match": "docker.io/kubeflow/xgboost-dist-iris*", "command": [PY, str(SCRIPTS / "xgb_iris_args.py")]}])
    args = ["--job_type=Train", "--xgboost_parameter=objective:multi:softprob,num_class:3", "--n_estimators=10", "--learning_rate=0.1"]
    rs = lambda n: {"replicas": n, "restartPolicy": "Never",  # noqa: E731
                    "template": {"spec": {"containers": [{"name": "xgboost", "image": image, "args": args}]}}}
    ns = ns_(k, "xgb-args")
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob", "metadata": {"name": "iris"},
                   "spec": {"xgbReplicaSpecs": {"Master": rs(1), "Worker": rs(2)}}})
    k.kubectl("wait", "--for=condition=Succeeded", "xgboostjob/iris", "-n", ns, "--timeout=120s", timeout=140)
    digests = set()
    for rank, pod in enumerate(("iris-master-0", "iris-worker-0", "iris-worker-1")):
        m = re.search(r"job_type=Train rank=(\d) world=3 loss_first=([\d.]+) loss_last=([\d.]+) model=(\w+)", logs(k, ns, pod))
        assert m and int(m.group(1)) == rank and float(m.group(3)) < float(m.group(2)), logs(k, ns, pod)
        digests.add(m.group(4))
    assert len(digests) == 1


def test_args_only_with_unknown_entrypoint_says_so(k):
    ns = ns_(k, "args-unknown")
    create(k, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "example.com/no-such-image:1", "args": ["--job_type=Train"]}]}})

    def terminated():
        st = k.kjson("get", "pod", "p", "-n", ns).get("status") or {}
        for cs in st.get("containerStatuses") or []:
            t = (cs.get("state") or {}).get("terminated")
            if t:
                return t
        return None

    t = wait_for(terminated, timeout=30, what="container terminated")
    assert t["reason"] == "ContainerCannotRun"
    assert 'image "example.com/no-such-image:1" has no entrypoint known to ketch' in t["message"]
    assert '"--job_type=Train"' in t["message"] and "images.yaml" in t["message"]


def test_torchrun_on_path_when_torch_is_importable(k, tmp_path):
    pytest.importorskip("torch", reason="needs the torch extra")
    venv = tmp_path / "venv"  # an interpreter that imports torch (system site) but has no torchrun script
    subprocess.run([PY, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    assert not (venv / "bin" / "torchrun").exists()
    # the system site may not have torch (the suite's own venv does): make torch importable by a .pth

    import torch
    sp = next((venv / "lib").glob("python3*/site-packages"))
    (sp / "ketch-test-torch.pth").write_text(str(Path(torch.__file__).resolve().parents[1]) + "\n")
    add_images(k, [{"match": "local/torch-env", "python": str(venv / "bin" / "python"), "env": {"PATH": "/usr/bin:/bin"}}])
    ns = ns_(k, "torchrun")
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "tr"},
                   "spec": {"nprocPerNode": "1", "pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": {"containers": [
                       {"name": "pytorch", "image": "local/torch-env",
                        "command": ["sh", "-c", f"command -v torchrun && exec torchrun {SCRIPTS / 'ddp_train.py'}"]}]}}}}}})
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/tr", "-n", ns, "--timeout=120s", timeout=140)
    out = logs(k, ns, "tr-master-0")
    assert "/kubelet/torchrun/" in out.splitlines()[0], out  # the kubelet's torchrun: the venv has none
    assert "rank=0 world=1" in out, out


def paddle_replica(n: int) -> dict:
    return {"replicas": n, "template": {"spec": {"containers": [
        {"name": "paddle", "image": "registry.baidubce.com/paddlepaddle/paddle:2.4.0-cpu", "command": [PY, str(SCRIPTS / "paddle_peers.py")]}]}}}


@pytest.mark.parametrize("mode", ["collective", "ps"])
def test_paddlejob_peers_reach_each_other(k, mode):
    ns = ns_(k, f"paddle-{mode}")
    specs = {"Worker": paddle_replica(3)} if mode == "collective" else {"Master": paddle_replica(1), "Worker": paddle_replica(2)}
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "PaddleJob", "metadata": {"name": "pd"},
                   "spec": {"paddleReplicaSpecs": specs}})
    k.kubectl("wait", "--for=condition=Succeeded", "paddlejob/pd", "-n", ns, "--timeout=90s", timeout=100)
    names = sorted(f"pd-{rt.lower()}-{i}" for rt, rs in specs.items() for i in range(rs["replicas"]))
    for pod in names:
        out = logs(k, ns, pod)
        m = re.search(r"job=pd me=(\S+) peers=(\[.*?\]) (\{.*\})", out)
        assert m and m.group(1) == pod, out
        assert yaml.safe_load(m.group(2)) == names
        extra = yaml.safe_load(m.group(3))
        if mode == "ps":
            assert extra == ({"PADDLE_SERVER_NUM": "1"} if "master" in pod else {"PADDLE_TRAINER_NUM": "1"})
        else:
            assert extra == {}
    pod = k.kjson("get", "pod", names[0], "-n", ns)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["PADDLE_NNODES"]["value"] == "3" and env["PADDLE_JOB_ID"]["value"] == "pd"
    assert env["POD_IP_DUMMY"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert re.fullmatch(r"\$\(POD_IP_DUMMY\):\d+", env["PADDLE_MASTER"]["value"])
    assert pod["metadata"]["labels"]["training.kubeflow.org/operator-name"] == "paddlejob-controller"


def mpijob(name: str, workers: int, launcher_cmd: list[str], **spec) -> dict:
    image = "mpioperator/mpi-pi:openmpi"
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": name},
            "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, **spec, "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": {"spec": {"containers": [{"name": "mpi-launcher", "image": image, "command": launcher_cmd}]}}},
                "Worker": {"replicas": workers, "template": {"spec": {"containers": [
                    {"name": "mpi-worker", "image": image, "command": ["/usr/sbin/sshd"], "args": ["-De"]}]}}}}}}


@pytest.mark.parametrize("launcher_as_worker", [True, False])
def test_mpijob_mpi4py_allreduce(k, launcher_as_worker):
    import mpi4py  # noqa: F401 - the test extra; scripts/test.sh installs OpenMPI before it

    assert shutil.which("mpirun"), "OpenMPI is missing: apt-get install -y openmpi-bin libopenmpi-dev (scripts/test.sh does it)"
    np_ = 3 if launcher_as_worker else 4
    ns = ns_(k, f"mpi-{str(launcher_as_worker).lower()}")
    cmd = ["mpirun", "-np", str(np_), PY, str(SCRIPTS / "mpi_allreduce.py")]
    create(k, ns, mpijob("ar", 2, cmd, slotsPerWorker=1 if launcher_as_worker else 2, runLauncherAsWorker=launcher_as_worker))
    k.kubectl("wait", "--for=condition=Succeeded", "mpijob/ar", "-n", ns, "--timeout=120s", timeout=140)
    out = logs(k, ns, "ar-launcher")
    ranks = {int(m.group(1)): m.groups() for m in re.finditer(r"rank=(\d+) size=(\d+) sum=(\d+) pod=(\S+?)(?=rank=|\s|$)", out)}
    assert sorted(ranks) == list(range(np_)), out
    want = np_ * (np_ + 1) // 2
    assert all(int(size) == np_ and int(s) == want for _, size, s, _ in ranks.values()), out
    pods = {pod for *_, pod in ranks.values()}
    assert pods == ({"ar-launcher", "ar-worker-0", "ar-worker-1"} if launcher_as_worker else {"ar-worker-0", "ar-worker-1"}), out
    cm = k.kjson("get", "configmap", "ar-config", "-n", ns)
    hosts = [f"ar-worker-{i}.ar.{ns}.svc slots={1 if launcher_as_worker else 2}" for i in range(2)]
    if launcher_as_worker:
        hosts.insert(0, f"ar-launcher.ar.{ns}.svc slots=1")
    assert cm["data"]["hostfile"].splitlines() == hosts
    assert k.kjson("get", "secret", "ar-ssh", "-n", ns)["type"] == "kubernetes.io/ssh-auth"
    j = k.kjson("get", "mpijob", "ar", "-n", ns)
    assert j["status"]["conditions"][-1]["reason"] == "MPIJobSucceeded"
    wait_for(lambda: not [p for p in k.kjson("get", "pods", "-n", ns)["items"] if p["status"].get("phase") == "Running"],
             timeout=30, what="workers cleaned up (cleanPodPolicy Running)")


def test_mpijob_hostfile_formats_and_env(k):
    ns = ns_(k, "mpi-impl")
    for impl in ("Intel", "MPICH"):
        name = impl.lower()
        create(k, ns, mpijob(name, 2, ["sh", "-c", "cat $I_MPI_HYDRA_HOST_FILE $HYDRA_HOST_FILE; ls ~/.ssh 2>/dev/null; ls $KETCH_VOLUME_SSH_AUTH"],
                             mpiImplementation=impl, slotsPerWorker=4, sshAuthMountPath="/home/mpiuser/.ssh"))
    for impl in ("Intel", "MPICH"):
        name = impl.lower()
        k.kubectl("wait", "--for=condition=Succeeded", f"mpijob/{name}", "-n", ns, "--timeout=60s", timeout=70)
        out = logs(k, ns, f"{name}-launcher")
        assert f"{name}-worker-0.{name}.{ns}.svc:4\n{name}-worker-1.{name}.{ns}.svc:4" in out, out
        assert "authorized_keys" in out and "id_rsa.pub" in out, out
        env = {e["name"]: e["value"] for e in k.kjson("get", "pod", f"{name}-launcher", "-n", ns)["spec"]["containers"][0]["env"]}
        if impl == "Intel":
            assert env["I_MPI_HYDRA_BOOTSTRAP"] == "rsh" and env["I_MPI_HYDRA_BOOTSTRAP_EXEC"] == "/etc/mpi/kubexec.sh" and env["I_MPI_PERHOST"] == "4"
        else:
            assert env["HYDRA_LAUNCHER"] == "rsh" and env["HYDRA_LAUNCHER_EXEC"] == "/etc/mpi/kubexec.sh"
    r = k.kubectl("create", "-n", ns, "-f", "-", check=False,
                  input=yaml.safe_dump(mpijob("bad", 1, ["true"], mpiImplementation="LAM")))
    assert r.returncode != 0 and "mpiImplementation" in r.stderr, r.stderr


def test_mpijob_torch_ddp_launched_by_mpirun(k):
    """torch DDP over gloo, launched by ``mpirun -np 2`` on the launcher into two workers: each rank reads
    OMPI_COMM_WORLD_RANK/SIZE and the MASTER_ADDR/PORT ketch sets in every Pod (rank 0's Pod, a real port)."""
    import torch  # noqa: F401 - the torch extra; scripts/test.sh installs it

    ns = ns_(k, "mpi-ddp")
    cmd = ["mpirun", "-np", "2", PY, str(SCRIPTS / "mpi_ddp.py")]
    create(k, ns, mpijob("ddp", 2, cmd, slotsPerWorker=1))
    r = subprocess.run(["kubectl", "--kubeconfig", str(k.kubeconfig), "wait", "--for=condition=Succeeded", "mpijob/ddp",
                        "-n", ns, "--timeout=120s"], capture_output=True, text=True, timeout=140)
    out = logs(k, ns, "ddp-launcher")
    assert r.returncode == 0, f"{r.stderr}\nlauncher log:\n{out[-3000:]}\nworker-0 log:\n{logs(k, ns, 'ddp-worker-0')[-2000:]}"
    ranks = {int(m.group(1)): m.groups() for m in
             re.finditer(r"ddp rank=(\d+) size=(\d+) sum=(\d+) biasgrad=(\S+) pod=(\S+?)(?=ddp rank=|\s|$)", out)}
    assert sorted(ranks) == [0, 1], out
    assert all(int(size) == 2 and int(s) == 3 for _, size, s, _, _ in ranks.values()), out
    assert all(float(g) == 1.0 for *_, g, _ in ranks.values()), out  # d(sum)/d(bias) = 1 on each rank, averaged
    assert {pod for *_, pod in ranks.values()} == {"ddp-worker-0", "ddp-worker-1"}, out
