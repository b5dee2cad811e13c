"""The Ray kubelet: the same Pods, their containers run as processes on a Ray cluster's nodes.

Everything about a Pod's life (admission, init order, restarts and back-off, probes, limits, logs, status,
deletion) is the local kubelet's; only process supervision differs. Each container is started by a Ray actor
(``ContainerProcess``) that Ray places where the container's requests fit (``num_cpus``, ``num_gpus``,
``memory``); the actor runs the command as a session leader on its node, and the kubelet pulls its output
into the container's log files, its exit status and its memory, and asks it to terminate or kill the process
group. The cluster is one Node (``ketch.dev/kubelet=ray``) whose capacity is the cluster's resources.

``KETCH_KUBELET=ray`` selects it; ``KETCH_RAY_ADDRESS`` names a cluster to join (``auto``, ``ray://...``,
an address), else ketch starts a local Ray instance. Paths are the same on every node (working and volume
directories under KETCH_HOME, the Python environment), as with a shared filesystem; an actor belongs to
ketch's Ray job, so a restarted ketch finds its containers gone (ContainerStatusUnknown, then restarted by
policy) rather than adopting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable

from ketch.kinds.resources import GPU
from ketch.kubelet.base import CannotRun, Started
from ketch.kubelet.local import LocalKubelet
from ketch.kubelet.network import PodNet
from ketch.machinery.context import Context

log = logging.getLogger(__name__)
_HANDLES = itertools.count(1 << 30)  # container handles stand in for pids: never a pid on this host


class ContainerProcess:
    """Runs a container's process on the node Ray chose (an async Ray actor). An actor whose container
    ended and that holds no resources is kept for the next container: a Ray worker takes about a second
    to start, far more than a small container's whole run."""

    def __init__(self) -> None:
        import ray

        self.node_ip = ray.util.get_node_ip_address()
        self.proc = None
        self.dir = ""

    async def start(self, argv: list[str], env: dict[str, str], cwd: str, gpus: bool) -> dict:
        import shutil
        import subprocess
        import tempfile

        import ray

        if gpus:
            ids = ",".join(str(g) for g in ray.get_gpu_ids())
            env = {**env, "CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids}
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = tempfile.mkdtemp(prefix="ketch-container-")
        os.makedirs(cwd, exist_ok=True)
        try:
            with open(os.path.join(self.dir, "stdout"), "wb") as out, open(os.path.join(self.dir, "stderr"), "wb") as err:
                self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            self.proc = None
            return {"pid": None, "node": self.node_ip, "error": f"failed to start {argv[0]!r}: {e}"}
        return {"pid": self.proc.pid, "node": self.node_ip, "error": None}

    async def read(self, out_at: int, err_at: int) -> dict:
        """New output since the given offsets, the exit code once ended (None before), resident memory."""
        code = self.proc.poll() if self.proc else -1
        chunks = []
        for name, at in (("stdout", out_at), ("stderr", err_at)):
            with open(os.path.join(self.dir, name), "rb") as f:
                f.seek(at)
                chunks.append(f.read(1 << 20))
        rss = 0
        if code is None:
            import psutil

            with contextlib.suppress(psutil.Error):
                p = psutil.Process(self.proc.pid)
                rss = sum(x.memory_info().rss for x in [p, *p.children(recursive=True)])
        return {"stdout": chunks[0], "stderr": chunks[1], "code": code, "rss": rss}

    async def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def terminate(self, grace: float) -> None:
        await self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.proc and self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.signal(signal.SIGKILL)


class _Container:
    """The kubelet's side of one container on Ray: its actor, where its output goes, how it ended."""

    def __init__(self, actor: object, stdout: int, stderr: int, release: Callable[[object, bool], None]) -> None:
        self.actor = actor
        self.release = release
        self.fds = (os.dup(stdout), os.dup(stderr))  # the caller closes its own descriptors after spawn
        self.offsets = [0, 0]
        self.code: int | None = None
        self.rss = 0
        self.ended = asyncio.get_running_loop().create_future()

    async def pump(self) -> None:
        """Copy output a few times a second until the process has ended and all of it is here."""
        try:
            while True:
                r = await self.actor.read.remote(*self.offsets)  # type: ignore[attr-defined]
                for i, key in enumerate(("stdout", "stderr")):
                    if r[key]:
                        os.write(self.fds[i], r[key])
                        self.offsets[i] += len(r[key])
                self.rss = r["rss"]
                if r["code"] is not None and not r["stdout"] and not r["stderr"]:
                    self.code = r["code"]
                    break
                if r["code"] is None:
                    await asyncio.sleep(0.1)
        except Exception as e:  # noqa: BLE001 - the actor or its node died: the exit status is unknowable
            log.warning("ray kubelet: lost a container's actor: %s", e)
            self.code = None
        finally:
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if not self.ended.done():
                self.ended.set_result(self.code)
            self.release(self.actor, self.code is not None)


class RayKubelet(LocalKubelet):
    kind = "ray"
    local_processes = False  # no warm starts, no kubectl exec: the processes are on Ray's nodes

    def __init__(self, ctx: Context, node_name: str | None = None) -> None:
        super().__init__(ctx, node_name or os.environ.get("KETCH_NODE_NAME") or "ray-cluster")
        self.address = os.environ.get("KETCH_RAY_ADDRESS") or None
        self.containers: dict[int, _Container] = {}
        self._actor_cls = None
        self._capacity_at = 0.0
        self.idle: list[object] = []  # actors holding no resources, kept for the next container
        self.pool_size = int(os.environ.get("KETCH_RAY_POOL") or 8)

    # -- the cluster ----------------------------------------------------------------------------------

    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            kw: dict = {"address": self.address, "namespace": "ketch", "log_to_driver": False, "include_dashboard": False}
            if self.address is None and os.environ.get("KETCH_RAY_NUM_CPUS"):
                kw["num_cpus"] = int(os.environ["KETCH_RAY_NUM_CPUS"])
            ray.init(**kw)
        self._actor_cls = ray.remote(ContainerProcess)

    def capacity(self) -> dict[str, float]:
        """The cluster's resources (asked of Ray at most every 10 s: nodes come and go)."""
        import ray

        if not ray.is_initialized():
            return {"cpu": 0.0, "memory": 0.0, GPU: 0.0, "pods": 0.0}
        if self._capacity is None or time.monotonic() - self._capacity_at > 10:
            res = ray.cluster_resources()
            self._capacity = {"cpu": float(res.get("CPU", 0)), "memory": float(res.get("memory", 0)), GPU: float(res.get("GPU", 0)),
                              "pods": float(os.environ.get("KETCH_NODE_PODS") or 1000)}
            self._capacity_at = time.monotonic()
        return dict(self._capacity)

    def addresses(self) -> list[dict]:
        import ray

        head = next((n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")), "127.0.0.1") if ray.is_initialized() else "127.0.0.1"
        return [{"type": "InternalIP", "address": head}, {"type": "Hostname", "address": self.node_name}]

    def node_labels(self) -> dict[str, str]:
        return {**super().node_labels(), "ray.io/cluster": self.address or "local"}

    async def run(self) -> None:
        await asyncio.to_thread(self._connect)
        self._capacity = None
        await super().run()

    async def shutdown(self) -> None:
        await super().shutdown()
        for a in self.idle:
            self._drop(a)
        self.idle.clear()
        import ray

        if ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)

    # -- process supervision through actors ------------------------------------------------------------

    async def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, preload: tuple[str, ...] = (),
                    requests: dict[str, float] | None = None, exit_file: str | None = None,
                    stdin: int | None = None, net: PodNet | None = None) -> Started:
        req = requests or {}
        opts = {"num_cpus": float(req.get("cpu", 0)), "num_gpus": float(req.get(GPU, 0))}
        if req.get("memory"):
            opts["memory"] = float(req["memory"])
        free = not any(opts.values())  # holds nothing in Ray's accounting: may be pooled
        actor = self.idle.pop() if free and self.idle else self._actor_cls.options(**opts).remote()  # type: ignore[union-attr]
        try:
            info = await actor.start.remote(argv, env, cwd, bool(opts["num_gpus"]))
        except Exception as e:  # noqa: BLE001 - the actor could not be created on any node
            self._drop(actor)
            raise CannotRun(f"ray could not start the container: {e}") from e
        if info["error"]:
            self._release(actor, free)
            raise CannotRun(info["error"])
        handle = next(_HANDLES)
        c = _Container(actor, stdout, stderr, lambda a, ok: self._release(a, free and ok))
        self.containers[handle] = c
        asyncio.ensure_future(c.pump())
        log.debug("ray kubelet: %s started on %s as pid %s", argv[0], info["node"], info["pid"])

        async def wait() -> int | None:
            try:
                return await asyncio.shield(c.ended)
            finally:
                if c.ended.done():
                    self.containers.pop(handle, None)

        return Started(handle, time.time(), wait)

    def _release(self, actor: object, reusable: bool) -> None:
        if reusable and len(self.idle) < self.pool_size:
            self.idle.append(actor)
        else:
            self._drop(actor)

    @staticmethod
    def _drop(actor: object) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(actor)

    def alive(self, pid: int, create_time: float | None) -> bool:
        c = self.containers.get(pid)
        return c is not None and not c.ended.done()

    async def terminate(self, pid: int, create_time: float | None, grace: float, exited: asyncio.Event | None = None) -> None:
        c = self.containers.get(pid)
        if c is None or c.ended.done():
            return
        with contextlib.suppress(Exception):
            await c.actor.terminate.remote(grace)  # type: ignore[attr-defined]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(c.ended), 5.0)

    def kill(self, pid: int) -> None:
        c = self.containers.get(pid)
        if c is not None and not c.ended.done():
            c.actor.signal.remote(int(signal.SIGKILL))  # type: ignore[attr-defined]

    def memory(self, pid: int) -> int:
        c = self.containers.get(pid)
        return c.rss if c is not None else 0
