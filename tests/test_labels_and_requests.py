"""The one LabelSelector matcher (kinds/labels.py) with Kubernetes' two readings of an empty selector, and the
one reading of what a Pod requests (kinds/resources.py pod_requests) that admission and the scheduler share."""

from __future__ import annotations

from ketch.kinds.labels import selector_matches
from ketch.kinds.resources import GPU, pod_requests
from ketch.kubelet.scheduling import requests_of
from ketch.machinery.selectors import label_matches

L = {"app": "web", "tier": "front"}


def test_null_selects_nothing_and_empty_selects_as_the_field_says():
    assert not selector_matches(None, L) and not selector_matches(None, L, empty_matches_all=True)
    assert selector_matches({}, L, empty_matches_all=True)  # pod affinity, topology spread, PDB policy/v1
    assert not selector_matches({}, L)  # a Service's or workload's selector: empty selects nothing
    assert not label_matches({}, L) and not label_matches(None, L)
    assert label_matches({"matchLabels": {}}, L)  # as label_matches always read it


def test_requirements():
    assert selector_matches({"matchLabels": {"app": "web"}}, L)
    assert not selector_matches({"matchLabels": {"app": "db"}}, L)
    ex = lambda op, *vals: {"matchExpressions": [{"key": "tier", "operator": op, **({"values": list(vals)} if vals else {})}]}  # noqa: E731
    assert selector_matches(ex("In", "front", "back"), L) and not selector_matches(ex("In", "back"), L)
    assert selector_matches(ex("NotIn", "back"), L) and not selector_matches(ex("NotIn", "front"), L)
    assert selector_matches(ex("NotIn", "x"), {}) and not selector_matches(ex("In", "x"), {})
    assert selector_matches(ex("Exists"), L) and not selector_matches(ex("DoesNotExist"), L)
    assert not selector_matches(ex("Gt", "1"), {"tier": "2"})  # not a LabelSelector operator: matches nothing


def test_pod_requests_max_of_init_and_sum_plus_overhead_and_extended_on_request():
    pod = {"spec": {
        "containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                       {"resources": {"limits": {"cpu": "1", GPU: "1", "example.com/fpga": "2"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
        "overhead": {"cpu": "250m", "memory": "64Mi"}}}
    r = pod_requests(pod)
    assert r == {"cpu": 2.25, "memory": 2**30 + 64 * 2**20, GPU: 1.0}
    assert pod_requests(pod, every=True) == {**r, "example.com/fpga": 2.0}
    assert requests_of(pod) == pod_requests(pod, every=True)
    assert pod_requests({"spec": {"containers": [{"resources": {"requests": {"cpu": "bogus"}}}]}})["cpu"] == 0.0


def test_a_peer_reference_from_training_is_the_one_the_ray_kubelet_expands(monkeypatch):
    from ketch.kinds.endpoints import SERVICE_REF, service_env_name
    from ketch.training.ports import peer_host

    monkeypatch.setenv("KETCH_KUBELET", "ray")
    ref = peer_host("my-job.master-0")
    m = SERVICE_REF.fullmatch(ref)
    assert m and m.group(1) == service_env_name("my-job.master-0") == "MY_JOB_MASTER_0" and m.group(2) == "HOST"
    monkeypatch.setenv("KETCH_KUBELET", "local")
    monkeypatch.setenv("KETCH_POD_NETWORK", "host")
    assert peer_host("my-job-master-0") == "127.0.0.1"
