"""`ketch logs`, `ketch status`, and one short error when the server cannot be reached — the CLI finding
server and token from the kubeconfig alone."""


import os
import subprocess
import sys

from kfp import dsl

from conftest import SRC, free_port


@dsl.component
def shout(word: str) -> str:
    print(f"shouting {word.upper()}")
    return word.upper()


@dsl.pipeline
def loud(word: str = "hey") -> str:
    return shout(word=word).set_caching_options(False).output


def cli(k, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {kk: v for kk, v in os.environ.items() if not kk.startswith("KETCH_")}
    env.update(KUBECONFIG=str(k.kubeconfig), PYTHONPATH=str(SRC), HOME=str(k.home / "nohome"))
    return subprocess.run([sys.executable, "-m", "ketch", *args], env=env, capture_output=True, text=True, timeout=timeout)


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
    assert rid not in r.stdout  # finished runs only with --all
    r = cli(k, "status", "--all", "-n", "kubeflow")
    assert rid in r.stdout and "SUCCEEDED" in r.stdout, r.stdout
    k.kubectl("delete", "job", "sleeper", "-n", "busy")


def test_unreachable_server_is_one_line(shared_ketch):
    r = cli(shared_ketch, "get", "pods", "--server", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "cannot reach ketch" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli(shared_ketch, "logs", "x", "--server", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot reach ketch" in r.stderr, r.stderr
