"""kubelet/scheduling.py on plain Pod and Node dicts: each filter refuses what kube-scheduler refuses, with its
message, and scoring spreads Pods; plus the Ray node -> Node translation (kubelet/ray_nodes.py)."""

from ketch.kubelet import ray_nodes
from ketch.kubelet.scheduling import schedule


def node(name: str, cpu: str = "2", labels: dict | None = None, taints: list | None = None, unschedulable: bool = False, **extra) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {**({"taints": taints} if taints else {}), **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110", **extra}}}


def pod(name: str = "p", labels: dict | None = None, cpu: str | None = None, ns: str = "default", **spec) -> dict:
    c = {"name": "main", "image": "x"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": {"containers": [c], **spec}}


NODES = [node("a", labels={"zone": "z1", "disk": "ssd"}), node("b", labels={"zone": "z1"}), node("c", labels={"zone": "z2", "gen": "3"})]


def anti(key: str = "kubernetes.io/hostname", **match) -> dict:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": match}, "topologyKey": key}]}}


def test_node_selector_picks_the_labelled_node_or_says_why_none_fits():
    assert schedule(pod(nodeSelector={"disk": "ssd"}), NODES, []).node == "a"
    d = schedule(pod(nodeSelector={"disk": "nvme"}), NODES, [])
    assert d.node is None
    assert d.message == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def test_required_node_affinity_operators():
    def req(*exprs):
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}}}

    def where(*exprs):
        nodes = {n["metadata"]["name"] for n in NODES}
        ok = set()
        for n in nodes:  # a node is feasible when scheduling with only it left picks it
            if schedule(pod(affinity=req(*exprs)), [x for x in NODES if x["metadata"]["name"] == n], []).node:
                ok.add(n)
        return ok

    assert where({"key": "zone", "operator": "In", "values": ["z1"]}) == {"a", "b"}
    assert where({"key": "zone", "operator": "NotIn", "values": ["z1"]}) == {"c"}
    assert where({"key": "disk", "operator": "Exists"}) == {"a"}
    assert where({"key": "disk", "operator": "DoesNotExist"}) == {"b", "c"}
    assert where({"key": "gen", "operator": "Gt", "values": ["2"]}) == {"c"}
    assert where({"key": "zone", "operator": "In", "values": ["z1"]}, {"key": "disk", "operator": "DoesNotExist"}) == {"b"}
    # terms are ORed; matchFields name the node
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]},
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]}}}
    assert schedule(pod(affinity=aff), NODES, []).node == "c"


def test_resources_fit_counts_what_placed_pods_hold():
    placed = [(pod("x", cpu="1500m"), "a"), (pod("y", cpu="2"), "b")]
    d = schedule(pod(cpu="1"), NODES, placed)
    assert d.node == "c"
    d = schedule(pod(cpu="3"), NODES, placed)
    assert d.message == "0/3 nodes are available: 3 Insufficient cpu."
    big = pod(cpu="1")
    big["spec"]["containers"][0]["resources"]["requests"]["ray.io/zone-a"] = "1"
    nodes = [node("a"), node("b", **{"ray.io/zone-a": "1"})]
    assert schedule(big, nodes, []).node == "b"  # an extended resource only one node has
    assert schedule(big, nodes, [(big, "b")]).message == "0/2 nodes are available: 2 Insufficient ray.io/zone-a."


def test_reasons_are_counted_and_sorted_as_kube_scheduler_says_them():
    nodes = [node("a", cpu="1"), node("b", labels={"disk": "ssd"}, cpu="1"), node("c", unschedulable=True)]
    d = schedule(pod(cpu="2", nodeSelector={"disk": "ssd"}), nodes, [])
    assert d.message == ("0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, "
                         "1 node(s) were unschedulable.")
    assert schedule(pod(nodeName="zz"), NODES, []).node is None  # bound elsewhere: no node here matches


def test_untolerated_taints_keep_pods_off_a_lost_node_unless_tolerated():
    lost = node("a", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
    d = schedule(pod(), [lost], [])
    assert d.message == "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
    tol = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    assert schedule(pod(tolerations=tol), [lost], []).node == "a"
    assert schedule(pod(tolerations=[{"operator": "Exists"}]), [lost], []).node == "a"
    soft = node("b", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    assert schedule(pod(), [soft], []).node == "b"


def test_pod_anti_affinity_on_hostname_puts_each_replica_on_its_own_node():
    placed: list = []
    for i in range(3):
        p = pod(f"r{i}", labels={"app": "train"}, affinity=anti(app="train"))
        d = schedule(p, NODES, placed)
        assert d.node is not None
        placed.append((p, d.node))
    assert sorted(n for _, n in placed) == ["a", "b", "c"]
    d = schedule(pod("r3", labels={"app": "train"}, affinity=anti(app="train")), NODES, placed)
    assert d.message == "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    # and an existing pod's anti-affinity keeps a matching newcomer away from its node
    d = schedule(pod("other", labels={"app": "train"}), NODES, placed)
    assert d.message == "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    # a zone as the topology: one replica per zone
    z = [(pod("z0", labels={"app": "t"}, affinity=anti("zone", app="t")), "a")]
    assert schedule(pod("z1", labels={"app": "t"}, affinity=anti("zone", app="t")), NODES, z).node == "c"


def test_anti_affinity_looks_in_the_pods_namespace_only_by_default():
    placed = [(pod("x", labels={"app": "w"}, ns="other"), "a"), (pod("y", labels={"app": "w"}, ns="other"), "b")]
    d = schedule(pod(labels={"app": "w"}, affinity=anti(app="w")), NODES[:2], placed)
    assert d.node == "a"


def test_pod_affinity_follows_the_pods_it_wants_and_lets_the_first_one_go_anywhere():
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    assert schedule(pod(affinity=aff), NODES, [(pod("cache", labels={"app": "cache"}), "b")]).node == "b"
    d = schedule(pod(affinity=aff), NODES, [])
    assert d.message == "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    first = pod("c0", labels={"app": "cache"}, affinity=aff)
    assert schedule(first, NODES, []).node is not None
    zone = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}]}}
    d = schedule(pod(affinity=zone), NODES, [(pod("cache", labels={"app": "cache"}), "b")])
    assert d.node in ("a", "b")


def test_topology_spread_do_not_schedule_respects_max_skew():
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]
    placed = [(pod("s0", labels={"app": "s"}), "a")]
    d = schedule(pod("s1", labels={"app": "s"}, topologySpreadConstraints=spread), NODES, placed)
    assert d.node == "c" and d.reasons == {"a": ["node(s) didn't match pod topology spread constraints"],
                                           "b": ["node(s) didn't match pod topology spread constraints"]}
    placed.append((pod("s1", labels={"app": "s"}), "c"))
    assert schedule(pod("s2", labels={"app": "s"}, topologySpreadConstraints=spread), NODES, placed).node in ("a", "b")
    missing = [{"maxSkew": 1, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]
    d = schedule(pod(topologySpreadConstraints=missing), NODES, [])
    assert d.message == "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label)."


def test_scoring_spreads_pods_without_requests_and_follows_preferences():
    placed: list = []
    for i in range(3):
        p = pod(f"n{i}")
        placed.append((p, schedule(p, NODES, placed).node))
    assert sorted(n for _, n in placed) == ["a", "b", "c"]  # least allocated, counting 100m per pod
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "gen", "operator": "Exists"}]}}]}}
    assert schedule(pod(affinity=pref), NODES, [(pod("busy", cpu="1"), "c")]).node == "c"
    soft_anti = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "w"}}, "topologyKey": "zone"}}]}}
    assert schedule(pod(affinity=soft_anti), NODES, [(pod("w", labels={"app": "w"}), "c")]).node in ("a", "b")


def entry(nid: str, alive: bool = True, labels: dict | None = None, resources: dict | None = None, head: bool = False) -> dict:
    res = {"CPU": 2.0, "memory": 4 * 2**30, "object_store_memory": 1e8, "node:10.0.0.5": 1.0, **(resources or {})}
    if head:
        res["node:__internal_head__"] = 1.0
    return {"NodeID": nid, "Alive": alive, "NodeManagerAddress": "10.0.0.5", "NodeManagerHostname": "Worker_7.lan",
            "Resources": res, "Labels": {"ray.io/node-id": nid, **(labels or {})}, "DeathReasonMessage": "gone"}


def test_a_ray_node_becomes_a_node_with_labels_capacity_and_address():
    n = ray_nodes.to_node(entry("ab12cd34" * 7, resources={"zone-a": 1.0}, labels={"tier": "gpu", "bad key!": "x"}, head=True), "local")
    md, st = n["metadata"], n["status"]
    assert md["name"] == "worker-7-ab12cd"
    assert md["labels"]["kubernetes.io/hostname"] == "worker-7-ab12cd"
    assert md["labels"]["ray.io/resource.zone-a"] == "1" and md["labels"]["tier"] == "gpu" and "bad key!" not in md["labels"]
    assert "node-role.kubernetes.io/control-plane" in md["labels"] and md["labels"]["ketch.dev/kubelet"] == "ray"
    assert st["capacity"]["cpu"] == "2" and st["capacity"]["memory"] == "4194304Ki" and st["capacity"]["ray.io/zone-a"] == "1"
    assert st["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.5"}
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and not n["spec"].get("taints")
    named = ray_nodes.to_node(entry("ff" * 28, labels={"ketch.dev/node-name": "gpu-box"}), "local")
    assert named["metadata"]["name"] == "gpu-box"
    dead = ray_nodes.to_node(entry("ee" * 28, alive=False), "local")
    ready = next(c for c in dead["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown" and "gone" in ready["message"]
    assert {(t["key"], t["effect"]) for t in dead["spec"]["taints"]} == {("node.kubernetes.io/unreachable", "NoSchedule"),
                                                                        ("node.kubernetes.io/unreachable", "NoExecute")}
    assert schedule(pod(), [dead], []).node is None
