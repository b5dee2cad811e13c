"""Exit records: how a container ended, kept in its pod's state directory by its supervisor.

The supervisor of a container (its parent: a zygote, ``zygote.py``) outlives ketch, so it is what can tell
a restarted kubelet the true exit status of a container that ended while ketch was down, or that ended
while adopted (ketch is then not its parent and cannot wait for it). Per container run, in
``KETCH_HOME/kubelet/pods/<uid>/exits/``:

- ``<container>.<run>.pid``: the pid, written when the supervisor has started it (so a start that ketch
  did not live to record is still found and adopted);
- ``<container>.<run>.exit``: ``{"code": C, "finished": <epoch seconds>}`` when it ended (C negative:
  killed by that signal).

Both are written atomically (a temporary file, then a rename) and never into a removed pod directory.
Standard library only: the zygote imports it before forking.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def exit_file(pod_dir: Path, container: str, run: int) -> Path:
    return pod_dir / "exits" / f"{container}.{run}.exit"


def pid_file(exit_path: str | os.PathLike) -> str:
    p = os.fspath(exit_path)
    return (p[: -len(".exit")] if p.endswith(".exit") else p) + ".pid"


def _write(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # the pod's directory is gone (deleted): nobody will ask


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``): with the pid, the process's
    identity, so a recycled pid is never taken for it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def record_start(exit_path: str, pid: int) -> None:
    _write(pid_file(exit_path), {"pid": pid, "started": time.time(), "ticks": start_ticks(pid)})


def record_exit(exit_path: str, code: int) -> None:
    _write(exit_path, {"code": code, "finished": time.time()})


def _read(path: str | os.PathLike) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_exit(exit_path: str | os.PathLike) -> tuple[int, float] | None:
    """(exit status as waitpid gives it, when it ended), or None when no end was recorded."""
    d = _read(exit_path)
    if d is None or not isinstance(d.get("code"), int):
        return None
    return d["code"], float(d.get("finished") or time.time())


def read_start(exit_path: str | os.PathLike) -> tuple[int, float, int | None] | None:
    """(pid, when it started, its start ticks) of a run the supervisor started, or None."""
    d = _read(pid_file(exit_path))
    if d is None or not isinstance(d.get("pid"), int):
        return None
    return d["pid"], float(d.get("started") or time.time()), d.get("ticks") if isinstance(d.get("ticks"), int) else None


def running(pid: int, ticks: int | None) -> bool:
    """Whether the process the supervisor started (pid + start ticks) is still there (zombies included)."""
    return ticks is not None and start_ticks(pid) == ticks


def unfinished(pod_dir: Path) -> list[int]:
    """Pids of runs the supervisor started, has not recorded an end for, and that still run (the same
    process, not a recycled pid): what to end with a pod deleted while ketch was down."""
    out = []
    for f in (pod_dir / "exits").glob("*.pid"):
        exit_path = str(f)[: -len(".pid")] + ".exit"
        got = read_start(exit_path)
        if got is not None and read_exit(exit_path) is None and running(got[0], got[2]):
            out.append(got[0])
    return out
