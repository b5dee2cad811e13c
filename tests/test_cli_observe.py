"""`ketch logs`, `ketch status`, and one short error when the server cannot be reached — the CLI finding
server and token from the kubeconfig alone."""


import json
import os
import re
import subprocess
import sys

from kfp import dsl

from conftest import SRC, free_port, wait_for


@dsl.component
def shout(word: str) -> str:
    print(f"shouting {word.upper()}")
    return word.upper()


@dsl.pipeline
def loud(word: str = "hey") -> str:
    return shout(word=word).set_caching_options(False).output


def cli_env(k, **extra: str) -> dict[str, str]:
    """No KETCH_* variables: the CLI finds the server and token from the kubeconfig alone."""
    env = {kk: v for kk, v in os.environ.items() if not kk.startswith("KETCH_")}
    env.update(KUBECONFIG=str(k.kubeconfig), PYTHONPATH=str(SRC), HOME=str(k.home / "nohome"), **extra)
    return env


def cli(k, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ketch", *args], env=cli_env(k), capture_output=True, text=True, timeout=timeout)


def test_logs_and_status(shared_ketch):
    k = shared_ketch
    c = k.kfp_client()
    rid = c.create_run_from_pipeline_func(loud, arguments={"word": "ketch"}).run_id
    c.wait_for_run_completion(rid, timeout=120)
    r = cli(k, "logs", rid, "shout")
    assert r.returncode == 0 and "shouting KETCH" in r.stdout, r.stderr
    r = cli(k, "logs", rid, "-f")
    assert r.returncode == 0 and "--- shout" in r.stdout and "shouting KETCH" in r.stdout, r.stderr
    r = cli(k, "logs", rid, "nope")
    assert r.returncode == 1 and "no task 'nope'" in r.stderr
    k.kubectl("create", "namespace", "busy")
    k.kubectl("create", "job", "sleeper", "-n", "busy", "--image=python:3.11", "--", sys.executable, "-c", "import time; time.sleep(60)")
    r = cli(k, "status")
    assert r.returncode == 0 and "sleeper" in r.stdout and "busy" in r.stdout, r.stdout + r.stderr
    assert "0/1 completions" in next(line for line in r.stdout.splitlines() if "sleeper" in line), r.stdout
    assert rid not in r.stdout  # finished runs only with --all
    r = cli(k, "status", "--all", "-n", "kubeflow")
    assert rid in r.stdout and "SUCCEEDED" in r.stdout, r.stdout
    k.kubectl("delete", "job", "sleeper", "-n", "busy")


def test_unreachable_server_is_one_line(shared_ketch):
    r = cli(shared_ketch, "get", "pods", "--server", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "cannot reach ketch" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli(shared_ketch, "logs", "x", "--server", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot reach ketch" in r.stderr, r.stderr


# -- progress ------------------------------------------------------------------------------------------------

NAP = '''
from kfp import dsl

@dsl.component
def nap(seconds: float) -> float:
    import time
    time.sleep(seconds)
    return seconds
'''

THREE_STEPS = NAP + '''
@dsl.pipeline
def three_steps(last: float = 0.0):
    # the first step lasts a second: warm task Pods end in ~50 ms, so a run of three 0 s naps can be over
    # before the CLI's first look, and its progress lines are what the tests read
    a = nap(seconds=1.0).set_caching_options(False)
    b = nap(seconds=0.0).after(a).set_caching_options(False)
    nap(seconds=last).after(b).set_caching_options(False)
'''

LOOP_AND_BRANCH = NAP + '''
@dsl.pipeline
def loop_and_branch(flag: bool = False):
    with dsl.ParallelFor([0.3, 0.3, 0.3], parallelism=1) as s:
        nap(seconds=s).set_caching_options(False)
    with dsl.If(flag == True):
        nap(seconds=0.0).set_caching_options(False)
'''


def in_pty(k, *args: str, until: str | None = None, timeout: float = 120) -> tuple[int | None, str]:
    """Run the CLI with a pseudo-terminal as its stdout (as in a person's shell), returning (exit code, what
    it drew). With ``until``, stop it with Ctrl-C (SIGINT) once that text has been drawn."""
    import pty
    import select
    import signal
    import time

    env = cli_env(k, TERM="xterm-256color", COLUMNS="220", LINES="40")
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "ketch", *args], env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if until and until.encode() in out and p.poll() is None:
                p.send_signal(signal.SIGINT)
                until = None
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk and p.poll() is not None:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        else:
            p.kill()
        return p.wait(timeout=10), out.decode(errors="replace")
    finally:
        os.close(master)


def test_run_progress_in_a_pipe_and_on_a_terminal(shared_ketch, tmp_path):
    src = tmp_path / "three_steps.py"
    src.write_text(THREE_STEPS)
    r = cli(shared_ketch, "run", str(src), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = re.findall(r"\[(\d+)/(\d+) tasks\]", r.stdout)
    # every line counts against the whole pipeline's 3 tasks, also before the later ones were created
    assert counts and {t for _, t in counts} == {"3"}, r.stdout
    assert "[0/3 tasks]" in r.stdout or "[1/3 tasks]" in r.stdout, r.stdout
    assert "SUCCEEDED" in r.stdout and "(3/3 tasks)" in r.stdout, r.stdout
    assert "\x1b[" not in r.stdout and "━" not in r.stdout  # plain text in a pipe
    # a loop's iterations count once its items are known; a branch whose condition is false counts nothing
    src2 = tmp_path / "loop_and_branch.py"
    src2.write_text(LOOP_AND_BRANCH)
    r = cli(shared_ketch, "run", str(src2), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = re.findall(r"\[(\d+)/(\d+) tasks\]", r.stdout)
    assert counts and {t for _, t in counts} == {"3"} and "(3/3 tasks)" in r.stdout, r.stdout
    code, drawn = in_pty(shared_ketch, "run", str(src))
    assert code == 0, drawn
    assert "━" in drawn and "3/3" in drawn and "tasks" in drawn, drawn  # rich's bar, ending full
    assert "[3/3 tasks]" not in drawn  # the count is the bar's, not appended to each line


def test_status_shows_progress_of_runs_jobs_and_experiments(shared_ketch, tmp_path):
    k = shared_ketch
    c = k.kfp_client()
    ns = "progress"
    k.kubectl("create", "namespace", ns)
    import importlib.util

    mod_path = tmp_path / "three_steps_mod.py"
    mod_path.write_text(THREE_STEPS)
    spec = importlib.util.spec_from_file_location("three_steps_mod", mod_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rid = c.create_run_from_pipeline_func(mod.three_steps, arguments={"last": 300.0}).run_id  # runs live in kubeflow
    # a PyTorchJob whose two workers finish at once while the master keeps going
    body = "import os, time; time.sleep(300 if os.environ.get('RANK') == '0' else 0)"
    tmpl = {"spec": {"containers": [{"name": "pytorch", "image": "python:3.11", "command": [sys.executable, "-c", body]}]}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "trainer", "namespace": ns},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": tmpl},
                                            "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": tmpl}}}}
    exp = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "search", "namespace": ns},
           "spec": {"objective": {"type": "maximize", "objectiveMetricName": "accuracy"}, "algorithm": {"algorithmName": "random"},
                    "maxTrialCount": 2, "parallelTrialCount": 2,
                    "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}],
                    "trialTemplate": {"primaryContainerName": "training", "trialParameters": [{"name": "lr", "reference": "lr"}],
                                      "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
                                          "restartPolicy": "Never", "containers": [{"name": "training", "image": "python:3.11",
                                          "command": [sys.executable, "-c", "print('accuracy=0.5')", "${trialParameters.lr}"]}]}}}}}}}
    # a Trainer v2 TrainJob of two nodes, node 1 done while node 0 keeps going
    runtime = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime", "metadata": {"name": "plain", "namespace": ns},
               "spec": {"mlPolicy": {"numNodes": 2, "torch": {}}, "template": {"spec": {"replicatedJobs": [
                   {"name": "node", "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                                                 "spec": {"template": {"spec": {"containers": [
                                                     {"name": "node", "image": "python:3.11", "command": ["false"]}]}}}}}]}}}}
    node = "import os, time; time.sleep(300 if os.environ['PET_NODE_RANK'] == '0' else 0)"
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "tj", "namespace": ns},
          "spec": {"runtimeRef": {"kind": "TrainingRuntime", "name": "plain"}, "trainer": {"numNodes": 2, "command": [sys.executable, "-c", node]}}}
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [job, exp, runtime]}))
    k.kubectl("apply", "-f", "-", input=json.dumps(tj))
    try:
        def summary() -> str:
            return (k.kjson("get", "pipelinerun", rid, "-n", "kubeflow").get("status") or {}).get("summary", "")
        wait_for(lambda: summary() == "2/3", timeout=120, what="two of three tasks done")
        wait_for(lambda: ((k.kjson("get", "pytorchjob", "trainer", "-n", ns).get("status") or {}).get("replicaStatuses") or {})
                 .get("Worker", {}).get("succeeded") == 2, timeout=120, what="workers succeeded")
        wait_for(lambda: [j.get("succeeded") for j in (k.kjson("get", "trainjob", "tj", "-n", ns).get("status") or {}).get("jobsStatus") or []] == [1],
                 timeout=120, what="one node done")
        wait_for(lambda: (k.kjson("get", "experiment", "search", "-n", ns).get("status") or {}).get("trialsSucceeded") == 2,
                 timeout=180, what="experiment's trials")
        r = cli(k, "status")
        assert r.returncode == 0, r.stderr
        row = {line.split("│")[3].strip(): line for line in r.stdout.splitlines() if line.count("│") > 5}  # by NAME
        assert "2/3 tasks" in row[rid], r.stdout
        assert "2/3 replicas succeeded, 1 active" in row["trainer"], r.stdout
        assert "1/2 Pods succeeded, 1 ready" in row["tj"], r.stdout
        assert "search" not in row  # the experiment has finished: shown with --all
        assert "\x1b[" not in r.stdout, repr(r.stdout[r.stdout.index("\x1b[") - 100:][:300])
        assert row[rid].split("│")[5].strip().startswith("2/3 tasks"), r.stdout  # the words alone, no bar
        r = cli(k, "status", "--all", "-n", ns)
        assert rid not in r.stdout and "2/2 trials" in r.stdout, r.stdout
        code, drawn = in_pty(k, "status")
        assert code == 0 and "2/3 tasks" in drawn and "2/3 replicas succeeded" in drawn, drawn
        line = next(x for x in drawn.splitlines() if rid in x)
        assert "━" in line, drawn  # a data row has no heavy rule of its own: this is the bar
        code, drawn = in_pty(k, "status", "--watch", "--interval", "0.3", until="2/3 tasks")
        assert code == 0 and "━" in next(x for x in drawn.splitlines() if rid in x), drawn  # Ctrl-C ends --watch quietly
        assert "Traceback" not in drawn
    finally:
        c.terminate_run(rid)
        k.kubectl("delete", "pytorchjob", "trainer", "-n", ns, check=False)
        k.kubectl("delete", "trainjob", "tj", "-n", ns, check=False)
