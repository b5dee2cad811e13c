"""apps/v1 Deployments through the real kubectl: create, rollout status, scale, set image, rollout undo,
restart, pause/resume, and the maxSurge/maxUnavailable bounds of a rolling update, watched as they happen."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import wait_for


def _ns(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def _rs(k, ns: str, deploy: str) -> list[dict]:
    items = k.kjson("get", "rs", "-n", ns)["items"]
    return [r for r in items if any(o["name"] == deploy for o in r["metadata"].get("ownerReferences") or [])]


def _live_pods(k, ns: str, selector: str) -> list[dict]:
    items = k.kjson("get", "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def test_create_deployment_rolls_out_and_reports_status(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "dep-create")
    k.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=3", "-n", ns, "--", "sleep", "3600")
    out = k.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s").stdout
    assert 'deployment "web" successfully rolled out' in out
    k.kubectl("wait", "--for=condition=Available", "deployment/web", "-n", ns, "--timeout=30s")
    d = k.kjson("get", "deployment", "web", "-n", ns)
    st = d["status"]
    assert st["observedGeneration"] == d["metadata"]["generation"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True" and conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    # defaults as Kubernetes sets them
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10 and d["spec"]["progressDeadlineSeconds"] == 600
    (rs,) = _rs(k, ns, "web")
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["status"]["readyReplicas"] == 3
    pods = _live_pods(k, ns, "app=web")
    assert len(pods) == 3 and all(p["metadata"]["name"].startswith(f"web-{h}-") for p in pods)
    assert all(p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"] for p in pods)
    table = k.kubectl("get", "deployment", "web", "-n", ns).stdout
    assert "3/3" in table.splitlines()[1] and "UP-TO-DATE" in table
    # a deleted Pod is replaced by its ReplicaSet
    k.kubectl("delete", "pod", pods[0]["metadata"]["name"], "-n", ns, "--wait=false")
    wait_for(lambda: len([p for p in _live_pods(k, ns, "app=web") if p["status"].get("phase") == "Running"]) == 3, 30, 0.3, "replacement pod")
    # deleting the Deployment takes its ReplicaSets and Pods with it
    k.kubectl("delete", "deployment", "web", "-n", ns)
    wait_for(lambda: not _rs(k, ns, "web") and not k.kjson("get", "pods", "-n", ns)["items"], 60, 0.3, "cascade")


def test_scale_through_the_scale_subresource(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "dep-scale")
    k.kubectl("create", "deployment", "api", "--image=busybox", "--replicas=2", "-n", ns, "--", "sleep", "3600")
    k.kubectl("rollout", "status", "deployment/api", "-n", ns, "--timeout=60s")
    k.kubectl("scale", "deployment/api", "--replicas=4", "-n", ns)
    k.kubectl("rollout", "status", "deployment/api", "-n", ns, "--timeout=60s")
    wait_for(lambda: len(_live_pods(k, ns, "app=api")) == 4, 30, 0.3, "4 pods")
    with k.http() as c:
        r = c.get(f"/apis/apps/v1/namespaces/{ns}/deployments/api/scale")
        assert r.status_code == 200, r.text
        sc = r.json()
        assert sc["kind"] == "Scale" and sc["apiVersion"] == "autoscaling/v1"
        assert sc["spec"]["replicas"] == 4 and sc["status"]["replicas"] == 4
        assert sc["status"]["selector"] == "app=api"
        # a stale resourceVersion on a Scale write is a conflict, as for any write
        sc["metadata"]["resourceVersion"] = "1"
        sc["spec"]["replicas"] = 1
        assert c.put(f"/apis/apps/v1/namespaces/{ns}/deployments/api/scale", json=sc).status_code == 409
        bad = c.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/api/scale", json={"spec": {"replicas": -1}},
                      headers={"Content-Type": "application/merge-patch+json"})
        assert bad.status_code == 422 and "spec.replicas" in bad.json()["message"]
        assert c.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/none/scale").status_code == 404
    k.kubectl("scale", "deployment/api", "--replicas=1", "-n", ns)
    wait_for(lambda: len(_live_pods(k, ns, "app=api")) == 1, 30, 0.3, "scaled down to 1")
    assert k.kjson("get", "deployment", "api", "-n", ns)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    # a ReplicaSet scaled behind its Deployment's back is set back to what the Deployment wants
    (rs,) = _rs(k, ns, "api")
    k.kubectl("scale", f"rs/{rs['metadata']['name']}", "--replicas=3", "-n", ns)
    wait_for(lambda: k.kjson("get", "rs", rs["metadata"]["name"], "-n", ns)["spec"]["replicas"] == 1, 20, 0.2, "rs scaled back")


def test_set_image_rollout_status_undo_and_history(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "dep-undo")
    k.kubectl("create", "deployment", "app", "--image=busybox:1", "--replicas=2", "-n", ns, "--", "sleep", "3600")
    k.kubectl("rollout", "status", "deployment/app", "-n", ns, "--timeout=60s")
    k.kubectl("annotate", "deployment/app", "kubernetes.io/change-cause=image 2", "-n", ns)
    k.kubectl("set", "image", "deployment/app", "busybox=busybox:2", "-n", ns)
    out = k.kubectl("rollout", "status", "deployment/app", "-n", ns, "--timeout=60s").stdout
    assert "successfully rolled out" in out
    rss = sorted(_rs(k, ns, "app"), key=lambda r: int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    assert [r["spec"]["template"]["spec"]["containers"][0]["image"] for r in rss] == ["busybox:1", "busybox:2"]
    assert [r["spec"]["replicas"] for r in rss] == [0, 2]
    pods = _live_pods(k, ns, "app=app")
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in _live_pods(k, ns, "app=app")} == {"busybox:2"}, 30, 0.3, "new pods only")
    hist = k.kubectl("rollout", "history", "deployment/app", "-n", ns).stdout
    assert "image 2" in hist and "1 " in hist and "2 " in hist
    k.kubectl("rollout", "undo", "deployment/app", "-n", ns)
    k.kubectl("rollout", "status", "deployment/app", "-n", ns, "--timeout=60s")
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in _live_pods(k, ns, "app=app")} == {"busybox:1"}, 30, 0.3, "rolled back pods")
    d = k.kjson("get", "deployment", "app", "-n", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    first = next(r for r in _rs(k, ns, "app") if r["metadata"]["uid"] == rss[0]["metadata"]["uid"])
    assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"  # the old ReplicaSet revived
    assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert len(_rs(k, ns, "app")) == 2
    assert pods  # the image-2 pods existed before the undo


def test_rollout_restart_and_pause(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "dep-restart")
    k.kubectl("create", "deployment", "svc", "--image=busybox", "--replicas=2", "-n", ns, "--", "sleep", "3600")
    k.kubectl("rollout", "status", "deployment/svc", "-n", ns, "--timeout=60s")
    before = {p["metadata"]["name"] for p in _live_pods(k, ns, "app=svc")}
    k.kubectl("rollout", "restart", "deployment/svc", "-n", ns)
    k.kubectl("rollout", "status", "deployment/svc", "-n", ns, "--timeout=60s")
    wait_for(lambda: len(_live_pods(k, ns, "app=svc")) == 2 and not ({p["metadata"]["name"] for p in _live_pods(k, ns, "app=svc")} & before), 30, 0.3, "restarted pods")
    assert len(_rs(k, ns, "svc")) == 2
    # paused: a template change makes no new ReplicaSet until resumed
    k.kubectl("rollout", "pause", "deployment/svc", "-n", ns)
    k.kubectl("set", "image", "deployment/svc", "busybox=busybox:9", "-n", ns)
    d = wait_for(lambda: (x := k.kjson("get", "deployment", "svc", "-n", ns))["status"].get("observedGeneration") == x["metadata"]["generation"] and x, 20, 0.2, "paused observed")
    prog = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("Unknown", "DeploymentPaused")
    assert len(_rs(k, ns, "svc")) == 2
    k.kubectl("rollout", "resume", "deployment/svc", "-n", ns)
    k.kubectl("rollout", "status", "deployment/svc", "-n", ns, "--timeout=60s")
    assert len(_rs(k, ns, "svc")) == 3
    assert {p["spec"]["containers"][0]["image"] for p in _live_pods(k, ns, "app=svc")} == {"busybox:9"}


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (0, 1)])
def test_rolling_update_stays_within_surge_and_unavailable(shared_ketch, surge, unavailable):
    """Every ReplicaSet scale step of the rollout, watched in order: the Pods asked for never exceed
    replicas + maxSurge, and (readiness delayed by a probe) never fewer than replicas - maxUnavailable are
    kept by the old and available new ones."""
    k = shared_ketch
    ns = _ns(k, f"dep-roll-{surge}{unavailable}")
    replicas = 4
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "r", "namespace": ns},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": "r"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [{
                "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                "readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 1, "periodSeconds": 1,
                                   "timeoutSeconds": 10, "failureThreshold": 30},  # no flapping on a loaded machine
            }]}},
        },
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(dep))
    k.kubectl("rollout", "status", "deployment/r", "-n", ns, "--timeout=60s")
    steps: list[dict[str, int]] = []
    stop = threading.Event()
    listed = k.kjson("get", "rs", "-n", ns)
    rv = listed["metadata"]["resourceVersion"]
    start = {r["metadata"]["name"]: r["spec"]["replicas"] for r in listed["items"]}  # what the watch starts from

    def watch() -> None:
        try:
            _watch()
        except Exception:  # noqa: BLE001 - the stream ends when the test stops; steps so far are what counts
            return

    def _watch() -> None:
        seen: dict[str, int] = dict(start)
        with k.http(timeout=90) as c, c.stream("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets", params={"watch": "1", "resourceVersion": rv}) as r:
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if not line:
                    continue
                ev = json.loads(line)
                o = ev["object"]
                seen[o["metadata"]["name"]] = o["spec"]["replicas"] if ev["type"] != "DELETED" else 0
                steps.append(dict(seen))

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    k.kubectl("set", "image", "deployment/r", "c=busybox:2", "-n", ns)
    k.kubectl("rollout", "status", "deployment/r", "-n", ns, "--timeout=90s")
    stop.set()
    wait_for(lambda: steps and any(v == replicas for s in steps for n, v in s.items()), 10, 0.2, "watch events")
    assert max(sum(s.values()) for s in steps) <= replicas + surge, steps
    # the old ReplicaSet never drops below what maxUnavailable allows while the new one is not ready yet
    assert min(sum(s.values()) for s in steps) >= replicas - unavailable, steps
    rss = _rs(k, ns, "r")
    assert sorted(r["spec"]["replicas"] for r in rss) == [0, replicas]


def test_eviction_honours_pod_disruption_budget(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "dep-pdb")
    k.kubectl("create", "deployment", "guarded", "--image=busybox", "--replicas=2", "-n", ns, "--", "sleep", "3600")
    k.kubectl("rollout", "status", "deployment/guarded", "-n", ns, "--timeout=60s")
    k.kubectl("create", "pdb", "guard", "--selector=app=guarded", "--min-available=1", "-n", ns)
    st = wait_for(lambda: (s := k.kjson("get", "pdb", "guard", "-n", ns).get("status") or {}).get("disruptionsAllowed") == 1 and s, 20, 0.2, "pdb status")
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"]) == (2, 2, 1)
    assert "1" in k.kubectl("get", "pdb", "guard", "-n", ns).stdout.splitlines()[1]
    p1, p2 = (p["metadata"]["name"] for p in _live_pods(k, ns, "app=guarded"))
    with k.http() as c:
        def evict(name: str):
            return c.post(f"/api/v1/namespaces/{ns}/pods/{name}/eviction",
                          json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}})
        r = evict(p1)
        assert r.status_code == 201, r.text
        r = evict(p2)  # the budget has no disruption left until the replacement is Ready
        assert r.status_code == 429, r.text
        assert r.json()["details"]["causes"][0]["reason"] == "DisruptionBudget"
        assert "disruption budget" in r.json()["message"]
        wait_for(lambda: (k.kjson("get", "pdb", "guard", "-n", ns)["status"]).get("disruptionsAllowed") == 1, 30, 0.2, "budget restored")
        assert evict(p2).status_code == 201
        # discovery tells kubectl drain that evictions are policy/v1
        res = c.get("/api/v1").json()["resources"]
        ev = next(x for x in res if x["name"] == "pods/eviction")
        assert (ev["group"], ev["version"], ev["kind"], ev["verbs"]) == ("policy", "v1", "Eviction", ["create"])
