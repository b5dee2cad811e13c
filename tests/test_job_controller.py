"""The Job and Endpoints controllers against a real ketch server with no kubelet: the test plays the
kubelet, driving Pod status through the status subresource as a kubelet would, and checks what the
controllers do about it through kubectl and HTTP."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from conftest import make_ketch, wait_for


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory):
    kk = make_ketch(tmp_path_factory.mktemp("jobs"), env={"KETCH_DISABLE": "kubelet", "KETCH_JOB_BACKOFF_SECONDS": "0"}).start()
    try:
        yield kk
    finally:
        kk.stop()


def _ns(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def job_yaml(name: str, **spec) -> str:
    import json

    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python", "command": ["python", "-c", "pass"]}]}},
            **spec,
        },
    }
    return json.dumps(body)


def pods(k, ns: str, job: str, phase: str | None = None, alive: bool = True) -> list[dict]:
    items = k.kjson("get", "pods", "-n", ns, "-l", f"job-name={job}")["items"]
    if alive:
        items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    if phase is not None:
        items = [p for p in items if (p.get("status") or {}).get("phase", "Pending") == phase]
    return items


def set_phase(k, pod: dict, phase: str, exit_code: int | None = None, ready: bool = False) -> None:
    """What a kubelet writes: phase, Ready condition, container state with exit code."""
    ts = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    c = pod["spec"]["containers"][0]["name"]
    if exit_code is None:
        state = {"running": {"startedAt": ts}}
    else:
        state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "startedAt": ts, "finishedAt": ts}}
    status = {
        "phase": phase,
        "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": c, "ready": ready, "restartCount": 0, "state": state, "image": "python", "imageID": ""}],
    }
    md = pod["metadata"]
    with k.http() as h:
        r = h.patch(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/status", json={"status": status},
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text


def job(k, ns: str, name: str) -> dict:
    return k.kjson("get", "job", name, "-n", ns)


def cond(j: dict, t: str) -> dict | None:
    for c in (j.get("status") or {}).get("conditions") or []:
        if c["type"] == t:
            return c
    return None


def test_job_runs_pods_to_completion_and_kubectl_wait(k):
    ns = _ns(k, "j1")
    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("pi", completions=3, parallelism=2))
    ps = wait_for(lambda: len(pods(k, ns, "pi")) == 2 and pods(k, ns, "pi"), what="2 pods")
    p0 = ps[0]
    ref = p0["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Job" and ref["controller"] is True and ref["blockOwnerDeletion"] is True
    labels = p0["metadata"]["labels"]
    uid = job(k, ns, "pi")["metadata"]["uid"]
    assert labels["batch.kubernetes.io/job-name"] == "pi" and labels["controller-uid"] == uid
    assert p0["metadata"]["name"].startswith("pi-")
    # kubectl wait runs while the test plays kubelet
    waiter = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(k.kubeconfig), "wait", "-n", ns, "--for=condition=Complete", "job/pi", "--timeout=60s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for p in ps:
        set_phase(k, p, "Running", ready=True)
    wait_for(lambda: job(k, ns, "pi")["status"].get("ready") == 2, what="ready=2")
    assert job(k, ns, "pi")["status"]["active"] == 2
    set_phase(k, ps[0], "Succeeded", 0)
    third = wait_for(lambda: [p for p in pods(k, ns, "pi") if p["metadata"]["name"] not in {x["metadata"]["name"] for x in ps}], what="third pod")
    assert len(pods(k, ns, "pi")) == 3  # one succeeded + two active; never more than parallelism running
    set_phase(k, ps[1], "Succeeded", 0)
    set_phase(k, third[0], "Succeeded", 0)
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, out
    assert "condition met" in out
    j = job(k, ns, "pi")
    assert j["status"]["succeeded"] == 3 and j["status"].get("active", 0) == 0
    assert cond(j, "SuccessCriteriaMet")["status"] == "True" and cond(j, "Complete")["status"] == "True"
    assert j["status"]["completionTime"] and j["status"]["startTime"]
    assert "Complete" in k.kubectl("get", "job", "pi", "-n", ns).stdout
    events = k.kubectl("get", "events", "-n", ns).stdout
    assert "SuccessfulCreate" in events and "Completed" in events


def test_indexed_job_indexes_env_and_names(k):
    ns = _ns(k, "j2")
    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("ix", completions=3, parallelism=3, completionMode="Indexed"))
    ps = wait_for(lambda: len(pods(k, ns, "ix")) == 3 and pods(k, ns, "ix"), what="3 pods")
    by_index = {}
    for p in ps:
        idx = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["name"].startswith(f"ix-{idx}-")
        assert p["spec"]["hostname"] == f"ix-{idx}"
        env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
        assert env["JOB_COMPLETION_INDEX"] == idx
        by_index[int(idx)] = p
    assert sorted(by_index) == [0, 1, 2]
    set_phase(k, by_index[1], "Failed", 1)  # index 1 fails once: retried under the same index
    retry = wait_for(lambda: [p for p in pods(k, ns, "ix", phase="Pending") if p["metadata"]["name"].startswith("ix-1-")], what="retry of index 1")
    set_phase(k, by_index[0], "Succeeded", 0)
    set_phase(k, by_index[2], "Succeeded", 0)
    wait_for(lambda: job(k, ns, "ix")["status"].get("completedIndexes") == "0,2", what="completedIndexes 0,2")
    set_phase(k, retry[0], "Succeeded", 0)
    j = wait_for(lambda: cond(job(k, ns, "ix"), "Complete") and job(k, ns, "ix"), what="complete")
    assert j["status"]["completedIndexes"] == "0-2" and j["status"]["succeeded"] == 3 and j["status"]["failed"] == 1


def test_backoff_limit_exceeded(k):
    ns = _ns(k, "j3")
    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("bad", backoffLimit=1))
    for n in range(2):
        p = wait_for(lambda: pods(k, ns, "bad", phase="Pending"), what=f"pod {n}")[0]
        set_phase(k, p, "Failed", 3)
    j = wait_for(lambda: cond(job(k, ns, "bad"), "Failed") and job(k, ns, "bad"), what="failed")
    assert cond(j, "Failed")["reason"] == "BackoffLimitExceeded"
    assert cond(j, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 2 and "completionTime" not in j["status"]
    assert len(pods(k, ns, "bad")) == 2  # no third attempt
    r = k.kubectl("wait", "-n", ns, "--for=condition=Failed", "job/bad", "--timeout=10s")
    assert "condition met" in r.stdout
    assert "BackoffLimitExceeded" in k.kubectl("get", "events", "-n", ns).stdout


def test_pod_failure_policy_ignore_and_failjob(k):
    ns = _ns(k, "j4")
    policy = {"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [7]}},
    ]}
    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("pfp", backoffLimit=0, podFailurePolicy=policy))
    p = wait_for(lambda: pods(k, ns, "pfp", phase="Pending"), what="pod")[0]
    set_phase(k, p, "Failed", 42)  # ignored: not counted against backoffLimit=0, replaced
    p2 = wait_for(lambda: [x for x in pods(k, ns, "pfp", phase="Pending") if x["metadata"]["name"] != p["metadata"]["name"]], what="replacement")[0]
    assert (job(k, ns, "pfp")["status"].get("failed") or 0) == 0
    set_phase(k, p2, "Failed", 7)
    j = wait_for(lambda: cond(job(k, ns, "pfp"), "Failed") and job(k, ns, "pfp"), what="failed")
    assert cond(j, "Failed")["reason"] == "PodFailurePolicy"


def test_active_deadline_and_suspend_resume(k):
    ns = _ns(k, "j5")
    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("dl", activeDeadlineSeconds=1))
    j = wait_for(lambda: cond(job(k, ns, "dl"), "Failed") and job(k, ns, "dl"), what="deadline")
    assert cond(j, "Failed")["reason"] == "DeadlineExceeded"
    # A pod was started (however briefly: the deadline is 1 s, so the test cannot count on seeing it) ...
    reasons = k.kubectl("get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "SuccessfulCreate" in reasons
    assert pods(k, ns, "dl") == []  # ... and was deleted when the deadline passed

    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("sus", parallelism=2, completions=2))
    wait_for(lambda: len(pods(k, ns, "sus")) == 2, what="2 pods")
    k.kubectl("patch", "job", "sus", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    j = wait_for(lambda: cond(job(k, ns, "sus"), "Suspended") and job(k, ns, "sus"), what="suspended")
    assert cond(j, "Suspended")["status"] == "True"
    wait_for(lambda: pods(k, ns, "sus") == [], what="pods gone")
    assert "startTime" not in job(k, ns, "sus")["status"]
    k.kubectl("patch", "job", "sus", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: len(pods(k, ns, "sus")) == 2, what="pods back")
    j = wait_for(lambda: cond(job(k, ns, "sus"), "Suspended")["status"] == "False" and job(k, ns, "sus"), what="resumed")
    assert cond(j, "Suspended")["reason"] == "JobResumed" and j["status"]["startTime"]


def test_ttl_after_finished_deletes_job_and_pods(k):
    ns = _ns(k, "j6")
    k.kubectl("apply", "-n", ns, "-f", "-", input=job_yaml("ttl", ttlSecondsAfterFinished=1))
    p = wait_for(lambda: pods(k, ns, "ttl"), what="pod")[0]
    set_phase(k, p, "Succeeded", 0)
    wait_for(lambda: k.kubectl("get", "job", "ttl", "-n", ns, check=False).returncode != 0, what="job deleted by ttl")
    wait_for(lambda: pods(k, ns, "ttl", alive=False) == [], what="pods collected")


def test_job_controller_survives_restart_half_done(tmp_path):
    kk = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet", "KETCH_JOB_BACKOFF_SECONDS": "0"}).start()
    try:
        kk.kubectl("apply", "-f", "-", input=job_yaml("r", completions=2, parallelism=1))
        p = wait_for(lambda: pods(kk, "default", "r"), what="pod")[0]
        set_phase(kk, p, "Succeeded", 0)
        kk.kill9()
        kk.start()
        p2 = wait_for(lambda: [x for x in pods(kk, "default", "r") if x["metadata"]["name"] != p["metadata"]["name"]], what="second pod after restart")
        assert len(pods(kk, "default", "r")) == 2
        set_phase(kk, p2[0], "Succeeded", 0)
        wait_for(lambda: cond(job(kk, "default", "r"), "Complete"), what="complete")
    finally:
        kk.stop()


def test_invalid_job_refused(k):
    r = k.kubectl("apply", "-n", "default", "-f", "-", input=job_yaml("ixbad", completionMode="Indexed", parallelism=2), check=False)
    assert r.returncode != 0 and "spec.completions" in r.stderr


# -- Services and Endpoints ------------------------------------------------------------------------------

SVC = """
apiVersion: v1
kind: Service
metadata: {name: master}
spec:
  selector: {app: trainer}
  ports: [{name: dist, port: 23456, targetPort: dist}, {name: http, port: 80, targetPort: 8080}]
"""


def _pod(name: str, labels: dict, port: int) -> str:
    import json

    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"hostname": name, "subdomain": "master", "containers": [
            {"name": "main", "image": "python", "command": ["sleep", "1"], "ports": [{"name": "dist", "containerPort": port}]}]},
    })


def test_service_endpoints_follow_ready_pods(k):
    ns = _ns(k, "s1")
    k.kubectl("apply", "-n", ns, "-f", "-", input=SVC)
    svc = k.kjson("get", "svc", "master", "-n", ns)
    assert svc["spec"]["clusterIP"] == "127.0.0.1"
    ep = wait_for(lambda: k.kubectl("get", "endpoints", "master", "-n", ns, "-o", "json", check=False).returncode == 0 and k.kjson("get", "endpoints", "master", "-n", ns), what="endpoints")
    assert not ep.get("subsets")
    k.kubectl("apply", "-n", ns, "-f", "-", input=_pod("trainer-0", {"app": "trainer"}, 23456))
    k.kubectl("apply", "-n", ns, "-f", "-", input=_pod("other", {"app": "web"}, 23457))
    p = k.kjson("get", "pod", "trainer-0", "-n", ns)
    set_phase(k, p, "Running", ready=False)
    ep = wait_for(lambda: (k.kjson("get", "ep", "master", "-n", ns).get("subsets") or [None])[0], what="not-ready address")
    assert ep["notReadyAddresses"][0]["targetRef"]["name"] == "trainer-0" and "addresses" not in ep
    set_phase(k, p, "Running", ready=True)
    sub = wait_for(lambda: ((k.kjson("get", "ep", "master", "-n", ns).get("subsets") or [{}])[0]).get("addresses") and k.kjson("get", "ep", "master", "-n", ns)["subsets"][0], what="ready address")
    a = sub["addresses"][0]
    assert a["ip"] == "127.0.0.1" and a["hostname"] == "trainer-0" and a["targetRef"]["name"] == "trainer-0"
    assert sorted((x["name"], x["port"]) for x in sub["ports"]) == [("dist", 23456), ("http", 8080)]
    assert "127.0.0.1:" in k.kubectl("get", "ep", "master", "-n", ns).stdout
    slices = k.kjson("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=master")["items"]
    assert len(slices) == 1 and slices[0]["addressType"] == "IPv4"
    ep0 = slices[0]["endpoints"][0]
    assert ep0["addresses"] == ["127.0.0.1"] and ep0["conditions"]["ready"] is True and ep0["targetRef"]["name"] == "trainer-0"
    assert sorted(p["port"] for p in slices[0]["ports"]) == [8080, 23456]
    assert "127.0.0.1" in k.kubectl("get", "endpointslices", "-n", ns).stdout
    # the pure helper other components use on what they read through the API
    from ketch.kinds.endpoints import endpoint_addresses, endpoint_pods

    ep = k.kjson("get", "ep", "master", "-n", ns)
    assert endpoint_addresses(ep, "dist") == [("127.0.0.1", 23456)]
    assert endpoint_pods(ep) == ["trainer-0"]
    k.kubectl("delete", "pod", "trainer-0", "-n", ns)
    wait_for(lambda: not k.kjson("get", "ep", "master", "-n", ns).get("subsets"), what="endpoints emptied")
    k.kubectl("delete", "svc", "master", "-n", ns)
    wait_for(lambda: k.kubectl("get", "ep", "master", "-n", ns, check=False).returncode != 0, what="endpoints deleted")


def test_endpoints_restored_if_deleted(k):
    ns = _ns(k, "s2")
    k.kubectl("apply", "-n", ns, "-f", "-", input=SVC)
    wait_for(lambda: k.kubectl("get", "ep", "master", "-n", ns, check=False).returncode == 0, what="endpoints")
    k.kubectl("delete", "ep", "master", "-n", ns)
    wait_for(lambda: k.kubectl("get", "ep", "master", "-n", ns, check=False).returncode == 0, what="endpoints recreated")

