"""The Pod features Kubeflow's operators lean on: restarts, probes, env, volumes, admission, limits."""

from __future__ import annotations

import base64
import json
import socket
import textwrap
import time

import pytest

from conftest import make_ketch, wait_for


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    env = {"KETCH_BACKOFF_BASE_SECONDS": "0.2", "KETCH_NODE_CPU": "2", "KETCH_NODE_MEMORY": "8Gi", "KETCH_NODE_GPUS": "2"}
    kk = make_ketch(tmp_path_factory.mktemp("podfeatures"), env=env).start()
    try:
        yield kk
    finally:
        kk.stop()


def apply(k, doc: str) -> None:
    k.kubectl("apply", "-f", "-", input=textwrap.dedent(doc))


def pod(k, name: str) -> dict:
    return k.kjson("get", "pod", name)


def phase(k, name: str) -> str:
    return pod(k, name).get("status", {}).get("phase", "")


def test_onfailure_restarts_with_backoff(k, tmp_path):
    counter = tmp_path / "count"
    apply(k, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: flaky}}
        spec:
          restartPolicy: OnFailure
          containers:
          - name: main
            image: python
            command: [python, -c, "import pathlib,sys; p=pathlib.Path({str(counter)!r}); n=int(p.read_text()) if p.exists() else 0; p.write_text(str(n+1)); print('attempt', n); sys.exit(0 if n>=3 else 1)"]
        """)
    wait_for(lambda: phase(k, "flaky") == "Succeeded", timeout=60, what="flaky Succeeded")
    cs = pod(k, "flaky")["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 3
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert k.kubectl("logs", "flaky").stdout == "attempt 3\n"
    assert k.kubectl("logs", "flaky", "--previous").stdout == "attempt 2\n"
    # back-off doubles: 0.2s, 0.4s, 0.8s between the four starts
    from ketch.kinds.meta import parse_time  # noqa: F401 - timestamps are second precision; use the log files
    runs = sorted((k.home / "logs" / "default" / "flaky" / "main").glob("*.log"))
    assert [p.stem for p in runs] == ["0", "1", "2", "3"]
    t = [p.stat().st_mtime for p in runs]
    gaps = [b - a for a, b in zip(t, t[1:], strict=False)]
    assert gaps[2] > gaps[0] and gaps[2] >= 0.7, gaps


def test_always_crashloop_shows_backoff(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: crashy}
        spec:
          containers:
          - {name: main, image: python, command: [sh, -c, "exit 2"]}
        """)
    wait_for(lambda: (pod(k, "crashy")["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 2, what="restarts")
    st = pod(k, "crashy")["status"]
    assert st["phase"] == "Running"
    assert st["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 2
    k.kubectl("delete", "pod", "crashy", "--timeout=20s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readiness_probe_gates_ready(k, tmp_path):
    port = _free_port()
    flag = tmp_path / "serve-now"
    apply(k, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: probed}}
        spec:
          containers:
          - name: web
            image: python
            command: [python, -c, "import pathlib,time,http.server; f=pathlib.Path({str(flag)!r}); [time.sleep(0.05) for _ in iter(lambda: f.exists(), True)]; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port={port}, bind='127.0.0.1')"]
            readinessProbe:
              httpGet: {{path: /, port: {port}}}
              periodSeconds: 1
            livenessProbe:
              tcpSocket: {{port: {port}}}
              initialDelaySeconds: 30
        """)
    wait_for(lambda: phase(k, "probed") == "Running", what="probed Running")
    time.sleep(1.5)
    p = pod(k, "probed")
    assert p["status"]["containerStatuses"][0]["ready"] is False
    assert any(c["type"] == "Ready" and c["status"] == "False" for c in p["status"]["conditions"])
    flag.write_text("go")
    k.kubectl("wait", "--for=condition=Ready", "pod/probed", "--timeout=30s")
    assert pod(k, "probed")["status"]["containerStatuses"][0]["ready"] is True
    k.kubectl("delete", "pod", "probed", "--timeout=20s")


def test_liveness_probe_restarts(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: unlive}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: python
            command: [sleep, "300"]
            livenessProbe:
              exec: {command: [sh, -c, "exit 1"]}
              periodSeconds: 1
              failureThreshold: 1
        """)
    wait_for(lambda: (pod(k, "unlive")["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1, timeout=30, what="liveness restart")
    k.kubectl("delete", "pod", "unlive", "--timeout=20s")


def test_env_from_configmap_secret_fieldref(k):
    secret = base64.b64encode(b"s3cr3t").decode()
    apply(k, f"""
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: cfg}}
        data: {{color: blue, size: large}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: sec}}
        data: {{token: {secret}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: envy, labels: {{app: envy}}}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [python, -c, "import os,json; print(json.dumps({{k: os.environ.get(k) for k in ['COLOR','TOKEN','POD','NS','APP','IP','GREETING','CFG_size','MEM']}}))"]
            args: []
            env:
            - {{name: COLOR, valueFrom: {{configMapKeyRef: {{name: cfg, key: color}}}}}}
            - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: sec, key: token}}}}}}
            - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
            - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
            - {{name: APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
            - {{name: IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
            - {{name: GREETING, value: "hello $(POD) in $(NS), $$(POD) stays"}}
            - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
            envFrom:
            - {{prefix: CFG_, configMapRef: {{name: cfg}}}}
            resources: {{limits: {{memory: 256Mi}}}}
        """)
    wait_for(lambda: phase(k, "envy") == "Succeeded", what="envy Succeeded")
    got = json.loads(k.kubectl("logs", "envy").stdout)
    assert got == {
        "COLOR": "blue", "TOKEN": "s3cr3t", "POD": "envy", "NS": "default", "APP": "envy", "IP": "127.0.0.1",
        "GREETING": "hello envy in default, $(POD) stays", "CFG_size": "large", "MEM": "256",
    }


def test_missing_configmap_waits_then_runs(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: waiter}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [sh, -c, "echo $V"]
            env:
            - {name: V, valueFrom: {configMapKeyRef: {name: late, key: v}}}
        """)
    wait_for(lambda: ((pod(k, "waiter")["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerConfigError", what="config error")
    apply(k, """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: late}
        data: {v: arrived}
        """)
    wait_for(lambda: phase(k, "waiter") == "Succeeded", what="waiter Succeeded")
    assert k.kubectl("logs", "waiter").stdout == "arrived\n"


def test_volumes_shared_between_init_and_main(k):
    apply(k, """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: files}
        data: {settings.ini: "answer=42"}
        ---
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: claim}
        spec:
          resources: {requests: {storage: 1Gi}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: vols, labels: {tier: x}}
        spec:
          restartPolicy: Never
          initContainers:
          - name: prepare
            image: python
            command: [sh, -c, "echo from-init > /work/greeting && echo persisted > /data/keep"]
            volumeMounts:
            - {name: work, mountPath: /work}
            - {name: store, mountPath: /data}
          containers:
          - name: main
            image: python
            command: [sh, -c, "cat /work/greeting /config/settings.ini /data/keep /meta/labels; echo; echo $KETCH_VOLUME_WORK"]
            volumeMounts:
            - {name: work, mountPath: /work}
            - {name: cfg, mountPath: /config}
            - {name: store, mountPath: /data}
            - {name: meta, mountPath: /meta}
          volumes:
          - {name: work, emptyDir: {}}
          - {name: cfg, configMap: {name: files}}
          - {name: store, persistentVolumeClaim: {claimName: claim}}
          - name: meta
            downwardAPI:
              items:
              - {path: labels, fieldRef: {fieldPath: metadata.labels}}
        """)
    wait_for(lambda: phase(k, "vols") == "Succeeded", what="vols Succeeded")
    lines = k.kubectl("logs", "vols").stdout.splitlines()
    assert lines[:4] == ["from-init", "answer=42persisted", 'tier="x"', ""] or lines[:3] == ["from-init", "answer=42persisted", 'tier="x"'], lines
    assert lines[-1].endswith("/volumes/work")
    pvc = k.kjson("get", "pvc", "claim")
    assert pvc["status"]["phase"] == "Bound"
    assert (k.home / "volumes" / "default" / "claim" / "keep").read_text() == "persisted\n"
    init = pod(k, "vols")["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0


def test_pod_that_does_not_fit_stays_pending_then_runs(k, tmp_path):
    go = tmp_path / "go"
    apply(k, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: big}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [python, -c, "import pathlib,time; [time.sleep(0.05) for _ in iter(lambda: pathlib.Path({str(go)!r}).exists(), True)]"]
            resources: {{requests: {{cpu: 1500m}}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: second}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [echo, ran]
            resources: {{requests: {{cpu: "1"}}}}
        """)
    wait_for(lambda: phase(k, "big") == "Running", what="big Running")

    def unschedulable():
        conds = pod(k, "second")["status"].get("conditions") or []
        return any(c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable" for c in conds)

    wait_for(unschedulable, what="second Unschedulable")
    p = pod(k, "second")
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
    assert "Insufficient cpu" in next(c["message"] for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    go.write_text("go")
    wait_for(lambda: phase(k, "second") == "Succeeded", what="second Succeeded")
    assert k.kubectl("logs", "second").stdout == "ran\n"


def test_node_selector_mismatch_stays_pending(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: elsewhere}
        spec:
          nodeSelector: {accelerator: tpu}
          containers:
          - {name: main, image: python, command: [echo, never]}
        """)
    wait_for(lambda: any(c.get("reason") == "Unschedulable" for c in pod(k, "elsewhere")["status"].get("conditions") or []), what="unschedulable")
    assert phase(k, "elsewhere") == "Pending"
    k.kubectl("delete", "pod", "elsewhere", "--timeout=10s")


def test_memory_limit_oomkilled(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: hog}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [python, -c, "import time; x=[]; [x.append(bytearray(10*2**20)) or time.sleep(0.02) for _ in range(200)]; time.sleep(30)"]
            resources: {limits: {memory: 100Mi}}
        """)
    wait_for(lambda: phase(k, "hog") == "Failed", timeout=40, what="hog Failed")
    t = pod(k, "hog")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "OOMKilled" and t["exitCode"] == 137


def test_active_deadline(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: slow}
        spec:
          activeDeadlineSeconds: 1
          terminationGracePeriodSeconds: 1
          containers:
          - {name: main, image: python, command: [sleep, "300"]}
        """)
    wait_for(lambda: phase(k, "slow") == "Failed", timeout=20, what="slow Failed")
    assert pod(k, "slow")["status"]["reason"] == "DeadlineExceeded"


def test_sidecars_and_grace(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: pair}
        spec:
          terminationGracePeriodSeconds: 5
          containers:
          - {name: a, image: python, command: [sh, -c, "trap 'echo got term; exit 0' TERM; echo a up; while true; do sleep 0.1; done"]}
          - {name: b, image: python, command: [sh, -c, "echo b up; sleep 300"]}
        """)
    k.kubectl("wait", "--for=condition=Ready", "pod/pair", "--timeout=30s")
    wait_for(lambda: k.kubectl("logs", "pair", "-c", "a").stdout == "a up\n", what="a logs")
    assert k.kubectl("logs", "pair", "-c", "b").stdout == "b up\n"
    r = k.kubectl("logs", "pair", check=False)
    assert r.returncode == 0 or "container" in r.stderr
    k.kubectl("delete", "pod", "pair", "--timeout=30s")


def test_gpu_requests_get_devices(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: gpu1}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [sh, -c, "echo devices=$CUDA_VISIBLE_DEVICES"]
            resources: {limits: {nvidia.com/gpu: 1}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: gpu3}
        spec:
          containers:
          - name: main
            image: python
            command: [echo]
            resources: {limits: {nvidia.com/gpu: 3}}
        """)
    wait_for(lambda: phase(k, "gpu1") == "Succeeded", what="gpu1 Succeeded")
    assert k.kubectl("logs", "gpu1").stdout == "devices=0\n"
    wait_for(lambda: any(c.get("reason") == "Unschedulable" for c in pod(k, "gpu3")["status"].get("conditions") or []), what="gpu3 Unschedulable")
    assert "Insufficient nvidia.com/gpu" in k.kubectl("describe", "pod", "gpu3").stdout
    k.kubectl("delete", "pod", "gpu3", "--timeout=10s")


def test_log_options(k):
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: chatty}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python
            command: [python, -c, "import time; [print('early', i) for i in range(3)]; time.sleep(2.5); print('late'); print('no newline', end='')"]
        """)
    wait_for(lambda: phase(k, "chatty") == "Succeeded", what="chatty Succeeded")
    assert k.kubectl("logs", "chatty").stdout == "early 0\nearly 1\nearly 2\nlate\nno newline"
    assert k.kubectl("logs", "chatty", "--tail=2").stdout == "late\nno newline"
    assert k.kubectl("logs", "chatty", "--since=1h").stdout.startswith("early 0\n")
    assert k.kubectl("logs", "chatty", "--limit-bytes=10").stdout == "early 0\nea"
    stamped = k.kubectl("logs", "chatty", "--timestamps").stdout.splitlines()
    assert stamped[3].endswith(" late")
    late = stamped[3].split(" ")[0]
    # kubectl sends sinceTime with second precision; the early lines were logged 2.5s before "late"
    assert k.kubectl("logs", "chatty", f"--since-time={late[:19]}Z").stdout == "late\nno newline"
    r = k.kubectl("logs", "chatty", "--previous", check=False)
    assert r.returncode != 0 and "previous terminated container" in r.stderr


def test_image_map_picks_interpreter(k):
    import shutil
    import sys
    from pathlib import Path

    other = shutil.which("python3", path="/usr/bin") or sys.executable
    (k.home / "images.yaml").write_text(f'images:\n  - match: "custom/*"\n    python: {other}\n    env: {{IMAGE_VAR: hi}}\n    command: [python, -c]\n')
    apply(k, """
        apiVersion: v1
        kind: Pod
        metadata: {name: mapped}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: custom/trainer:1
            args: ["import os,sys; print(os.path.realpath(sys.executable), os.environ['IMAGE_VAR'])"]
        """)
    wait_for(lambda: phase(k, "mapped") == "Succeeded", what="mapped Succeeded")
    exe, var = k.kubectl("logs", "mapped").stdout.split()
    assert Path(exe) == Path(other).resolve() and var == "hi"
    (k.home / "images.yaml").unlink()


def test_job_runs_on_the_kubelet(k):
    apply(k, """
        apiVersion: batch/v1
        kind: Job
        metadata: {name: indexed}
        spec:
          completions: 3
          parallelism: 3
          completionMode: Indexed
          template:
            spec:
              restartPolicy: Never
              containers:
              - {name: main, image: python, command: [sh, -c, "echo index=$JOB_COMPLETION_INDEX"]}
        """)
    k.kubectl("wait", "--for=condition=Complete", "job/indexed", "--timeout=60s")
    outs = sorted(k.kubectl("logs", p["metadata"]["name"]).stdout for p in k.kjson("get", "pods", "-l", "job-name=indexed")["items"])
    assert outs == ["index=0\n", "index=1\n", "index=2\n"]


def test_termination_grace_term_then_kill(k, tmp_path):
    marker = tmp_path / "termed"
    apply(k, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: polite}}
        spec:
          terminationGracePeriodSeconds: 30
          containers:
          - {{name: main, image: python, command: [sh, -c, "trap 'echo term > {marker}; exit 0' TERM; while true; do sleep 0.1; done"]}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: stubborn}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - {{name: main, image: python, command: [python, -c, "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"]}}
        """)
    k.kubectl("wait", "--for=condition=Ready", "pod/polite", "pod/stubborn", "--timeout=30s")
    time.sleep(0.3)  # let the shell install its trap
    k.kubectl("delete", "pod", "polite", "--timeout=30s")
    assert marker.read_text() == "term\n"
    cs = pod(k, "stubborn")["status"]["containerStatuses"][0]
    pid = int(cs["containerID"].split("//")[1])
    t0 = time.time()
    k.kubectl("delete", "pod", "stubborn", "--timeout=30s")
    assert time.time() - t0 >= 0.9  # SIGTERM was ignored: it took the grace period, then SIGKILL
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_startup_probe_gates_liveness_and_ready(k, tmp_path):
    flag = tmp_path / "started"
    apply(k, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: slowstart}}
        spec:
          containers:
          - name: main
            image: python
            command: [sleep, "300"]
            startupProbe:
              exec: {{command: [test, -f, {flag}]}}
              periodSeconds: 1
              failureThreshold: 100
            livenessProbe:
              exec: {{command: [test, -f, {flag}]}}
              periodSeconds: 1
              failureThreshold: 1
        """)
    wait_for(lambda: phase(k, "slowstart") == "Running", what="slowstart Running")
    time.sleep(2)
    cs = pod(k, "slowstart")["status"]["containerStatuses"][0]
    assert cs["started"] is False and cs["ready"] is False and cs["restartCount"] == 0
    flag.write_text("ok")
    k.kubectl("wait", "--for=condition=Ready", "pod/slowstart", "--timeout=30s")
    cs = pod(k, "slowstart")["status"]["containerStatuses"][0]
    assert cs["started"] is True and cs["restartCount"] == 0
    k.kubectl("delete", "pod", "slowstart", "--timeout=20s")


def test_python_client_and_in_pod_kubeconfig(k):
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(k.kubeconfig)))
    body = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python", "command": [
            "python", "-c",
            "from kubernetes import client, config; config.load_config(); "
            "print(client.CoreV1Api().read_namespaced_pod('incluster', 'default').metadata.name)",
        ]}]},
    }
    api.create_namespaced_pod("default", body)
    wait_for(lambda: api.read_namespaced_pod("incluster", "default").status.phase in ("Succeeded", "Failed"), what="incluster done")
    assert api.read_namespaced_pod("incluster", "default").status.phase == "Succeeded"
    assert api.read_namespaced_pod_log("incluster", "default") == "incluster\n"


def test_in_pod_tls_trust_is_built_once_per_kubeconfig(tmp_path, monkeypatch):
    """``incluster.ssl_context_for`` (every in-pod call to ketch asks it) reads the Pod's kubeconfig and
    builds the SSLContext once, not per request; a rewritten kubeconfig is read again, and a URL on another
    server gets the default trust (None)."""
    from ketch.kinds import incluster
    from ketch.server.tls import self_signed

    cert, _key = self_signed(tmp_path, "127.0.0.1")
    kc = tmp_path / "kubeconfig"

    def write(server: str) -> None:
        kc.write_text(json.dumps({
            "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            "clusters": [{"name": "k", "cluster": {"server": server, "certificate-authority": str(cert)}}],
            "users": [{"name": "u", "user": {"token": "t"}}]}))

    write("https://127.0.0.1:6443")
    monkeypatch.setenv("KUBECONFIG", str(kc))
    first = incluster.ssl_context_for("https://127.0.0.1:6443/api")
    assert first is not None and incluster.ssl_context_for("https://127.0.0.1:6443/version") is first
    assert incluster.ssl_context_for("https://127.0.0.1:9999/") is None
    time.sleep(0.01)
    write("https://127.0.0.1:7443")
    assert incluster.ssl_context_for("https://127.0.0.1:6443/api") is None
    assert incluster.ssl_context_for("https://127.0.0.1:7443/api") not in (None, first)
