"""``kubectl drain``: the node is cordoned (no new Pods scheduled), Pods are evicted through pods/eviction
and a PodDisruptionBudget holds back what would break it; ``kubectl uncordon`` lets the held Pods run."""

from __future__ import annotations

from conftest import wait_for


def test_drain_respects_the_budget_and_uncordon_reschedules(ketch):
    k = ketch
    k.kubectl("create", "deployment", "w", "--image=busybox", "--replicas=2", "--", "sleep", "3600")
    k.kubectl("rollout", "status", "deployment/w", "--timeout=60s")
    k.kubectl("create", "pdb", "w", "--selector=app=w", "--min-available=1")
    wait_for(lambda: (k.kjson("get", "pdb", "w").get("status") or {}).get("disruptionsAllowed") == 1, 20, 0.2, "pdb status")
    node = k.kjson("get", "nodes")["items"][0]["metadata"]["name"]
    r = k.kubectl("drain", node, "--ignore-daemonsets", "--timeout=6s", check=False, timeout=60)
    # one Pod goes; its replacement cannot be scheduled on the cordoned node, so the budget keeps the other
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget" in r.stderr
    assert k.kjson("get", "node", node)["spec"]["unschedulable"] is True
    pods = [p for p in k.kjson("get", "pods", "-l", "app=w")["items"] if not p["metadata"].get("deletionTimestamp")]
    phases = sorted(p["status"]["phase"] for p in pods)
    assert phases == ["Pending", "Running"], phases
    held = next(p for p in pods if p["status"]["phase"] == "Pending")
    cond = next(c for c in held["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable" and "were unschedulable" in cond["message"]
    k.kubectl("uncordon", node)
    k.kubectl("rollout", "status", "deployment/w", "--timeout=60s")
    wait_for(lambda: k.kjson("get", "deployment", "w")["status"].get("availableReplicas") == 2, 30, 0.2, "2 available again")


def test_a_budget_with_an_empty_selector_covers_every_pod_of_its_namespace(ketch):
    """policy/v1: ``selector: {}`` selects every Pod in the budget's namespace (no selector selects none)."""
    k = ketch
    k.kubectl("create", "namespace", "pdb-all")
    k.kubectl("create", "deployment", "e", "-n", "pdb-all", "--image=busybox", "--replicas=2", "--", "sleep", "3600")
    k.kubectl("rollout", "status", "deployment/e", "-n", "pdb-all", "--timeout=60s")
    k.kubectl("apply", "-f", "-", input='{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "all", "namespace": "pdb-all"},'
              ' "spec": {"minAvailable": 1, "selector": {}}}')
    st = wait_for(lambda: (s := k.kjson("get", "pdb", "all", "-n", "pdb-all").get("status") or {}).get("expectedPods") == 2 and s,
                  20, 0.2, "the budget counts both Pods")
    assert st["currentHealthy"] == 2 and st["disruptionsAllowed"] == 1, st
    k.kubectl("delete", "namespace", "pdb-all", "--wait=false")
