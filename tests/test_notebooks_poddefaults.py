"""PodDefaults (kubeflow.org/v1alpha1) applied at Pod admission by label selector, as Kubeflow's admission
webhook does, driven through kubectl."""

from __future__ import annotations

import sys
import textwrap

from conftest import wait_for

PODDEFAULT = textwrap.dedent("""
    apiVersion: kubeflow.org/v1alpha1
    kind: PodDefault
    metadata: {name: add-secret, namespace: default}
    spec:
      desc: Mount the team's data and say hello
      selector:
        matchLabels: {add-secret: "true"}
      env:
      - {name: GREETING, value: hello-from-poddefault}
      volumes:
      - name: team-data
        emptyDir: {}
      volumeMounts:
      - {name: team-data, mountPath: /data/team}
      labels: {team: data}
      annotations: {example.com/applied: "yes"}
      tolerations:
      - {key: gpu, operator: Exists, effect: NoSchedule}
    """)


def pod(name: str, labels: str, script: str) -> str:
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: default, labels: {labels}}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: python:3.11
            command: ["{sys.executable}", "-c", "{script}"]
        """)


def test_matching_pod_gets_env_and_volume_others_do_not(ketch):
    k = ketch
    k.kubectl("apply", "-f", "-", input=PODDEFAULT)
    assert k.kjson("get", "poddefaults", "add-secret")["spec"]["desc"].startswith("Mount")
    script = "import os; print(os.environ.get('GREETING')); open('/data/team/x','w').write('1'); print('wrote')"
    k.kubectl("apply", "-f", "-", input=pod("matched", '{add-secret: "true"}', script))
    k.kubectl("apply", "-f", "-", input=pod("other", "{app: x}", "import os; print(os.environ.get('GREETING'))"))

    got = k.kjson("get", "pod", "matched")
    c = got["spec"]["containers"][0]
    assert {"name": "GREETING", "value": "hello-from-poddefault"} in c["env"]
    assert {"name": "team-data", "mountPath": "/data/team"} in c["volumeMounts"]
    assert any(v["name"] == "team-data" and "emptyDir" in v for v in got["spec"]["volumes"])
    assert got["metadata"]["labels"]["team"] == "data"
    assert got["metadata"]["annotations"]["example.com/applied"] == "yes"
    assert "poddefault.admission.kubeflow.org/poddefault-add-secret" in got["metadata"]["annotations"]
    assert {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"} in got["spec"]["tolerations"]

    other = k.kjson("get", "pod", "other")
    assert not any(e["name"] == "GREETING" for e in other["spec"]["containers"][0].get("env") or [])
    assert "team" not in other["metadata"]["labels"]

    # The process really ran with them: the env var is set and the volume's path is writable.
    wait_for(lambda: k.kjson("get", "pod", "matched")["status"].get("phase") in ("Succeeded", "Failed"), timeout=60, what="pod done")
    assert k.kjson("get", "pod", "matched")["status"]["phase"] == "Succeeded"
    out = k.kubectl("logs", "matched").stdout
    assert "hello-from-poddefault" in out and "wrote" in out
    wait_for(lambda: k.kjson("get", "pod", "other")["status"].get("phase") == "Succeeded", timeout=60, what="other done")
    assert k.kubectl("logs", "other").stdout.strip() == "None"


def test_a_bad_poddefault_is_refused_naming_the_field(ketch):
    r = ketch.kubectl("apply", "-f", "-", input=PODDEFAULT.replace(
        "matchLabels: {add-secret: \"true\"}", "matchExpressions: [{key: a, operator: Maybe}]"), check=False)
    assert r.returncode != 0
    assert "operator" in r.stderr, r.stderr


def test_admission_follows_poddefault_changes_at_once(ketch):
    """Admission reads a cache kept by a watch: a PodDefault created, changed or deleted is what the very
    next Pod create sees (no wait between the two kubectl calls), in each of several rounds."""
    k = ketch
    for i in range(5):
        k.kubectl("apply", "-f", "-", input=PODDEFAULT.replace("hello-from-poddefault", f"round-{i}"))
        k.kubectl("apply", "-f", "-", input=pod(f"r{i}", '{add-secret: "true"}', "pass"))
        env = k.kjson("get", "pod", f"r{i}")["spec"]["containers"][0]["env"]
        assert {"name": "GREETING", "value": f"round-{i}"} in env, env
    k.kubectl("delete", "poddefault", "add-secret")
    k.kubectl("apply", "-f", "-", input=pod("after-delete", '{add-secret: "true"}', "pass"))
    got = k.kjson("get", "pod", "after-delete")
    assert not (got["spec"]["containers"][0].get("env") or []), got["spec"]["containers"][0]
    assert not any(a.startswith("poddefault.admission") for a in got["metadata"].get("annotations") or {})
