"""The DAG engine and the task launcher on real pipelines compiled by the kfp SDK, each task run by the real
launcher program in its own process (as in a task Pod). The server-level tests are in test_pipelines_api.py."""



import json
from pathlib import Path
from typing import List, NamedTuple  # noqa: UP035 - kfp reads typing.List annotations

import pytest
from kfp import dsl
from kfp.dsl import (
    HTML,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    OutputPath,
    PipelineTaskFinalStatus,
)

from ketch.pipelines import ir
from pipelines_helpers import compile_ir, run_engine


@dsl.component
def make_data(n: int, rate: float, flag: bool, tags: list, conf: dict, data: Output[Dataset], model: Output[Model]) -> str:
    import json

    assert isinstance(n, int) and isinstance(rate, float) and flag is True
    with open(data.path, "w") as f:
        f.write(",".join(str(i) for i in range(n)))
    model.metadata["framework"] = "toy"
    with open(model.path, "w") as f:
        f.write(json.dumps({"n": n, "rate": rate, "tags": tags, "conf": conf}))
    return f"made {n}"


@dsl.component
def evaluate(data: Input[Dataset], model: Input[Model], metrics: Output[Metrics], cm: Output[ClassificationMetrics],
             page: Output[HTML], notes: Output[Markdown]) -> NamedTuple("Out", [("count", int), ("framework", str)]):
    from collections import namedtuple

    vals = open(data.path).read().split(",")
    metrics.log_metric("count", len(vals))
    cm.log_confusion_matrix(["a", "b"], [[1, 0], [0, 1]])
    with open(page.path, "w") as f:
        f.write("<b>ok</b>")
    with open(notes.path, "w") as f:
        f.write("# ok")
    return namedtuple("Out", ["count", "framework"])(len(vals), model.metadata["framework"])


@dsl.pipeline
def artifacts_pipeline(n: int = 4, rate: float = 0.5) -> int:
    m = make_data(n=n, rate=rate, flag=True, tags=["x", 1], conf={"k": [1, 2]})
    e = evaluate(data=m.outputs["data"], model=m.outputs["model"])
    return e.outputs["count"]


def test_parameters_and_artifacts(tmp_path: Path) -> None:
    p = compile_ir(artifacts_pipeline, tmp_path)
    state, outputs, tasks, _ = run_engine(p, tmp_path, {"n": 5})
    assert state == "SUCCEEDED", tasks
    assert outputs["parameters"] == {"Output": 5}
    mk, ev = tasks["make-data"], tasks["evaluate"]
    assert mk["outputs"]["parameters"]["Output"] == "made 5"
    data_uri = mk["outputs"]["artifacts"]["data"][0]["uri"]
    assert Path(data_uri).read_text() == "0,1,2,3,4"
    assert json.loads(Path(mk["outputs"]["artifacts"]["model"][0]["uri"]).read_text())["conf"] == {"k": [1, 2]}
    assert mk["outputs"]["artifacts"]["model"][0]["metadata"]["framework"] == "toy"
    # the consumer saw the producer's artifact: lineage by id
    assert ev["inputs"]["artifacts"]["data"][0]["id"] == mk["outputs"]["artifacts"]["data"][0]["id"]
    arts = ev["outputs"]["artifacts"]
    assert arts["metrics"][0]["metadata"] == {"count": 5.0}
    assert arts["cm"][0]["metadata"]["confusionMatrix"]["rows"] == [{"row": [1, 0]}, {"row": [0, 1]}]
    assert Path(arts["page"][0]["uri"]).read_text() == "<b>ok</b>"
    assert Path(arts["notes"][0]["uri"]).read_text() == "# ok"
    assert ev["outputs"]["parameters"] == {"count": 5, "framework": "toy"}


@dsl.component
def flip(side: str) -> str:
    return side


@dsl.component
def say(msg: str) -> str:
    return msg


@dsl.pipeline
def branches(side: str = "tails") -> str:
    f = flip(side=side)
    with dsl.If(f.output == "heads"):
        a = say(msg="H")
    with dsl.Elif(f.output == "tails"):
        b = say(msg="T")
    with dsl.Else():
        c = say(msg="?")
    return dsl.OneOf(a.output, b.output, c.output)


@pytest.mark.parametrize("side,expect", [("tails", "T"), ("edge", "?")])
def test_if_elif_else_and_oneof(tmp_path: Path, side: str, expect: str) -> None:
    state, outputs, tasks, runner = run_engine(compile_ir(branches, tmp_path), tmp_path, {"side": side})
    assert state == "SUCCEEDED"
    assert outputs["parameters"]["Output"] == expect
    ran = [t for t in runner.started if t.endswith("/say") or "say" in t]
    assert len(ran) == 1
    skipped = [tid for tid, r in tasks.items() if r["state"] == "SKIPPED"]
    assert len(skipped) == 2


@dsl.component
def make_items() -> list:
    return [{"label": "a", "n": 1}, {"label": "b", "n": 2}, {"label": "c", "n": 3}]


@dsl.component
def square(label: str, n: int) -> int:
    assert isinstance(n, int)
    return n * n


@dsl.component
def total(xs: List[int]) -> int:  # noqa: UP006
    assert all(isinstance(x, int) for x in xs), xs  # kfp.local hands floats here
    return sum(xs)


@dsl.pipeline
def loops() -> int:
    items = make_items()
    with dsl.ParallelFor(items.output, parallelism=2) as it:
        s = square(label=it.label, n=it.n)
    return total(xs=dsl.Collected(s.output)).output


def test_parallelfor_over_task_output_dicts_collected_ints(tmp_path: Path) -> None:
    state, outputs, tasks, runner = run_engine(compile_ir(loops, tmp_path), tmp_path)
    assert state == "SUCCEEDED", tasks
    assert outputs["parameters"]["Output"] == 14
    loop = next(r for r in tasks.values() if r["kind"] == "loop")
    assert loop["iterations"] == 3
    names = sorted(r["inputs"]["parameters"]["label"] for r in tasks.values() if r["name"] == "square")
    assert names == ["a", "b", "c"]


@dsl.component
def produce(i: int, out: Output[Dataset]):
    with open(out.path, "w") as f:
        f.write(str(i))


@dsl.component
def concat(items: Input[List[Dataset]]) -> str:  # noqa: UP006
    return "".join(open(d.path).read() for d in items)


@dsl.pipeline
def fan_in() -> str:
    with dsl.ParallelFor([3, 1, 2]) as i:
        p = produce(i=i)
    return concat(items=dsl.Collected(p.outputs["out"])).output


def test_collected_artifacts_and_fanout_runs_in_parallel(tmp_path: Path) -> None:
    state, outputs, tasks, runner = run_engine(compile_ir(fan_in, tmp_path), tmp_path)
    assert state == "SUCCEEDED", tasks
    assert outputs["parameters"]["Output"] == "312"  # iteration order kept
    assert runner.max_running >= 2  # the engine started sibling iterations together


@dsl.component
def fail(msg: str):
    raise RuntimeError(msg)


@dsl.component
def report(status: PipelineTaskFinalStatus) -> str:
    return f"{status.state}:{status.pipeline_task_name}:{status.error_message}"


@dsl.pipeline
def exit_handling():
    r = report()
    with dsl.ExitHandler(r):
        fail(msg="boom")


def test_exit_handler_gets_final_status_and_run_fails(tmp_path: Path) -> None:
    state, _, tasks, _ = run_engine(compile_ir(exit_handling, tmp_path), tmp_path)
    assert state == "FAILED"
    assert "boom" in tasks["exit-handler-1/fail"]["error"]
    out = tasks["report"]["outputs"]["parameters"]["Output"]
    assert out.startswith("FAILED:exit-handler-1:")


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
    flaky(marker=marker).set_retry(num_retries=3, backoff_duration="0s", backoff_factor=2.0).set_caching_options(False)


def test_retry_with_backoff(tmp_path: Path) -> None:
    state, _, tasks, _ = run_engine(compile_ir(retrying, tmp_path), tmp_path, {"marker": str(tmp_path / "m")})
    assert state == "SUCCEEDED", tasks
    t = tasks["flaky"]
    assert t["attempt"] == 3 and len(t["failedPods"]) == 2
    assert t["outputs"]["parameters"]["Output"] == "ok after 2"


@dsl.component
def stamp(x: int, marker: str) -> int:
    with open(marker, "a") as f:
        f.write("x")
    return x + 1


@dsl.pipeline
def cached(x: int, marker: str):
    stamp(x=x, marker=marker)
    stamp(x=x, marker=f"{marker}.nocache").set_caching_options(False)


def test_caching_honours_inputs_and_options(tmp_path: Path) -> None:
    p = compile_ir(cached, tmp_path)
    m = str(tmp_path / "m")
    _, _, t1, runner = run_engine(p, tmp_path / "r1", {"x": 1, "marker": m})
    _, _, t2, _ = run_engine(p, tmp_path / "r2", {"x": 1, "marker": m}, runner=runner)
    assert t2["stamp"]["cached"] and t2["stamp"]["state"] == "SKIPPED"
    assert t2["stamp"]["outputs"]["parameters"]["Output"] == 2
    assert not t2["stamp-2"].get("cached")
    assert Path(m).read_text() == "x" and Path(m + ".nocache").read_text() == "xx"
    _, _, t3, _ = run_engine(p, tmp_path / "r3", {"x": 2, "marker": m}, runner=runner)  # other input: a miss
    assert not t3["stamp"].get("cached") and Path(m).read_text() == "xx"
    _, _, t4, _ = run_engine(p, tmp_path / "r4", {"x": 1, "marker": m}, runner=runner, caching=False)  # per-run off
    assert not t4["stamp"].get("cached")


@dsl.component
def inner_add(a: int, b: int) -> int:
    return a + b


@dsl.pipeline
def inner(a: int, b: int = 10) -> int:
    return inner_add(a=a, b=b).output


@dsl.component
def read_text(d: Input[Dataset]) -> str:
    return open(d.path).read()


@dsl.pipeline
def outer(path: str) -> int:
    imp = dsl.importer(artifact_uri=path, artifact_class=Dataset, metadata={"source": "test"})
    read_text(d=imp.output)
    n = inner(a=3)
    return inner(a=n.output, b=4).output


def test_nested_pipelines_importer_and_outputs(tmp_path: Path) -> None:
    f = tmp_path / "in.txt"
    f.write_text("hello")
    state, outputs, tasks, _ = run_engine(compile_ir(outer, tmp_path), tmp_path, {"path": str(f)})
    assert state == "SUCCEEDED", tasks
    assert outputs["parameters"]["Output"] == 17
    assert tasks["read-text"]["outputs"]["parameters"]["Output"] == "hello"
    assert tasks["importer"]["outputs"]["artifacts"]["artifact"][0]["metadata"] == {"source": "test"}


@dsl.container_component
def shout(msg: str, out: OutputPath(str), opt: str = None):
    return dsl.ContainerSpec(
        image="python:3.11",
        command=["sh", "-c", 'printf "%s|%s" "$0" "$1" > "$2"'],
        args=[dsl.ConcatPlaceholder(["m=", msg]), dsl.IfPresentPlaceholder(input_name="opt", then=["has-opt"], else_=["no-opt"]), out],
    )


@dsl.pipeline
def containers() -> str:
    return shout(msg="hi").outputs["out"]


def test_container_component_placeholders(tmp_path: Path) -> None:
    state, outputs, tasks, _ = run_engine(compile_ir(containers, tmp_path), tmp_path)
    assert state == "SUCCEEDED", tasks
    assert outputs["parameters"]["Output"] == "m=hi|no-opt"


@dsl.component
def placeholders(job: str, task: str) -> str:
    return f"{job}/{task}"


@dsl.pipeline
def with_placeholders() -> str:
    return placeholders(job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, task=dsl.PIPELINE_TASK_NAME_PLACEHOLDER).output


def test_pipeline_placeholders(tmp_path: Path) -> None:
    state, outputs, _, _ = run_engine(compile_ir(with_placeholders, tmp_path), tmp_path)
    assert state == "SUCCEEDED" and outputs["parameters"]["Output"] == "run-1/placeholders"


def test_bad_ir_is_refused_naming_task_and_feature(tmp_path: Path) -> None:
    p = compile_ir(artifacts_pipeline, tmp_path)
    spec = json.loads(json.dumps(p.spec))
    spec["deploymentSpec"]["executors"]["exec-evaluate"] = {"customJob": {"customJob": {}}}
    with pytest.raises(ir.IRError, match=r"task 'evaluate'.*customJob"):
        ir.load(spec)
    spec = json.loads(json.dumps(p.spec))
    spec["root"]["dag"]["tasks"]["evaluate"]["dependentTasks"] = ["nope"]
    with pytest.raises(ir.IRError, match=r"task 'evaluate'.*'nope'"):
        ir.load(spec)
    spec = json.loads(json.dumps(p.spec))
    spec["schemaVersion"] = "1.0.0"
    with pytest.raises(ir.IRError, match="schemaVersion"):
        ir.load(spec)


@dsl.pipeline
def per_item(items: Input[List[Dataset]]) -> List[str]:  # noqa: UP006
    with dsl.ParallelFor(items) as d:
        r = read_text(d=d)
    return dsl.Collected(r.output)


@dsl.pipeline
def artifact_loop() -> List[str]:  # noqa: UP006
    with dsl.ParallelFor([1, 2]) as i:
        p = produce(i=i)
    return per_item(items=dsl.Collected(p.outputs["out"])).output


def test_parallelfor_over_artifacts_in_subpipeline(tmp_path: Path) -> None:
    state, outputs, tasks, _ = run_engine(compile_ir(artifact_loop, tmp_path), tmp_path)
    assert state == "SUCCEEDED", tasks
    assert outputs["parameters"]["Output"] == ["1", "2"]


@dsl.component
def is_big(x: int, limit: int) -> bool:
    return x > limit


@dsl.pipeline
def nested_loops(limit: int = 2) -> List[int]:  # noqa: UP006
    with dsl.ParallelFor([1, 2]) as a:
        with dsl.ParallelFor([1, 2]) as b:
            s = inner_add(a=a, b=b)
            with dsl.If(s.output > limit):
                is_big(x=s.output, limit=limit)
    return dsl.Collected(s.output)


def test_nested_loops_with_condition_on_integer(tmp_path: Path) -> None:
    state, _, tasks, _ = run_engine(compile_ir(nested_loops, tmp_path), tmp_path)
    assert state == "SUCCEEDED", tasks
    bigs = sorted(r["inputs"]["parameters"]["x"] for r in tasks.values() if r["name"] == "is-big")
    assert bigs == [3, 3, 4]
    adds = [r for r in tasks.values() if r["name"] == "inner-add"]
    assert len(adds) == 4


@dsl.component
def cleanup(marker: str):
    with open(marker, "w") as f:
        f.write("cleaned")


@dsl.pipeline
def ignore_failure(marker: str):
    bad = fail(msg="nope")
    cleanup(marker=marker).after(bad).ignore_upstream_failure()


def test_ignore_upstream_failure_runs_cleanup(tmp_path: Path) -> None:
    m = tmp_path / "m"
    state, _, tasks, _ = run_engine(compile_ir(ignore_failure, tmp_path), tmp_path, {"marker": str(m)})
    assert state == "FAILED" and tasks["cleanup"]["state"] == "SUCCEEDED" and m.read_text() == "cleaned"


@dsl.component
def nap(seconds: float):
    import time

    time.sleep(seconds)


@dsl.pipeline
def timing_out():
    from kfp import kubernetes

    t = nap(seconds=60.0).set_caching_options(False)
    kubernetes.set_timeout(t, 1)


def test_task_timeout_fails_the_task(tmp_path: Path) -> None:
    state, _, tasks, runner = run_engine(compile_ir(timing_out, tmp_path), tmp_path, timeout=30)
    assert state == "FAILED"
    assert "timed out" in tasks["nap"]["error"]
    assert all(p.wait(10) is not None for p in runner.procs.values())  # the process was ended


def test_cron_schedules_robfig_six_fields() -> None:
    from ketch.pipelines.schedules import next_time, parse_cron

    assert parse_cron("*/5 * * * * *") == ("*/5 * * * * *", True)
    with pytest.raises(ValueError):
        parse_cron("61 * * * * *")
    t0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    nxt = next_time({"trigger": {"cron_schedule": {"cron": "0 0 * * * *"}}}, t0)
    assert nxt == 1_700_002_800.0  # the next full hour
    assert next_time({"trigger": {"periodic_schedule": {"interval_second": "30"}}}, t0) == t0 + 30


def test_artifacts_through_an_fsspec_url_root(tmp_path: Path) -> None:
    """A non-local pipeline root (here fsspec's ``local://`` protocol, standing in for s3:// and friends):
    the launcher stages inputs down and uploads outputs, and URIs stay in the store's form."""
    import fsspec

    from ketch.pipelines import engine
    from pipelines_helpers import ProcRunner

    p = compile_ir(artifacts_pipeline, tmp_path)
    root = f"local://{tmp_path}/store"
    info = engine.RunInfo("run-1", "run-1", "run-1", root, str(tmp_path / "tasks"), "t", "t")
    runner = ProcRunner(info)
    tasks: dict = {}
    import time

    deadline = time.time() + 60
    while (st := engine.Engine(p, info, tasks, {"n": 3}, runner).step()[0]) == "RUNNING" and time.time() < deadline:
        time.sleep(0.05)
    assert st == "SUCCEEDED", tasks
    uri = tasks["make-data"]["outputs"]["artifacts"]["data"][0]["uri"]
    assert uri.startswith("local://")
    with fsspec.open(uri, "r") as f:
        assert f.read() == "0,1,2"
    assert tasks["evaluate"]["outputs"]["parameters"]["count"] == 3
