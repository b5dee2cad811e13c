"""Katib's TensorFlowEvent collector: scalar summaries read from tfevents files after a trial ends.

Every directory under ``source.fileSystemPath.path`` holding event files is read with tensorboard's
``EventAccumulator`` (the maintained reader; ``pip install tensorboard``, the optional ``tfevent`` extra).
A summary's name is its tag, prefixed with its directory relative to the path when that is not the path
itself (``train/accuracy`` for ``<path>/train`` and tag ``accuracy``), as Katib's tfevent collector names
them; only the experiment's metric names are kept. TF2's ``tf.summary.scalar`` (tensors) and TF1 /
PyTorch's ``SummaryWriter.add_scalar`` (simple values) are both read.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path


class TFEventReaderMissing(Exception):
    pass


def read_tfevents(root: Path, names: list[str]) -> list[dict]:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.util import tensor_util
    except ImportError as e:
        raise TFEventReaderMissing("the TensorFlowEvent collector needs tensorboard (pip install 'ketch[tfevent]')") from e
    out: list[dict] = []
    if not root.is_dir():
        return out
    for d, _, files in sorted(os.walk(root)):
        if not any("tfevents" in f for f in files):
            continue
        rel = os.path.relpath(d, root)
        acc = EventAccumulator(d, size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for ev in acc.Scalars(tag):
                out.append(_record(rel, tag, ev.wall_time, float(ev.value)))
        for tag in tags.get("tensors", []):
            for ev in acc.Tensors(tag):
                arr = tensor_util.make_ndarray(ev.tensor_proto)
                if arr.size == 1:
                    out.append(_record(rel, tag, ev.wall_time, float(arr.reshape(-1)[0])))
    return [r for r in out if r["name"] in names]


def _record(rel: str, tag: str, wall: float, value: float) -> dict:
    name = tag if rel in (".", "") else f"{rel}/{tag}"
    ts = dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"time": ts, "name": name, "value": repr(value)}
