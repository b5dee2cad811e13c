"""What the Ray kubelet runs on each Ray node: a warm worker that starts and watches the node's containers,
and a reservation that holds a container's Ray resources while it runs.

**The warm worker** (``NodeWorker``, one detached named actor per Ray node and per ketch home, holding no
resources) does on its node what the local kubelet does on its machine, with the same code (warm.py,
zygote.py): a container that runs ``python -m module`` in a Pod annotated ``kubelet.ketch.dev/preload`` is
forked from a zygote that has imported those modules (the same fit rules: same interpreter and
environment, ``-m``, matching PYTHON* variables), every other container is exec'd through the zygote of no
modules (the supervisor). So a pipeline task pays one fork instead of an interpreter start plus kfp's
imports plus a Ray worker, and its exit status is recorded in the pod's exit file by its parent, as locally.
Each container is known by a key ``<pod uid>/<container>/<run>``; its output goes to files on the node that
the kubelet reads from offsets (``read`` waits up to a moment for the end, so an ended container is seen
at once rather than on the next poll).

On a node that does not see ketch's home (``sees``), ``spawn`` first lays the container's files, shipped with
it, at their paths, and ``read`` returns what changed in a shipped task directory with the end (ray_files.py).

Being *detached* and *named* (``ketch-node-<home id>-<node id>`` in Ray namespace ``ketch``), the worker and
its containers outlive ketch: a restarted ketch on the same home and Ray cluster finds it by name, lists its
containers and adopts them (ray_kubelet.py). ketch kills the workers when it stops its containers (the
default), and leaves them when it leaves its containers running.

**A reservation** (``Reservation``, detached, named ``ketch-<home id>-<pod uid>-<container>-<run>``) is made
for a container that requests CPU, GPU or memory, or belongs to a placement group: an actor holding exactly
that in Ray's accounting, on the Pod's node (or in its bundle), and giving the GPU ids Ray assigned; the
process itself is still the warm worker's. It is killed when the container ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

READ_LIMIT = 1 << 20


def worker_name(home_id: str, node_id: str) -> str:
    return f"ketch-node-{home_id}-{node_id}"


def reservation_name(home_id: str, key: str) -> str:
    return f"ketch-{home_id}-{key.replace('/', '-')}"


@dataclass
class _Proc:
    pid: int
    dir: str
    ended: asyncio.Future
    warm: bool
    started: float = field(default_factory=time.time)
    back: list[str] = field(default_factory=list)  # shipped directories whose changes go back (ray_files.py)
    before: dict = field(default_factory=dict)


class NodeWorker:
    """Starts and watches the containers of one ketch home on the Ray node it runs on (an async actor)."""

    def __init__(self) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.root = tempfile.mkdtemp(prefix="ketch-node-")
        self.procs: dict[str, _Proc] = {}
        self.warm = None
        os.environ["KETCH_ZYGOTE_ORPHANS"] = "kill"  # this worker's zygotes end its containers if it dies (zygote.py)

    def _starts(self):  # noqa: ANN202 - a WarmStarts, made in the actor's event loop (its zygotes need one)
        if self.warm is None:
            from ketch.kubelet.warm import WarmStarts

            self.warm = WarmStarts(Path(self.root), enabled=True, supervise=True, adapt_env=True)
            self.warm.start_supervisor()
        return self.warm

    async def ping(self, preload: list[str] | None = None, startup: list[list[str]] | None = None) -> dict:
        """Ready (and the supervisor started); ``preload`` also starts the zygote for those modules, for
        containers with the Python start-up variables ``startup`` (ketch's own: what its containers get)."""
        w = self._starts()
        if preload:
            w._zygote(tuple(preload), tuple((k, v) for k, v in startup or []))
        return {"node": self.node_id, "pid": os.getpid()}

    async def sees(self, marker: str, token: str) -> bool:
        """Whether this node sees ketch's home (else the kubelet ships each container's files)."""
        from ketch.kubelet import ray_files

        return ray_files.sees(marker, token)

    async def drop(self, dirs: list[str]) -> None:
        """The pod is gone: its files laid on this node (a node that does not share ketch's home) go too."""
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    async def spawn(self, key: str, argv: list[str], env: dict[str, str], cwd: str, preload: list[str],
                    exit_file: str | None, ship: dict | None = None) -> dict:
        """Start the container ``key``: forked warm when it fits, else exec'd through the supervisor.
        ``ship``: its files, laid first at their paths on this node (ray_files.py). Returns its pid and
        whether it was warm, or an error (the container cannot run)."""
        from ketch.kubelet import ray_files
        from ketch.kubelet.images import find_executable
        from ketch.kubelet.warm import ExecFailed

        old = self.procs.pop(key, None)
        if old is not None:
            shutil.rmtree(old.dir, ignore_errors=True)
        before: dict = {}
        if ship:
            try:
                before = ray_files.lay(ship)
            except OSError as e:
                return {"pid": None, "error": f"cannot lay the pod's files on node {self.node_id}: {e}"}
        env = {**env, "KETCH_RAY_NODE_ID": self.node_id}  # the Ray node the process really runs on
        try:
            os.makedirs(cwd, exist_ok=True)
        except OSError as e:
            return {"pid": None, "error": f"cannot make working directory {cwd!r}: {e}"}
        exe = find_executable(argv[0], env.get("PATH", ""), cwd)
        if exe is None:
            return {"pid": None, "error": f'exec: "{argv[0]}": executable file not found in $PATH'}
        argv = [exe, *argv[1:]]
        d = tempfile.mkdtemp(prefix="c-", dir=self.root)
        out = os.open(os.path.join(d, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(os.path.join(d, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        w = self._starts()
        started, warm = None, False
        try:
            if preload:
                started = await w.spawn(tuple(preload), argv, env, cwd, out, err, exit_file)
                warm = started is not None
            if started is None:
                try:
                    started = await w.exec(argv, env, cwd, out, err, exit_file)
                except ExecFailed as e:
                    shutil.rmtree(d, ignore_errors=True)
                    return {"pid": None, "error": f"failed to start {argv[0]!r}: {e}"}
            if started is None:  # no supervisor to be had: start it as a child of this actor
                try:
                    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
                                                                cwd=cwd, env=env, start_new_session=True)
                except OSError as e:
                    shutil.rmtree(d, ignore_errors=True)
                    return {"pid": None, "error": f"failed to start {argv[0]!r}: {e}"}
                started = (proc.pid, asyncio.ensure_future(proc.wait()))
        finally:
            os.close(out)
            os.close(err)
        pid, ended = started
        self.procs[key] = _Proc(pid, d, ended, warm, back=list((ship or {}).get("back") or []), before=before)
        return {"pid": pid, "error": None, "warm": warm, "node": self.node_id}

    async def read(self, key: str, out_at: int, err_at: int, wait: float = 0.25) -> dict:
        """New output since the offsets, whether the process ended and how (code None: unknown), its
        resident memory, and ``done`` once it ended and all its output is in this reply. Waits up to
        ``wait`` for the end first, so the caller needs no poll interval of its own."""
        p = self.procs.get(key)
        if p is None:
            return {"gone": True}
        if not p.ended.done() and wait > 0:
            await asyncio.wait({p.ended}, timeout=wait)
        ended = p.ended.done()
        chunks = []
        for name, at in (("stdout", out_at), ("stderr", err_at)):
            try:
                with open(os.path.join(p.dir, name), "rb") as f:
                    f.seek(at)
                    chunks.append(f.read(READ_LIMIT))
            except OSError:
                chunks.append(b"")
        rss = 0
        if not ended:
            import psutil

            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(p.pid)
                rss = sum(x.memory_info().rss for x in [proc, *proc.children(recursive=True)])
        code = p.ended.result() if ended and not p.ended.cancelled() else None
        done = ended and all(len(c) < READ_LIMIT for c in chunks)
        out = {"stdout": chunks[0], "stderr": chunks[1], "ended": ended, "code": code, "done": done, "rss": rss, "pid": p.pid}
        if done and p.back:  # what the container wrote in the shipped directories goes back with its end
            from ketch.kubelet import ray_files

            out["files"] = ray_files.changed(p.back, p.before)
        return out

    async def signal(self, key: str, sig: int) -> None:
        p = self.procs.get(key)
        if p is not None and not p.ended.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)

    async def terminate(self, key: str, grace: float) -> None:
        await self.signal(key, int(signal.SIGTERM))
        p = self.procs.get(key)
        if p is not None and not p.ended.done():
            await asyncio.wait({p.ended}, timeout=grace)
        await self.signal(key, int(signal.SIGKILL))

    async def forget(self, key: str) -> None:
        """The kubelet has the container's end: drop it and its output files."""
        p = self.procs.pop(key, None)
        if p is not None:
            if not p.ended.done():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
            shutil.rmtree(p.dir, ignore_errors=True)

    async def list(self) -> dict[str, dict]:
        """Every container this worker holds: what a restarted kubelet adopts."""
        return {k: {"pid": p.pid, "ended": p.ended.done(), "warm": p.warm, "started": p.started} for k, p in self.procs.items()}


class Reservation:
    """Holds one container's CPU, GPU and memory in Ray's accounting on its node, while it runs."""

    def gpu_ids(self) -> list[str]:
        import ray

        return [str(g) for g in ray.get_gpu_ids()]
