"""The Ray kubelet (KETCH_KUBELET=ray): the same Pods and controllers, each container started by a Ray
actor on a real (local) Ray cluster that ketch starts. Checked through kubectl and kfp.Client."""

import json
import sys
import textwrap
import warnings

import pytest
from kfp import dsl

from conftest import make_ketch, wait_for

ray = pytest.importorskip("ray")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kt = make_ketch(tmp_path_factory.mktemp("ray"), env={"KETCH_KUBELET": "ray", "KETCH_RAY_NUM_CPUS": "2"})
    kt.start(timeout=60)
    try:
        wait_for(lambda: kt.kjson("get", "nodes")["items"], timeout=60, what="the ray node")
        yield kt
    finally:
        kt.stop()


def pod(name: str, code: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 10
          containers:
          - name: main
            image: python:3.11
            command: {json.dumps([sys.executable, "-c", code])}
        """) + extra


def phase(k, name: str) -> str:
    return (k.kjson("get", "pod", name).get("status") or {}).get("phase", "")


def test_the_cluster_is_a_node_and_containers_run_in_ray_actors(k):
    node = k.kjson("get", "nodes")["items"][0]
    assert node["metadata"]["labels"]["ketch.dev/kubelet"] == "ray"
    assert node["status"]["capacity"]["cpu"] == "2"
    code = ("import os, sys, psutil; p = psutil.Process(os.getppid()); print('parent', ' '.join(p.cmdline()[1:]), 'of', p.parent().name());"
            " print('to stderr', file=sys.stderr); sys.exit(3)")
    k.kubectl("apply", "-f", "-", input=pod("on-ray", code))
    wait_for(lambda: phase(k, "on-ray") == "Failed", timeout=60, what="on-ray Failed")
    term = k.kjson("get", "pod", "on-ray")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    out = k.kubectl("logs", "on-ray").stdout
    # exec'd by the supervisor (the zygote of no modules) of the node's warm worker, a Ray actor
    assert "parent -m ketch.kubelet.zygote of ray::NodeWorker" in out and "to stderr" in out, out


def test_requests_beyond_the_cluster_wait_unschedulable(k):
    k.kubectl("apply", "-f", "-", input=pod("too-big", "print(1)", "    resources: {requests: {cpu: '3'}}\n"))
    def unschedulable():
        conds = (k.kjson("get", "pod", "too-big").get("status") or {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c["status"] == "False" and "Insufficient cpu" in c.get("message", "") for c in conds)
    wait_for(unschedulable, what="too-big unschedulable")
    k.kubectl("delete", "pod", "too-big")


def test_deleting_a_pod_terminates_its_remote_process_gracefully(k, tmp_path):
    marker = tmp_path / "terminated"
    code = (f"import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').write('term'), sys.exit(0)))\n"
            "print('up', flush=True)\ntime.sleep(300)")
    k.kubectl("apply", "-f", "-", input=pod("long", code))
    wait_for(lambda: "up" in k.kubectl("logs", "long", check=False).stdout, timeout=60, what="long running")
    k.kubectl("delete", "pod", "long", "--timeout=30s")
    assert marker.read_text() == "term"


@dsl.component
def double(x: int) -> int:
    return 2 * x


@dsl.pipeline
def doubled_twice(x: int = 5) -> int:
    return double(x=double(x=x).output).output


def test_a_pipeline_runs_unchanged_on_the_ray_kubelet(k):
    c = k.kfp_client()
    rid = c.create_run_from_pipeline_func(doubled_twice, arguments={"x": 5}, enable_caching=False).run_id
    wait_for(lambda: c.get_run(rid).state in ("SUCCEEDED", "FAILED"), timeout=120, what="run finished")
    r = k.http().get(f"/apis/v2beta1/runs/{rid}").json()
    assert r["state"] == "SUCCEEDED", r.get("error")
    assert r["pipeline_outputs"]["parameters"] == {"Output": 20}


def test_a_pod_asking_for_preloads_is_forked_by_its_nodes_warm_worker(k, tmp_path):
    # The module checks, before importing anything itself, whether the preloaded module is already there:
    # only a fork of the warm zygote (which imported it) has it; then who its parent is.
    (tmp_path / "warmcheck.py").write_text(textwrap.dedent("""
        import sys
        print('preloaded', 'fractions' in sys.modules, flush=True)
        import os, psutil
        p = psutil.Process(os.getppid())
        print('parent', ' '.join(p.cmdline()[1:]), 'of', p.parent().name(), flush=True)
        """))
    manifest = textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: warm
          annotations: {{kubelet.ketch.dev/preload: fractions}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python:3.11
            command: {json.dumps([sys.executable, "-m", "warmcheck"])}
            env: [{{name: PYTHONPATH, value: {json.dumps(str(tmp_path))}}}]
        """)
    k.kubectl("apply", "-f", "-", input=manifest)
    wait_for(lambda: phase(k, "warm") in ("Succeeded", "Failed"), timeout=60, what="warm done")
    out = k.kubectl("logs", "warm").stdout
    assert phase(k, "warm") == "Succeeded", out
    assert "preloaded True" in out, out
    assert "parent -m ketch.kubelet.zygote fractions of ray::NodeWorker" in out, out  # (Ray titles it by its method)
    # the same command without the annotation is exec'd cold, by the worker's supervisor
    k.kubectl("apply", "-f", "-", input=manifest.replace("name: warm", "name: cold").replace("annotations: {kubelet.ketch.dev/preload: fractions}", "labels: {}"))
    wait_for(lambda: phase(k, "cold") in ("Succeeded", "Failed"), timeout=60, what="cold done")
    out = k.kubectl("logs", "cold").stdout
    assert "preloaded False" in out and "parent -m ketch.kubelet.zygote of ray::NodeWorker" in out, out  # (Ray titles it by its method)
