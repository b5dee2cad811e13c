"""Retries and loops through the real kfp SDK on a real ketch: a task that fails twice gets its third
attempt (the run's record keeps up with its Pods), the shape of KFP's samples/core/retry, the ``{{retries}}``
placeholder, and ``dsl.ParallelFor`` over a ``List[dict]`` an upstream task returned."""

import json
import warnings
from pathlib import Path
from typing import Dict, List  # noqa: UP035 - kfp needs typing's generics for nested types

from kfp import dsl

warnings.filterwarnings("ignore", category=FutureWarning)


def run(k, fn, **args) -> dict:
    c = k.kfp_client()
    r = c.create_run_from_pipeline_func(fn, arguments=args, enable_caching=False)
    res = c.wait_for_run_completion(r.run_id, timeout=60)
    with k.http() as h:
        d = h.get(f"/apis/v2beta1/runs/{r.run_id}").json()
    assert res.state == d["state"]
    return d


def tasks(d: dict) -> list[dict]:
    return (d.get("run_details") or {}).get("task_details") or []


def pods(k, run_id: str) -> dict[str, str]:
    items = k.kjson("get", "pods", "-n", "kubeflow", "-l", f"pipelines.kubeflow.org/run={run_id}")["items"]
    return {p["metadata"]["name"]: p["status"]["phase"] for p in items}


@dsl.component
def flaky(marker: str) -> str:
    import os

    n = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as f:
        f.write(str(n + 1))
    if n < 2:
        raise RuntimeError(f"attempt {n}")
    return f"ok after {n}"


@dsl.pipeline
def retrying(marker: str):
    flaky(marker=marker).set_retry(num_retries=3, backoff_duration="0s").set_caching_options(False)


def test_task_failing_twice_gets_its_third_attempt(shared_ketch, tmp_path: Path) -> None:
    d = run(shared_ketch, retrying, marker=str(tmp_path / "m"))
    assert d["state"] == "SUCCEEDED", d.get("error")
    (t,) = [t for t in tasks(d) if t["display_name"] == "flaky"]
    assert t["state"] == "SUCCEEDED" and t["attempts"] == 3, t
    ph = pods(shared_ketch, d["run_id"])
    assert sorted(ph.values()) == ["Failed", "Failed", "Succeeded"], ph  # the record agrees with the Pods


@dsl.component
def random_failure_op(exit_codes: str, marker: str):
    """KFP's samples/core/retry component, made deterministic: the n-th attempt exits with the n-th code."""
    import os
    import sys

    n = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as f:
        f.write(str(n + 1))
    codes = exit_codes.split(",")
    sys.exit(int(codes[min(n, len(codes) - 1)]))


@dsl.pipeline
def retry_random_failures(m1: str, m2: str):
    random_failure_op(exit_codes="1,2,3,0", marker=m1).set_retry(10)
    random_failure_op(exit_codes="1,0", marker=m2).set_retry(5)


def test_kfp_retry_sample_shape_finishes(shared_ketch, tmp_path: Path) -> None:
    d = run(shared_ketch, retry_random_failures, m1=str(tmp_path / "m1"), m2=str(tmp_path / "m2"))
    assert d["state"] == "SUCCEEDED", d.get("error")
    assert sorted(t["attempts"] for t in tasks(d) if t["display_name"].startswith("random-failure-op")) == [2, 4]
    assert sorted(pods(shared_ketch, d["run_id"]).values()).count("Failed") == 4


@dsl.container_component
def attempt_no(out: str):
    return dsl.ContainerSpec(image="python", command=["sh", "-c", 'echo "attempt {{retries}}" >> "$0"; test "{{retries}}" = 2', out])


@dsl.pipeline
def retries_placeholder(out: str):
    attempt_no(out=out).set_retry(num_retries=3, backoff_duration="0s").set_caching_options(False)


def test_retries_placeholder_is_the_retry_number(shared_ketch, tmp_path: Path) -> None:
    d = run(shared_ketch, retries_placeholder, out=str(tmp_path / "attempts"))
    assert d["state"] == "SUCCEEDED", d.get("error")
    assert (tmp_path / "attempts").read_text().split("\n")[:3] == ["attempt 0", "attempt 1", "attempt 2"]


@dsl.component
def make_items() -> List[Dict[str, str]]:  # noqa: UP006 - kfp's own samples type loop items this way
    return [{"label": "a", "size": "1"}, {"label": "b", "size": "22"}, {"label": "c", "size": "333"}]


@dsl.component
def describe(item: dict, label: str, size: str, out: str) -> str:
    import json

    line = json.dumps({"item": item, "label": label, "size": size}, sort_keys=True)
    with open(out, "a") as f:
        f.write(line + "\n")
    return label


@dsl.pipeline
def per_item(items: list[dict], out: str):
    with dsl.ParallelFor(items, parallelism=2) as item:
        describe(item=item, label=item.label, size=item.size, out=out)


@dsl.pipeline
def loop_over_upstream(out: str, out2: str) -> list[str]:
    t = make_items()
    with dsl.ParallelFor(t.output) as item:
        d = describe(item=item, label=item.label, size=item.size, out=out)
    per_item(items=t.output, out=out2)  # the same list handed to a sub-pipeline that loops over it
    return dsl.Collected(d.output)


def test_parallel_for_over_list_of_dicts_from_upstream(shared_ketch, tmp_path: Path) -> None:
    out, out2 = tmp_path / "out", tmp_path / "out2"
    d = run(shared_ketch, loop_over_upstream, out=str(out), out2=str(out2))
    assert d["state"] == "SUCCEEDED", d.get("error")
    for f in (out, out2):
        got = sorted((json.loads(line) for line in f.read_text().splitlines()), key=lambda x: x["label"])
        assert got == [{"item": {"label": n, "size": s}, "label": n, "size": s} for n, s in (("a", "1"), ("b", "22"), ("c", "333"))]
    assert sorted(d["pipeline_outputs"]["parameters"]["Output"]) == ["a", "b", "c"]
