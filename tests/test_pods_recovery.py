"""No orphans: kill -9 of ketch with pods running, a clean recovery, and a clean stop."""

from __future__ import annotations

import os
import signal
import textwrap

import psutil

from conftest import make_ketch, wait_for


def _pid(k, name: str) -> int:
    cs = k.kjson("get", "pod", name)["status"]["containerStatuses"][0]
    return int(cs["containerID"].split("//")[1])


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


PODS = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: survivor}
    spec:
      containers:
      - name: main
        image: python
        command: [python, -u, -c, "import time,itertools; [print('tick', i, flush=True) or time.sleep(0.2) for i in itertools.count()]"]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: doomed}
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: python, command: [sleep, "300"]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: phoenix}
    spec:
      restartPolicy: Always
      containers:
      - {name: main, image: python, command: [sleep, "300"]}
    """)


def test_kill9_then_recover_adopts_and_reports(tmp_path):
    k = make_ketch(tmp_path, env={"KETCH_BACKOFF_BASE_SECONDS": "0.2"}).start()
    try:
        k.kubectl("apply", "-f", "-", input=PODS)
        for n in ("survivor", "doomed", "phoenix"):
            k.kubectl("wait", "--for=condition=Ready", f"pod/{n}", "--timeout=30s")
        pids = {n: _pid(k, n) for n in ("survivor", "doomed", "phoenix")}
        k.kill9()
        assert not any(_gone(p) for p in pids.values()), "kill -9 of ketch must not take its pods with it"
        os.kill(pids["doomed"], signal.SIGKILL)
        os.kill(pids["phoenix"], signal.SIGKILL)
        wait_for(lambda: _gone(pids["doomed"]) and _gone(pids["phoenix"]), what="processes killed")
        k.start()
        # adopted: same process, no restart, logs keep flowing
        wait_for(lambda: k.kjson("get", "pod", "survivor")["status"]["phase"] == "Running", what="survivor")
        assert _pid(k, "survivor") == pids["survivor"]
        assert k.kjson("get", "pod", "survivor")["status"]["containerStatuses"][0]["restartCount"] == 0
        before = k.kubectl("logs", "survivor").stdout.count("tick")
        wait_for(lambda: k.kubectl("logs", "survivor").stdout.count("tick") > before + 2, what="logs after adoption")
        # killed while ketch was down, restartPolicy Never: Failed, with the status its supervisor recorded
        wait_for(lambda: k.kjson("get", "pod", "doomed")["status"]["phase"] == "Failed", what="doomed Failed")
        t = k.kjson("get", "pod", "doomed")["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (t["exitCode"], t.get("signal"), t["reason"]) == (137, 9, "Error"), t
        # died while ketch was down, restartPolicy Always: restarted
        wait_for(lambda: k.kjson("get", "pod", "phoenix")["status"]["containerStatuses"][0]["restartCount"] == 1, what="phoenix restarted")
        k.kubectl("wait", "--for=condition=Ready", "pod/phoenix", "--timeout=30s")
        new_phoenix = _pid(k, "phoenix")
        assert new_phoenix != pids["phoenix"]
        k.kubectl("delete", "pod", "survivor", "--timeout=30s")
        wait_for(lambda: _gone(pids["survivor"]), timeout=10, what="survivor ended on delete")
        # stopping ketch ends the pods' processes (default policy)
        k.stop()
        wait_for(lambda: _gone(new_phoenix), timeout=10, what="phoenix ended with ketch")
    finally:
        k.stop()
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                if (p.info.get("environ") or {}).get("KETCH_SERVER") == k.url:
                    p.kill()  # never leave a test's pod behind, whatever failed above
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


def test_disabled_kubelet_runs_nothing(tmp_path):
    k = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet"}).start()
    try:
        assert k.kjson("get", "nodes")["items"] == []
        k.kubectl("run", "idle", "--image=python", "--restart=Never", "--", "echo", "hi")
        import time

        time.sleep(1)
        p = k.kjson("get", "pod", "idle")
        assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
        r = k.kubectl("logs", "idle", check=False)
        assert r.returncode != 0
    finally:
        k.stop()


def test_leave_running_on_exit_then_adopt(tmp_path):
    k = make_ketch(tmp_path, env={"KETCH_KUBELET_ON_EXIT": "leave"}).start()
    pid = None
    try:
        k.kubectl("run", "keeper", "--image=python", "--", "sleep", "300")
        k.kubectl("wait", "--for=condition=Ready", "pod/keeper", "--timeout=30s")
        pid = _pid(k, "keeper")
        k.stop()
        assert not _gone(pid), "KETCH_KUBELET_ON_EXIT=leave keeps pods running while ketch is stopped"
        k.start()
        wait_for(lambda: k.kjson("get", "pod", "keeper")["status"]["phase"] == "Running", what="keeper")
        assert _pid(k, "keeper") == pid
        assert k.kjson("get", "pod", "keeper")["status"]["containerStatuses"][0]["restartCount"] == 0
        k.kubectl("delete", "pod", "keeper", "--timeout=30s")
        wait_for(lambda: _gone(pid), timeout=10, what="keeper ended on delete")
    finally:
        k.stop()
        if pid is not None and not _gone(pid):
            os.kill(pid, signal.SIGKILL)
