"""The scheduler on many Nodes and Pods gives the same placements, messages, reasons and scores as its
straightforward reading (tests/scheduling_oracle.py, which rescans every placed Pod for every Node): random
but seeded clusters of 60 Nodes (zones, racks, taints, cordons, extended resources) and 400 Pods using every
filter and score (selectors, node affinity, requests and overhead, spread, pod affinity and anti-affinity,
preferences), each placed in turn as the Ray kubelet places them."""

from __future__ import annotations

import random

import pytest

import scheduling_oracle as oracle
from ketch.kubelet.scheduling import schedule


def _node(rng: random.Random, i: int) -> dict:
    labels = {"kubernetes.io/hostname": f"n{i:03d}", "zone": f"z{rng.randrange(4)}", "rack": f"r{rng.randrange(12)}"}
    if rng.random() < 0.3:
        labels["gen"] = str(rng.randrange(1, 5))
    if rng.random() < 0.2:
        labels["disk"] = "ssd"
    alloc = {"cpu": str(rng.choice([2, 4, 8])), "memory": f"{rng.choice([4, 8, 16])}Gi", "pods": str(rng.choice([5, 20, 110]))}
    if rng.random() < 0.15:
        alloc["nvidia.com/gpu"] = str(rng.choice([1, 2]))
    spec: dict = {}
    if rng.random() < 0.08:
        spec["taints"] = [{"key": "dedicated", "value": "ml", "effect": rng.choice(["NoSchedule", "PreferNoSchedule"])}]
    if rng.random() < 0.04:
        spec["unschedulable"] = True
    return {"metadata": {"name": f"n{i:03d}", "labels": labels}, "spec": spec, "status": {"allocatable": alloc}}


def _selector(rng: random.Random, app: str) -> dict:
    r = rng.random()
    if r < 0.1:
        return {}
    if r < 0.3:
        return {"matchExpressions": [{"key": "app", "operator": rng.choice(["In", "NotIn"]), "values": [app, "x"]}]}
    if r < 0.4:
        return {"matchExpressions": [{"key": "tier", "operator": rng.choice(["Exists", "DoesNotExist"])}]}
    return {"matchLabels": {"app": app}}


def _pod(rng: random.Random, i: int) -> dict:
    app = f"a{rng.randrange(6)}"
    labels = {"app": app, **({"tier": "web"} if rng.random() < 0.4 else {})}
    ns = rng.choice(["default", "default", "team"])
    c: dict = {"name": "main", "image": "x"}
    if rng.random() < 0.7:
        req = {"cpu": rng.choice(["100m", "250m", "500m", "1", "2"]), "memory": rng.choice(["64Mi", "512Mi", "1Gi", "3Gi"])}
        if rng.random() < 0.05:
            req["nvidia.com/gpu"] = "1"
        c["resources"] = {"requests": req} if rng.random() < 0.8 else {"limits": req}
    spec: dict = {"containers": [c]}
    if rng.random() < 0.1:
        spec["initContainers"] = [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "3"}}}]
    if rng.random() < 0.05:
        spec["overhead"] = {"cpu": "250m"}
    if rng.random() < 0.1:
        spec["nodeSelector"] = {"zone": f"z{rng.randrange(4)}"}
    if rng.random() < 0.1:
        spec["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    aff: dict = {}
    if rng.random() < 0.15:
        aff["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gen", "operator": rng.choice(["Gt", "Lt"]), "values": ["2"]}]},
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": rng.randrange(1, 100), "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}
    key = rng.choice(["kubernetes.io/hostname", "zone", "rack"])
    if rng.random() < 0.2:
        aff["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": _selector(rng, app), "topologyKey": key}]}
    elif rng.random() < 0.15:
        aff["podAntiAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": rng.randrange(1, 100), "podAffinityTerm": {"labelSelector": _selector(rng, app), "topologyKey": key}}]}
    if rng.random() < 0.1:
        term = {"labelSelector": _selector(rng, app), "topologyKey": rng.choice(["zone", "rack"])}
        if rng.random() < 0.3:
            term["namespaces"] = ["team"]
        if rng.random() < 0.2:
            term["namespaceSelector"] = {}
        aff["podAffinity"] = ({"requiredDuringSchedulingIgnoredDuringExecution": [term]} if rng.random() < 0.5 else
                              {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 30, "podAffinityTerm": term}]})
    if aff:
        spec["affinity"] = aff
    if rng.random() < 0.2:
        spec["topologySpreadConstraints"] = [{
            "maxSkew": rng.choice([1, 2]), "topologyKey": rng.choice(["zone", "rack", "gen"]),
            "whenUnsatisfiable": rng.choice(["DoNotSchedule", "ScheduleAnyway"]), "labelSelector": _selector(rng, app),
            **({"minDomains": 5} if rng.random() < 0.2 else {}),
            **({"nodeAffinityPolicy": "Ignore"} if rng.random() < 0.3 else {})}]
    return {"metadata": {"name": f"p{i}", "namespace": ns, "labels": labels}, "spec": spec}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_pods_on_many_nodes_are_placed_as_the_rescanning_scheduler_places_them(seed):
    rng = random.Random(seed)
    nodes = [_node(rng, i) for i in range(60)]
    placed: list[tuple[dict, str]] = []
    kinds = set()
    for i in range(400):
        p = _pod(rng, i)
        got, want = schedule(p, nodes, placed), oracle.schedule(p, nodes, placed)
        assert (got.node, got.message, got.reasons) == (want.node, want.message, want.reasons), p
        assert {k: round(v, 9) for k, v in got.scores.items()} == {k: round(v, 9) for k, v in want.scores.items()}, p
        kinds.update(r for rs in got.reasons.values() for r in rs)
        if got.node is not None:
            placed.append((p, got.node))
    # the run exercised the filters, placed most Pods and refused some
    assert len(placed) > 150 and len(placed) < 400
    assert {"node(s) didn't match pod anti-affinity rules", "node(s) didn't match Pod's node affinity/selector"} <= kinds
    assert any(k.startswith("Insufficient") for k in kinds)
