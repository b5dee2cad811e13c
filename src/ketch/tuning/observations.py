"""Observation logs per trial, as files under KETCH_HOME/katib/observations/<namespace>/<trial>/.

``push.jsonl`` is appended by the push endpoint; ``collected.jsonl`` is rewritten from the primary
container's output by the trial controller. Each line is ``{"time", "name", "value"}`` (Katib's
observation_logs table). Queryable at GET /katib/v1/namespaces/{ns}/trials/{trial}/observations.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


class ObservationStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, ns: str, trial: str) -> Path:
        return self.root / ns / trial

    def append(self, ns: str, trial: str, records: list[dict]) -> None:
        d = self._dir(ns, trial)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "push.jsonl", "a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")

    def replace_collected(self, ns: str, trial: str, records: list[dict]) -> None:
        d = self._dir(ns, trial)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "collected.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(tmp, d / "collected.jsonl")

    def read(self, ns: str, trial: str, metric: str | None = None) -> list[dict]:
        out = []
        for name in ("collected.jsonl", "push.jsonl"):
            p = self._dir(ns, trial) / name
            if p.exists():
                for line in p.read_text().splitlines():
                    if line.strip():
                        r = json.loads(line)
                        if metric is None or r["name"] == metric:
                            out.append(r)
        return sorted(out, key=lambda r: r["time"])

    def delete(self, ns: str, trial: str) -> None:
        shutil.rmtree(self._dir(ns, trial), ignore_errors=True)

    def trials(self, ns: str) -> list[str]:
        d = self.root / ns
        return sorted(p.name for p in d.iterdir()) if d.exists() else []
