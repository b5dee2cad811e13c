"""The fan-out pipeline the Ray tests run (tests/test_ray_pipelines_s3.py, tests/test_ray_machines.py):
``width`` parts made at once, each naming the Ray node its process ran on, then a join that reads them all.
Import after ``pytest.importorskip("kfp")``. (No ``from __future__ import annotations``: kfp reads the annotations as objects.)"""


from typing import List  # noqa: UP035 - kfp reads the annotation

from kfp import dsl
from kfp.dsl import Dataset, Input, Output


@dsl.component
def make_part(i: int, part: Output[Dataset]) -> None:
    import os
    import time

    time.sleep(2)  # the parts run at once, as a real fan-out's do: each holds its place meanwhile
    with open(part.path, "w") as f:
        f.write(f"part-{i} on {os.environ['KETCH_RAY_NODE_ID']}\n")
    part.metadata["i"] = i


@dsl.component
def join(parts: Input[List[Dataset]], merged: Output[Dataset]) -> int:  # noqa: UP006
    text = "".join(open(p.path).read() for p in sorted(parts, key=lambda p: p.metadata["i"]))
    with open(merged.path, "w") as f:
        f.write(text)
    return len(parts)


def fan_out(width: int):  # noqa: ANN201 - a kfp pipeline function
    @dsl.pipeline(name="fan-out")
    def pipeline() -> int:
        with dsl.ParallelFor(list(range(width))) as i:
            p = make_part(i=i)
        return join(parts=dsl.Collected(p.outputs["part"])).outputs["Output"]

    return pipeline
