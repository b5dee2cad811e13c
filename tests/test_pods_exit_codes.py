"""Exit codes survive ketch: containers keep running through a kill -9 of ``ketch up``, a supervisor
that outlives ketch records how each one ended, and the restarted kubelet adopts the living and reads
the true exit status of those that ended while it was down.

One scenario (module fixture) runs every case through the same kill -9, so ketch starts twice in all:
containers wait for a release file, the test releases some while ketch is down and the rest after it is
back, for both the exec'd path and the warm (forked) path.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import make_ketch, wait_for

WAITER = textwrap.dedent("""
    import os, signal, sys, time
    release, code = sys.argv[1], int(sys.argv[2])
    count = os.environ.get("COUNT_FILE")
    if count:
        with open(count, "a") as f:
            f.write("run\\n")
    def term(*_):
        open(release + ".terminated", "w").write("term")
        sys.exit(0)
    signal.signal(signal.SIGTERM, term)
    print("waiting for", release, flush=True)
    i = 0
    while not os.path.exists(release):
        time.sleep(0.05)
        i += 1
        if i % 4 == 0:
            print("tick", i, flush=True)
    print("released", flush=True)
    sys.exit(code)
""")

PRELOAD = "kubelet.ketch.dev/preload"


def container(work: Path, release: str, code: int, **extra) -> dict:
    return {"name": "main", "image": "python", "workingDir": str(work),
            "command": [sys.executable, "-m", "waiter", str(work / release), str(code)], **extra}


def pod(name: str, work: Path, release: str, code: int, warm: bool = False) -> dict:
    md: dict = {"name": name}
    if warm:
        md["annotations"] = {PRELOAD: "xml.dom.minidom"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 10, "containers": [container(work, release, code)]}}


def job(name: str, work: Path, release: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [container(work, release, 0)]}}}}


def pytorchjob(name: str, work: Path, release: str) -> dict:
    c = container(work, release, 0, env=[{"name": "COUNT_FILE", "value": str(work / f"{name}.count")}])
    c["name"] = "pytorch"
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": {"containers": [c]}}}}}}


def ketch_processes(k) -> list[psutil.Process]:
    """Processes that belong to this test's ketch: containers (KETCH_SERVER) and supervisors (KETCH_HOME)."""
    out = []
    for p in psutil.process_iter(["environ"]):
        try:
            env = p.info.get("environ") or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("KETCH_SERVER") == k.url or env.get("KETCH_HOME") == str(k.home):
            if p.pid != (k.proc.pid if k.proc and k.proc.poll() is None else -1):
                out.append(p)
    return out


def cstatus(k, name: str) -> dict:
    return k.kjson("get", "pod", name)["status"]["containerStatuses"][0]


def job_pod(k, label: str) -> str:
    items = k.kjson("get", "pods", "-l", label)["items"]
    assert len(items) == 1, [p["metadata"]["name"] for p in items]
    return items[0]["metadata"]["name"]


def condition(obj: dict, typ: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == typ and c["status"] == "True"), None)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exitcodes")
    work = tmp / "work"
    work.mkdir()
    (work / "waiter.py").write_text(WAITER)
    k = make_ketch(tmp, env={"KETCH_BACKOFF_BASE_SECONDS": "0.2"}).start()
    objs = [
        pod("down-3", work, "down", 3),                 # exec'd, ends with 3 while ketch is down
        pod("down-3-warm", work, "down", 3, warm=True),  # forked from the zygote, same
        pod("up-5", work, "up", 5),                     # adopted, ends with 5 after the restart
        pod("up-5-warm", work, "up", 5, warm=True),
        pod("serve-warm", work, "never", 0, warm=True),  # adopted, then deleted gracefully
        pod("unrecorded", work, "late", 0),              # started, but ketch "died" before recording it
        job("job-down", work, "down"),                  # batch Job: container succeeds while ketch is down
        job("job-up", work, "up"),                      # ... and after the restart, adopted
        pytorchjob("ptj", work, "down"),                # OnFailure: must not run a second time
    ]
    try:
        k.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))
        for n in ("down-3", "down-3-warm", "up-5", "up-5-warm", "serve-warm", "unrecorded"):
            k.kubectl("wait", "--for=condition=Ready", f"pod/{n}", "--timeout=60s")
        for sel in ("job-name=job-down", "job-name=job-up", "training.kubeflow.org/job-name=ptj"):
            k.kubectl("wait", "--for=condition=Ready", "pod", "-l", sel, "--timeout=60s")
        wait_for(lambda: (work / "ptj.count").exists(), what="the training started")
        pids = {n: int(cstatus(k, n)["containerID"].split("//")[1]) for n in ("down-3", "down-3-warm", "up-5", "up-5-warm", "serve-warm", "unrecorded")}
        uid = k.kjson("get", "pod", "unrecorded")["metadata"]["uid"]
        k.kill9()
        # as if ketch had been killed between starting the container and saving that it had: its record
        # says the container never ran
        state = k.home / "kubelet" / "pods" / uid / "state.json"
        data = json.loads(state.read_text())
        data["containers"]["main"] = {"name": "main"}
        state.write_text(json.dumps(data))
        assert all(psutil.pid_exists(p) for p in pids.values()), "kill -9 of ketch must not take its pods with it"
        (work / "down").touch()

        def gone(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(lambda: gone(pids["down-3"]) and gone(pids["down-3-warm"]), what="containers ended while ketch was down")
        time.sleep(0.3)
        restarted = time.time()
        k.start()
        wait_for(lambda: cstatus(k, "up-5")["state"].get("running") and cstatus(k, "up-5-warm")["state"].get("running"), what="adopted")
        yield k, work, pids, restarted
    finally:
        for f in ("up", "never", "late"):
            (work / f).touch()
        k.stop()
        for p in ketch_processes(k):
            p.kill()  # never leave a test's process behind, whatever failed


def test_exit_while_down_is_recorded_with_its_code(scenario):
    k, _, _, _ = scenario
    for name in ("down-3", "down-3-warm"):
        wait_for(lambda n=name: k.kjson("get", "pod", n)["status"]["phase"] == "Failed", what=f"{name} Failed")
        t = cstatus(k, name)["state"]["terminated"]
        assert t["exitCode"] == 3 and t["reason"] == "Error", (name, t)
        assert cstatus(k, name)["restartCount"] == 0


def test_adopted_container_reports_its_true_exit_code(scenario):
    k, work, pids, _ = scenario
    assert cstatus(k, "up-5")["containerID"] == f"ketch://{pids['up-5']}"
    before = k.kubectl("logs", "up-5").stdout.count("tick")
    wait_for(lambda: k.kubectl("logs", "up-5").stdout.count("tick") > before + 1, what="logs flow after adoption")
    (work / "up").touch()
    for name in ("up-5", "up-5-warm"):
        wait_for(lambda n=name: k.kjson("get", "pod", n)["status"]["phase"] == "Failed", what=f"{name} ended")
        t = cstatus(k, name)["state"]["terminated"]
        assert t["exitCode"] == 5 and t["reason"] == "Error", (name, t)
    assert "released" in k.kubectl("logs", "up-5-warm").stdout


def test_start_ketch_did_not_record_is_adopted_not_repeated(scenario):
    k, work, pids, _ = scenario
    wait_for(lambda: cstatus(k, "unrecorded")["state"].get("running"), what="unrecorded adopted")
    st = cstatus(k, "unrecorded")
    assert st["containerID"] == f"ketch://{pids['unrecorded']}" and st["restartCount"] == 0, st
    copies = [p for p in ketch_processes(k) if str(work / "late") in p.cmdline()]
    assert len(copies) == 1, [p.cmdline() for p in copies]
    (work / "late").touch()
    wait_for(lambda: k.kjson("get", "pod", "unrecorded")["status"]["phase"] == "Succeeded", what="unrecorded Succeeded")


def test_job_whose_container_ran_past_kill9_completes(scenario):
    k, work, _, _ = scenario
    (work / "up").touch()
    for name in ("job-down", "job-up"):
        wait_for(lambda n=name: condition(k.kjson("get", "job", n), "Complete") or condition(k.kjson("get", "job", n), "Failed"), what=f"{name} finished")
        j = k.kjson("get", "job", name)
        assert condition(j, "Complete"), (name, j["status"])
        assert j["status"].get("succeeded") == 1 and not j["status"].get("failed"), j["status"]


def test_pytorchjob_training_runs_once(scenario):
    k, work, _, _ = scenario

    def finished():
        j = k.kjson("get", "pytorchjob", "ptj")
        return condition(j, "Succeeded") or condition(j, "Failed")

    wait_for(finished, what="PyTorchJob finished")
    assert condition(k.kjson("get", "pytorchjob", "ptj"), "Succeeded")
    assert (work / "ptj.count").read_text().count("run") == 1, "the training ran again after the restart"
    p = job_pod(k, "training.kubeflow.org/job-name=ptj")
    assert cstatus(k, p)["restartCount"] == 0


def test_adopted_warm_container_is_deleted_gracefully_and_nothing_is_left(scenario):
    k, work, pids, restarted = scenario
    k.kubectl("delete", "pod", "serve-warm", "--timeout=30s")
    assert (work / "never.terminated").read_text() == "term", "the adopted container got SIGTERM and ran its handler"
    (work / "up").touch()
    wait_for(lambda: k.kjson("get", "pod", "up-5")["status"]["phase"] == "Failed", what="up-5 ended")

    def older() -> list[str]:
        out = []
        for p in ketch_processes(k):
            try:
                if p.create_time() < restarted:
                    out.append(" ".join(p.cmdline()))
            except psutil.NoSuchProcess:
                pass
        return out

    # every container of the first ketch has ended, so their supervisors have nothing left to watch
    wait_for(lambda: not older(), what="no process of the first ketch left")
    k.stop()
    wait_for(lambda: not ketch_processes(k), timeout=15, what="no process left after ketch stopped")
