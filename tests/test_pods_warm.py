"""Warm starts: a Pod annotated ``kubelet.ketch.dev/preload`` whose container runs ``python -m module`` is
forked from an interpreter that already imported the listed modules, and must be indistinguishable from
an exec'd process: argv, cwd, env, session, stdin, logs, exit status, signals, termination."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import wait_for

PROBE = textwrap.dedent("""
    import json, os, signal, sys, time
    preloaded = "xml.dom.minidom" in sys.modules
    mode = sys.argv[1]
    if mode == "report":
        print(json.dumps({
            "preloaded": preloaded, "argv": sys.argv[1:], "cwd": os.getcwd(), "path0": sys.path[0],
            "env": os.environ.get("GREETING"), "leader": os.getsid(0) == os.getpid(), "stdin": sys.stdin.read(),
            "name": __name__, "extra_path": os.environ.get("EXTRA_DIR", "") in sys.path,
        }), flush=True)
        print("to stderr", file=sys.stderr)
        sys.exit(int(sys.argv[2]))
    if mode == "raise":
        raise ValueError("boom from the component")
    if mode == "serve":
        signal.signal(signal.SIGTERM, lambda *_: (open("terminated", "w").write("term"), sys.exit(0)))
        print("serving", flush=True)
        while True:
            time.sleep(0.1)
    if mode == "atexit":
        import atexit
        atexit.register(lambda: print("atexit ran", flush=True))
        sys.stdout.write("buffered without newline")
""")


def pod(name: str, workdir: Path, args: list[str], preload: str | None = "xml.dom.minidom", restart: str = "Never") -> str:
    ann = f"annotations: {{kubelet.ketch.dev/preload: {json.dumps(preload)}}}" if preload else ""
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          {ann}
        spec:
          restartPolicy: {restart}
          terminationGracePeriodSeconds: 10
          containers:
          - name: main
            image: python:3.11
            workingDir: {workdir}
            command: {json.dumps([sys.executable, "-m", "warmprobe", *args])}
            env:
            - {{name: GREETING, value: hello}}
            - {{name: EXTRA_DIR, value: {json.dumps(str(workdir / "extra"))}}}
            - {{name: PYTHONPATH, value: {json.dumps(str(workdir / "extra"))}}}
        """)


@pytest.fixture(scope="module")
def k(shared_ketch):
    return shared_ketch


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("warm")
    (d / "warmprobe.py").write_text(PROBE)
    (d / "extra").mkdir()
    return d


def finished(k, name: str) -> dict:
    def done():
        p = k.kjson("get", "pod", name)
        return p if p.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    return wait_for(done, what=f"{name} finished")


def report(k, name: str) -> dict:
    return json.loads(k.kubectl("logs", name).stdout.splitlines()[0])


def test_forked_process_is_what_exec_would_give(k, workdir):
    k.kubectl("apply", "-f", "-", input=pod("warm-report", workdir, ["report", "3"]))
    k.kubectl("apply", "-f", "-", input=pod("cold-report", workdir, ["report", "3"], preload=None))
    for name in ("warm-report", "cold-report"):
        p = finished(k, name)
        term = p["status"]["containerStatuses"][0]["state"]["terminated"]
        assert p["status"]["phase"] == "Failed" and term["exitCode"] == 3 and term["reason"] == "Error"
    warm, cold = report(k, "warm-report"), report(k, "cold-report")
    # the warm one was forked from the interpreter that imported the preload list; the cold one was not
    assert warm.pop("preloaded") is True and cold.pop("preloaded") is False
    assert warm == cold
    assert warm["argv"] == ["report", "3"] and warm["cwd"] == str(workdir) and warm["path0"] == str(workdir)
    assert warm["env"] == "hello" and warm["leader"] and warm["stdin"] == "" and warm["name"] == "__main__" and warm["extra_path"]
    assert "to stderr" in k.kubectl("logs", "warm-report").stdout


def test_uncaught_exception_and_atexit(k, workdir):
    k.kubectl("apply", "-f", "-", input=pod("warm-raise", workdir, ["raise"]))
    k.kubectl("apply", "-f", "-", input=pod("warm-atexit", workdir, ["atexit"]))
    p = finished(k, "warm-raise")
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert "ValueError: boom from the component" in k.kubectl("logs", "warm-raise").stdout
    p = finished(k, "warm-atexit")
    assert p["status"]["phase"] == "Succeeded"
    out = k.kubectl("logs", "warm-atexit").stdout
    assert "buffered without newline" in out and "atexit ran" in out


def test_graceful_termination_of_a_forked_process(k, workdir):
    k.kubectl("apply", "-f", "-", input=pod("warm-serve", workdir, ["serve"]))
    wait_for(lambda: "serving" in k.kubectl("logs", "warm-serve", check=False).stdout, what="warm-serve serving")
    assert report_preloaded(k, workdir)
    pid = int(k.kjson("get", "pod", "warm-serve")["status"]["containerStatuses"][0]["containerID"].split("//")[1])
    k.kubectl("delete", "pod", "warm-serve", "--wait=true", timeout=60)
    # its SIGTERM handler ran (well inside the 10 s grace, so no SIGKILL was needed), and it is gone
    assert (workdir / "terminated").read_text() == "term"
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def report_preloaded(k, workdir) -> bool:
    k.kubectl("apply", "-f", "-", input=pod("warm-check", workdir, ["report", "0"]))
    finished(k, "warm-check")
    return report(k, "warm-check")["preloaded"]


def test_a_preload_that_cannot_import_falls_back_to_exec(k, workdir):
    k.kubectl("apply", "-f", "-", input=pod("warm-missing", workdir, ["report", "0"], preload="no_such_module_anywhere"))
    p = finished(k, "warm-missing")
    assert p["status"]["phase"] == "Succeeded"
    assert report(k, "warm-missing")["preloaded"] is False
