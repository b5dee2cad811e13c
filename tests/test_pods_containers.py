"""Pods in real OCI containers through a RuntimeClass (podman): the image's filesystem, ENTRYPOINT/CMD/
WORKDIR, volumes at their real mountPaths, a memory limit enforced by cgroups (OOMKilled), logs, exec,
graceful termination, image pull errors, and adoption of a running container after kill -9 of ketch.

Images are built offline: ``FROM scratch`` with Debian's static busybox (and an /etc/os-release of its own,
so what the Pod sees cannot be the host's), and a python3 image from Debian's packages (mmdebstrap, cached
in podman's storage). podman runs as root with runc; this machine's limits need the containers.conf below.
These tests are skipped, with the reason, only where podman cannot run a container at all
(scripts/test.sh installs podman, runc, busybox-static and mmdebstrap as root).
"""

import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from conftest import make_ketch, wait_for

BUSYBOX = "localhost/ketch-test-busybox:1"
ENTRY = "localhost/ketch-test-entry:1"
PYTHON = "localhost/ketch-test-python:bookworm"
CONF = textwrap.dedent("""
    [containers]
    default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
    [engine]
    runtime = "runc"
""")


def podman(*args: str, env: dict, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=env, input=input, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory) -> dict:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/test.sh installs it as root: apt-get install podman runc)")
    d = tmp_path_factory.mktemp("podman")
    (d / "containers.conf").write_text(CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf")}
    if podman("image", "exists", BUSYBOX, env=env).returncode != 0:
        busybox = shutil.which("busybox")
        if busybox is None:
            pytest.skip("no static busybox to build the test image from (apt-get install busybox-static)")
        ctx = d / "busybox"
        ctx.mkdir()
        shutil.copy(busybox, ctx / "busybox")
        (ctx / "os-release").write_text('ID=ketch-test-busybox\nPRETTY_NAME="ketch test busybox"\n')
        (ctx / "Containerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "COPY os-release /etc/os-release\nENV PATH=/bin\nWORKDIR /\n")
        r = podman("build", "-q", "-t", BUSYBOX, str(ctx), env=env)
        if r.returncode != 0:
            pytest.skip(f"podman cannot build or run containers here: {r.stderr.decode()[-500:]}")
    if podman("image", "exists", ENTRY, env=env).returncode != 0:
        ctx = d / "entry"
        ctx.mkdir()
        (ctx / "Containerfile").write_text(f'FROM {BUSYBOX}\nWORKDIR /app\nENTRYPOINT ["/bin/echo", "entry"]\nCMD ["default-cmd"]\n')
        assert podman("build", "-q", "-t", ENTRY, str(ctx), env=env).returncode == 0
    r = podman("run", "--rm", "--network", "host", BUSYBOX, "true", env=env)
    if r.returncode != 0:
        pytest.skip(f"podman cannot run a container here: {r.stderr.decode()[-500:]}")
    return env


@pytest.fixture(scope="module")
def k(engine_env, tmp_path_factory):
    k = make_ketch(tmp_path_factory.mktemp("containers"), env={"CONTAINERS_CONF": engine_env["CONTAINERS_CONF"], "KETCH_BACKOFF_BASE_SECONDS": "0.2"})
    k.start()
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "podman"}, "handler": "podman"}))
    try:
        yield k
    finally:
        k.stop()


def pod(name: str, image: str = BUSYBOX, command: list[str] | None = None, runtime: str | None = "podman", **extra) -> dict:
    c = {"name": "main", "image": image, **({"command": command} if command else {}), **extra.pop("container", {})}
    spec = {"restartPolicy": "Never", "containers": [c], **extra}
    if runtime:
        spec["runtimeClassName"] = runtime
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def apply(k, obj: dict) -> None:
    k.kubectl("apply", "-f", "-", input=json.dumps(obj))


def finished(k, name: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (p := k.kjson("get", "pod", name))["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=timeout, what=f"{name} finished")


def running(k, name: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (p := k.kjson("get", "pod", name))["status"].get("phase") == "Running" and p, timeout=timeout, what=f"{name} running")


def engine_names(env: dict) -> list[str]:
    return podman("ps", "-a", "--filter", "label=ketch.dev/pod-uid", "--format", "{{.Names}}", env=env).stdout.decode().split()


def test_runtime_class_needs_a_handler(k):
    r = k.kubectl("apply", "-f", "-", check=False, input=json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "bad"}}))
    assert r.returncode != 0 and "handler" in r.stderr
    assert k.kjson("get", "runtimeclass", "podman")["handler"] == "podman"


def test_a_pod_sees_its_images_filesystem_and_only_kubernetes_env(k):
    apply(k, pod("osr", command=["sh", "-c", "cat /etc/os-release; echo host=$HOSTNAME greet=$GREETING; env"],
                 container={"env": [{"name": "GREETING", "value": "hi"}]}))
    p = finished(k, "osr")
    out = k.kubectl("logs", "osr").stdout
    assert p["status"]["phase"] == "Succeeded", out
    assert "ID=ketch-test-busybox" in out and "host=osr greet=hi" in out
    assert "KUBERNETES_SERVICE_HOST=127.0.0.1" in out
    assert "PYTHONPATH" not in out and "CONTAINERS_CONF" not in out  # ketch's own environment stays out
    assert p["status"]["containerStatuses"][0]["imageID"].startswith("podman://")
    assert not [n for n in engine_names(k.env) if "_osr_" in n]  # removed once it ended


def test_entrypoint_cmd_and_workdir_as_kubernetes_combines_them(k):
    apply(k, pod("ep-none", image=ENTRY))
    apply(k, pod("ep-args", image=ENTRY, container={"args": ["given"]}))
    apply(k, pod("ep-cmd", image=ENTRY, command=["sh", "-c", "pwd; echo $0 $1", "a"], container={"args": ["b"]}))
    apply(k, pod("ep-wd", image=ENTRY, command=["pwd"], container={"workingDir": "/tmp"}))
    assert [finished(k, n)["status"]["phase"] for n in ("ep-none", "ep-args", "ep-cmd", "ep-wd")] == ["Succeeded"] * 4
    assert k.kubectl("logs", "ep-none").stdout == "entry default-cmd\n"
    assert k.kubectl("logs", "ep-args").stdout == "entry given\n"
    assert k.kubectl("logs", "ep-cmd").stdout == "/app\na b\n"
    assert k.kubectl("logs", "ep-wd").stdout == "/tmp\n"


def test_volumes_are_mounted_at_their_real_paths(k, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "from-host.txt").write_text("hello from the host\n")
    apply(k, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"settings.ini": "x=1\n"}})
    p = pod("vols", command=["sh", "-c", "cat /data/from-init /etc/cfg/settings.ini /mnt/host/from-host.txt && echo written > /mnt/host/from-pod.txt"],
            volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "host", "hostPath": {"path": str(host)}}],
            container={"volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
                                        {"name": "host", "mountPath": "/mnt/host"}]})
    p["spec"]["initContainers"] = [{"name": "init", "image": BUSYBOX, "command": ["sh", "-c", "echo from init > /data/from-init"],
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
    apply(k, p)
    done = finished(k, "vols")
    assert done["status"]["phase"] == "Succeeded", k.kubectl("logs", "vols").stdout
    assert k.kubectl("logs", "vols").stdout == "from init\nx=1\nhello from the host\n"
    assert (host / "from-pod.txt").read_text() == "written\n"


def test_a_memory_limit_is_enforced_and_reported_as_oomkilled(k):
    hog = "x=$(head -c 80000000 /dev/zero | tr '\\0' a); echo survived ${#x}"
    apply(k, pod("hog", command=["sh", "-c", hog], container={"resources": {"limits": {"memory": "24Mi"}}}))
    t = finished(k, "hog")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "OOMKilled" and t["exitCode"] == 137
    assert "survived" not in k.kubectl("logs", "hog").stdout


def test_logs_exec_and_graceful_termination(k, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = "trap 'echo got TERM; echo term > /marks/term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"
    apply(k, pod("svc", command=["sh", "-c", script], terminationGracePeriodSeconds=10, volumes=[{"name": "m", "hostPath": {"path": str(marks)}}],
                 container={"volumeMounts": [{"name": "m", "mountPath": "/marks"}],
                            # true only inside the image (the host's os-release is Debian's): the probe runs in the container
                            "readinessProbe": {"exec": {"command": ["grep", "-q", "ketch-test-busybox", "/etc/os-release"]}, "periodSeconds": 1}}))
    running(k, "svc")
    wait_for(lambda: k.kjson("get", "pod", "svc")["status"]["containerStatuses"][0]["ready"], what="ready by its exec probe")
    wait_for(lambda: "ready" in k.kubectl("logs", "svc").stdout, what="ready in the log")
    r = k.kubectl("exec", "svc", "--", "cat", "/etc/os-release")
    assert "ID=ketch-test-busybox" in r.stdout
    r = k.kubectl("exec", "svc", "--", "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7
    r = k.kubectl("exec", "-i", "svc", "--", "sh", "-c", "cat > /marks/stdin", input="via stdin\n")
    assert (marks / "stdin").read_text() == "via stdin\n"
    k.kubectl("delete", "pod", "svc", "--wait=true", timeout=60)
    assert (marks / "term").read_text() == "term\n"  # SIGTERM reached the container's process
    assert not [n for n in engine_names(k.env) if "_svc_" in n]


def test_image_pull_errors_and_policy_never(k):
    apply(k, pod("nopull", image="localhost/ketch-no-such-image:1"))
    apply(k, pod("never", image="localhost/ketch-no-such-image:1", container={"imagePullPolicy": "Never"}))

    def waiting(name):
        st = k.kjson("get", "pod", name)["status"].get("containerStatuses") or [{}]
        return (st[0].get("state") or {}).get("waiting") or {}

    first = wait_for(lambda: (w := waiting("nopull")).get("reason") in ("ErrImagePull", "ImagePullBackOff") and w, what="pull error")
    assert "localhost/ketch-no-such-image:1" in first["message"]
    back = wait_for(lambda: (w := waiting("nopull")).get("reason") == "ImagePullBackOff" and w, what="ImagePullBackOff")
    assert back["message"].startswith('Back-off pulling image "localhost/ketch-no-such-image:1"')
    never = wait_for(lambda: (w := waiting("never")).get("reason") == "ErrImageNeverPull" and w, what="ErrImageNeverPull")
    assert never["message"] == 'Container image "localhost/ketch-no-such-image:1" is not present with pull policy of Never'
    k.kubectl("delete", "pod", "nopull", "never", "--wait=true", timeout=60)  # no more pulls behind the next tests


def test_a_missing_runtime_class_keeps_the_pod_waiting_and_says_why(k):
    apply(k, pod("norc", runtime="nope"))
    w = wait_for(lambda: ((k.kjson("get", "pod", "norc")["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting", {}).get("message"),
                 what="waiting message")
    assert w == 'RuntimeClass "nope" not found'
    k.kubectl("delete", "pod", "norc", "--wait=true", timeout=60)


def test_a_command_missing_from_the_image_cannot_run(k):
    apply(k, pod("nocmd", command=["no-such-program"]))
    t = finished(k, "nocmd")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "ContainerCannotRun" and t["exitCode"] == 128
    assert "no-such-program" in t["message"]


def test_an_image_removed_after_use_is_asked_for_again(k, engine_env):
    """ketch remembers that an image is there (no engine call per start); once it is removed, the run that
    finds it gone fails, and the restart asks the engine again: ErrImagePull, not the same failure again."""
    gone = "localhost/ketch-test-gone:1"
    assert podman("tag", BUSYBOX, gone, env=engine_env).returncode == 0
    apply(k, pod("gone-1", image=gone, command=["true"]))
    assert finished(k, "gone-1")["status"]["phase"] == "Succeeded"
    assert podman("rmi", gone, env=engine_env).returncode == 0  # the tag only; busybox stays
    apply(k, pod("gone-2", image=gone, command=["true"], restartPolicy="OnFailure"))

    def status():
        return (k.kjson("get", "pod", "gone-2")["status"].get("containerStatuses") or [{}])[0]

    st = wait_for(lambda: (s := status()).get("state", {}).get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff") and s,
                  what="a pull of the removed image")
    assert gone in st["state"]["waiting"]["message"]
    assert st["lastState"]["terminated"]["reason"] == "ContainerCannotRun" and gone in st["lastState"]["terminated"]["message"]
    k.kubectl("delete", "pod", "gone-1", "gone-2", "--wait=true", timeout=60)


@pytest.fixture(scope="module")
def python_image(engine_env) -> str:
    """Debian bookworm with its python3, imported into podman once (about 25 s; kept in podman's storage)."""
    if podman("image", "exists", PYTHON, env=engine_env).returncode != 0:
        if shutil.which("mmdebstrap") is None:
            pytest.skip("mmdebstrap is not installed to build the python3 image offline (apt-get install mmdebstrap)")
        deb = subprocess.Popen(["mmdebstrap", "--variant=minbase", "--include=python3", "bookworm", "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        imp = subprocess.run(["podman", "import", "-", PYTHON], stdin=deb.stdout, env=engine_env, capture_output=True, timeout=600)
        deb.wait(600)
        assert imp.returncode == 0, imp.stderr
    return PYTHON


def test_python_image_runs_its_own_python(k, python_image):
    code = "import sys; print(sys.prefix); import yaml"
    apply(k, pod("py", image=python_image, command=["python3", "-c", code]))
    p = finished(k, "py", timeout=120)
    out = k.kubectl("logs", "py").stdout
    assert p["status"]["phase"] == "Failed" and out.splitlines()[0] == "/usr"  # the image's python, without ketch's packages
    assert "No module named 'yaml'" in out


DDP = """
import sys, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
print(f"rank={dist.get_rank()} world={dist.get_world_size()} sum={int(t.item())} prefix={sys.prefix}")
"""


def test_a_pytorchjob_runs_as_containers_over_gloo(k, python_image):
    """Master + Worker in the python image, torch mapped in read-only from this machine (same Python 3.11):
    the operator's MASTER_ADDR=127.0.0.1 wiring holds because containers share the host network."""
    torch = pytest.importorskip("torch", reason="needs the torch extra")
    site = os.path.dirname(os.path.dirname(torch.__file__))
    c = {"name": "pytorch", "image": python_image, "command": ["python3", "-c", DDP],
         "env": [{"name": "PYTHONPATH", "value": "/opt/site"}], "volumeMounts": [{"name": "site", "mountPath": "/opt/site", "readOnly": True}]}
    tmpl = {"spec": {"runtimeClassName": "podman", "containers": [c], "volumes": [{"name": "site", "hostPath": {"path": site}}]}}
    rs = {"replicas": 1, "restartPolicy": "Never", "template": tmpl}
    apply(k, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "cddp", "namespace": "default"},
              "spec": {"pytorchReplicaSpecs": {"Master": rs, "Worker": rs}}})
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/cddp", "--timeout=150s", timeout=170)
    for name, rank in (("cddp-master-0", 0), ("cddp-worker-0", 1)):
        out = k.kubectl("logs", name).stdout
        assert f"rank={rank} world=2 sum=3 prefix=/usr" in out.splitlines(), out[-2000:]
        assert k.kjson("get", "pod", name)["status"]["containerStatuses"][0]["imageID"] == f"podman://{python_image}"


@pytest.fixture(scope="module")
def dk(engine_env, tmp_path_factory):
    """A ketch whose every Pod is a container: KETCH_DEFAULT_RUNTIME names the handler directly."""
    k = make_ketch(tmp_path_factory.mktemp("default-runtime"), env={"CONTAINERS_CONF": engine_env["CONTAINERS_CONF"], "KETCH_DEFAULT_RUNTIME": "podman"})
    k.start()
    try:
        yield k
    finally:
        k.stop()


def test_a_pipeline_task_runs_in_its_base_image(dk, python_image):
    """The task Pod's command is ketch's launcher; in a container ketch is mapped into the image, and the
    component's code runs there (podman's /run/.containerenv exists only inside a container)."""
    from kfp import dsl

    @dsl.component(base_image=python_image)
    def where() -> str:
        import os

        return f"{os.path.exists('/run/.containerenv')}|{open('/etc/hostname').read().strip() == os.environ['HOSTNAME']}"

    @dsl.pipeline
    def in_image() -> str:
        return where().set_caching_options(False).output

    c = dk.kfp_client()
    rid = c.create_run_from_pipeline_func(in_image).run_id
    run = wait_for(lambda: (r := c.get_run(rid)).state in ("SUCCEEDED", "FAILED") and r, timeout=120, what="run done")
    assert run.state == "SUCCEEDED", dk.log()[-3000:]
    outs = [json.loads(f.read_text()) for f in (dk.home / "pipelines" / "runs").rglob("result.json")]
    assert [o["parameters"]["Output"] for o in outs if "Output" in (o.get("parameters") or {})] == ["True|True"]


def test_an_inferenceservice_predictor_runs_as_a_container(dk, python_image, engine_env):
    """The predictor's image (``ketch/modelserver:...``, tagged here from the python image) with ketch's
    model server mapped in; the model under KETCH_HOME, which containers running ketch's programs see."""
    pytest.importorskip("sklearn", reason="needs the serving extra")
    from serving_helpers import IRIS_ROW, train_sklearn

    assert podman("tag", python_image, "ketch/modelserver:ketch-modelserver", env=engine_env).returncode == 0
    model = dk.home / "models" / "lr"
    train_sklearn(model, "lr")
    dk.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                                     "metadata": {"name": "demo", "namespace": "default"},
                                                     "spec": {"predictor": {"sklearn": {"storageUri": str(model)}}}}))
    dk.kubectl("wait", "--for=condition=Ready", "inferenceservice/demo", "--timeout=120s", timeout=150)
    pods = dk.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=demo")["items"]
    assert pods and pods[0]["status"]["containerStatuses"][0]["imageID"] == "podman://ketch/modelserver:ketch-modelserver"
    url = dk.kubectl("get", "inferenceservice", "demo", "-o", "jsonpath={.status.url}").stdout
    with dk.http() as c:
        r = c.post(url.removeprefix(dk.url) + "/v1/models/demo:predict", json={"instances": [IRIS_ROW]})
    assert r.status_code == 200 and r.json() == {"predictions": [1]}
    dk.kubectl("delete", "inferenceservice", "demo", "--wait=true", timeout=60)


def test_default_runtime_and_adoption_after_kill9(dk, engine_env, tmp_path):
    """KETCH_DEFAULT_RUNTIME runs every Pod as a container; a container keeps running through a kill -9 of
    ketch, is adopted by the next ketch, and its exit code is the container's (not lost with ketch)."""
    k = dk
    marks = tmp_path / "marks"
    marks.mkdir()
    vol = {"volumes": [{"name": "m", "hostPath": {"path": str(marks)}}], "container": {"volumeMounts": [{"name": "m", "mountPath": "/marks"}]}}
    apply(k, pod("long", runtime=None, command=["sh", "-c", "echo started >> /marks/log; while [ ! -f /marks/stop ]; do sleep 0.1; done; exit 3"], **vol))
    apply(k, pod("short", runtime=None, command=["sh", "-c", "touch /marks/short-up; while [ ! -f /marks/stop-short ]; do sleep 0.1; done; exit 5"], **vol))
    running(k, "long")
    running(k, "short")
    wait_for(lambda: (marks / "log").exists() and (marks / "short-up").exists(), what="the containers started")
    k.kill9()
    (marks / "stop-short").touch()  # this one ends while no ketch is there to see it
    wait_for(lambda: not [n for n in engine_names(engine_env) if "_short_" in n and "Up" in podman(
        "ps", "-a", "--filter", f"name={n}", "--format", "{{.Status}}", env=engine_env).stdout.decode()], what="short exited")
    k.start()
    t = finished(k, "short")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["exitCode"] == 5 and t["reason"] == "Error"  # read from the engine, not ContainerStatusUnknown
    time.sleep(1.0)
    assert running(k, "long")["status"]["containerStatuses"][0]["restartCount"] == 0
    (marks / "stop").touch()
    t = finished(k, "long")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["exitCode"] == 3 and t["reason"] == "Error"
    assert (marks / "log").read_text() == "started\n"  # one container all along, not a restart
    assert not [n for n in engine_names(engine_env) if "_long_" in n or "_short_" in n]


def test_containers_join_the_pods_own_network_namespace(engine_env, tmp_path):
    """With KETCH_POD_NETWORK=netns a container gets its Pod's address, as a process does: two containers
    both serve :8080, each at its own podIP, and see the Pod's hosts file."""
    from ketch.kubelet.network import permitted

    if permitted() is not None:
        pytest.skip(f"network namespaces: {permitted()}")
    import httpx

    k = make_ketch(tmp_path, env={"CONTAINERS_CONF": engine_env["CONTAINERS_CONF"], "KETCH_POD_NETWORK": "netns"}).start()
    try:
        k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "podman"}, "handler": "podman"}))
        serve = ["sh", "-c", "mkdir -p /w && echo $HOSTNAME > /w/index.html && exec httpd -f -p 8080 -h /w"]
        for n in ("box-a", "box-b"):
            apply(k, pod(n, command=serve))
        pods = [running(k, n, timeout=120) for n in ("box-a", "box-b")]
        ips = [p["status"]["podIP"] for p in pods]
        assert len(set(ips)) == 2 and all(ip.startswith("10.244.") for ip in ips)

        def answer(ip: str) -> str | None:
            try:
                return httpx.get(f"http://{ip}:8080/", timeout=3).text.strip()
            except httpx.HTTPError:
                return None

        for p, ip in zip(pods, ips, strict=True):
            assert wait_for(lambda ip=ip: answer(ip), timeout=30, what=f"{ip}:8080") == p["metadata"]["name"]
        hosts = k.kubectl("exec", "box-a", "--", "cat", "/etc/hosts").stdout
        assert f"{ips[0]}\tbox-a" in hosts
    finally:
        k.stop()
