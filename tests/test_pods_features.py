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
    env = {"KETCH_BACKOFF_BASE_SECONDS": "0.2", "KETCH_NODE_CPU": "2", "KETCH_NODE_MEMORY": "8Gi", "KETCH_NODE_GPUS": "0"}
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
