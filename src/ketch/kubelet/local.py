"""The local kubelet: every container of a Pod is a process on this machine.

It registers the machine as a Node, schedules Pods onto it (nodeName, nodeSelector, requests against
allocatable; the rest wait Pending/Unschedulable), and runs each admitted Pod in a ``PodWorker``
(lifecycle.py) whose processes it starts and supervises here: each container a session leader, ended
as a process tree. On start it adopts what a previous ketch left (state files with pid + start time);
on stop it ends its pods' processes (or leaves them, by policy).

Policies (documented in docs/kubelet.md): images pick a Python environment (images.py); volumes are
directories and mountPaths are rewritten (volumes.py); logs are files (logs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import psutil

from ketch.kinds.meta import now
from ketch.kinds.resources import GPU, TRACKED, pod_requests, qos_class
from ketch.kubelet import containers, exits, process, volumes
from ketch.kubelet.base import NODE, POD, CannotRun, Kubelet, Started
from ketch.kubelet.env import ConfigError
from ketch.kubelet.images import find_executable
from ketch.kubelet.lifecycle import PodWorker
from ketch.kubelet.logs import Shipper, container_log_dir
from ketch.kubelet.network import PodNet
from ketch.kubelet.network import select as select_network
from ketch.kubelet.warm import ExecFailed, WarmStarts
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError

log = logging.getLogger(__name__)


def _gpu_count() -> int:
    if os.environ.get("KETCH_NODE_GPUS"):
        return int(os.environ["KETCH_NODE_GPUS"])
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            return 0
    return 0


class LocalKubelet(Kubelet):
    kind = "local"
    local_processes = True

    def __init__(self, ctx: Context, node_name: str | None = None) -> None:
        super().__init__(ctx, node_name or ctx.settings.node_name or os.environ.get("KETCH_NODE_NAME") or _hostname())
        self.workers: dict[str, PodWorker] = {}  # by uid
        self.pending: dict[str, dict] = {}  # uid -> pod waiting for room
        self._capacity: dict[str, float] | None = None
        self.leave_running = os.environ.get("KETCH_KUBELET_ON_EXIT", "kill") == "leave"
        self.closing = False  # set by shutdown: no Pod worker starts after it
        self.network = select_network(ctx.settings)
        self.warm = WarmStarts(Path(self.home) / "kubelet", enabled=self.local_processes and os.environ.get("KETCH_WARM_START", "1") != "0",
                               supervise=self.local_processes and os.environ.get("KETCH_SUPERVISE", "1") != "0")

    # -- node ------------------------------------------------------------------------------------------

    def capacity(self) -> dict[str, float]:
        if self._capacity is None:
            from ketch.kinds.resources import parse_quantity

            self._capacity = {
                "cpu": parse_quantity(os.environ.get("KETCH_NODE_CPU") or str(os.cpu_count() or 1)),
                "memory": parse_quantity(os.environ.get("KETCH_NODE_MEMORY") or str(psutil.virtual_memory().total)),
                GPU: float(_gpu_count()),
                "pods": float(os.environ.get("KETCH_NODE_PODS") or 1000),
                "ephemeral-storage": float(psutil.disk_usage(str(self.home)).total),
            }
        return dict(self._capacity)

    def log_dir(self, namespace: str, pod: str, container: str) -> Path:
        return container_log_dir(self.home, namespace, pod, container)

    # -- process supervision: local processes, each a session leader ----------------------------------

    async def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, preload: tuple[str, ...] = (),
                    requests: dict[str, float] | None = None, exit_file: str | None = None,
                    stdin: int | None = None, net: PodNet | None = None, pod_uid: str | None = None) -> Started:
        """Fork it from a warm zygote, or exec it through the supervisor (both record its exit status in
        ``exit_file``, beyond ketch's life); exec it directly only when neither can be had, or when the
        container reads a stdin of its own (``stdin: true``, for ``kubectl attach -i``), which the
        supervisor does not pass on."""
        exe = find_executable(argv[0], env.get("PATH", ""), cwd)
        if exe is None:
            raise CannotRun(f'exec: "{argv[0]}": executable file not found in $PATH')
        started = None
        into = {"netns": net.path, "hosts": net.hosts, "hostname": net.hostname} if net is not None and net.netns else None
        if stdin is None:
            if preload:
                started = await _not_lost(self.warm.spawn(preload, [exe, *argv[1:]], env, cwd, stdout, stderr, exit_file, into))
            if started is None:
                try:
                    started = await _not_lost(self.warm.exec([exe, *argv[1:]], env, cwd, stdout, stderr, exit_file, into))
                except ExecFailed as e:
                    raise CannotRun(f"failed to start {argv[0]!r}: {e}") from e
        if started is not None:
            pid, ended = started
            return Started(pid, process.create_time(pid), lambda: asyncio.shield(ended))
        if net is not None and net.netns:  # no supervisor: `ip netns exec` enters the namespace, then execs it
            argv = net.wrap([exe, *argv[1:]])
            exe = argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, *argv[1:], stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin, stdout=stdout, stderr=stderr,
                cwd=cwd, env=env, start_new_session=True,
            )
        except OSError as e:
            raise CannotRun(f"failed to start {argv[0]!r}: {e}") from e
        return Started(proc.pid, process.create_time(proc.pid), proc.wait)

    def alive(self, pid: int, create_time: float | None) -> bool:
        return process.alive(pid, create_time)

    async def terminate(self, pid: int, create_time: float | None, grace: float, exited: asyncio.Event | None = None) -> None:
        await process.terminate(pid, create_time, grace, exited)

    def kill(self, pid: int) -> None:
        process.signal_tree(pid, signal.SIGKILL)

    def memory(self, pid: int) -> int:
        return process.rss(pid)

    # -- admission -------------------------------------------------------------------------------------

    def used(self) -> dict[str, float]:
        tot = {k: 0.0 for k in TRACKED}
        tot["pods"] = 0.0
        for w in self.workers.values():
            held = w.holds()
            if not w.done:
                tot["pods"] += 1
            for k, v in held.items():
                tot[k] = tot.get(k, 0.0) + v
        return tot

    def _free_gpus(self, n: int) -> list[int]:
        taken = {g for w in self.workers.values() if not w.done for g in w.gpus}
        free = [i for i in range(int(self.capacity().get(GPU, 0))) if i not in taken]
        return free[:n]

    def consider(self, pod: dict) -> None:
        """A pod without a worker: admit it (bind + start), leave it for another node, or hold it Pending."""
        md, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        uid = md["uid"]
        if md.get("deletionTimestamp") or st.get("phase") in ("Succeeded", "Failed"):
            self.pending.pop(uid, None)
            return
        why = self.selects(pod)
        if why is not None:
            if not spec.get("nodeName"):
                self._unschedulable(pod, why)
                self.pending[uid] = pod
            return
        why = self.fits(pod, self.used())
        if why is not None:
            self._unschedulable(pod, why)
            self.pending[uid] = pod
            return
        self.pending.pop(uid, None)
        scheduled = False
        if not spec.get("nodeName"):
            try:
                pod = self.client.patch(POD, md.get("namespace", ""), md["name"], {"spec": {"nodeName": self.node_name}})
            except StatusError as e:
                if e.code == 404:
                    return
                raise
            scheduled = True
        w = PodWorker(self, pod)
        ngpu = int(pod_requests(pod).get(GPU, 0))
        w.gpus = self._free_gpus(ngpu)
        self.start_worker(w)
        if scheduled:  # recorded once the worker is on its way (it runs first, up to its container's exec)
            msg = f"Successfully assigned {md.get('namespace')}/{md['name']} to {self.node_name}"
            asyncio.get_running_loop().call_soon(self.client.event, pod, "Normal", "Scheduled", msg, "default-scheduler")

    def start_worker(self, w: PodWorker) -> None:
        if self.closing:  # ketch is stopping: a Pod bound meanwhile starts under the next kubelet
            return
        self.workers[w.uid] = w
        w.task = asyncio.create_task(self._guard(w), name=f"pod-{w.ns}-{w.name}")

    async def _guard(self, w: PodWorker) -> None:
        try:
            while True:
                try:
                    await w.run()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:  # level-triggered: look again shortly, as a controller would requeue
                    log.exception("pod worker %s/%s failed; retrying", w.ns, w.name)
                    await asyncio.sleep(1.0)
        finally:
            if w.deleted or w.pod["metadata"].get("deletionTimestamp"):
                self.workers.pop(w.uid, None)
            self.pod_finished(w)

    def _unschedulable(self, pod: dict, msg: str) -> None:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("message") == msg:
                return
        st = {
            "phase": "Pending",
            "qosClass": qos_class(pod),
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastProbeTime": None, "lastTransitionTime": now()}],
        }
        with contextlib.suppress(StatusError):
            self.client.patch_status(pod, st)
            self.client.event(pod, "Warning", "FailedScheduling", msg, "default-scheduler")

    def pod_finished(self, w: PodWorker) -> None:
        """Resources freed: look at the pods waiting for room, oldest first."""
        if not self.pending:
            return
        for uid, pod in sorted(self.pending.items(), key=lambda kv: kv[1]["metadata"].get("creationTimestamp", "")):
            cur = self.client.get(POD, pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
            if cur is None or cur["metadata"]["uid"] != uid:
                self.pending.pop(uid, None)
                continue
            self.consider(cur)

    # -- the loop --------------------------------------------------------------------------------------

    def on_event(self, typ: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if typ == "DELETED":
            self.pending.pop(uid, None)
            if w is not None:
                w.notify(None)
                if w.task is None or w.task.done():
                    w.cleanup()
                    self.workers.pop(uid, None)
            return
        if w is not None:
            if w.task is not None and w.task.done():
                return
            w.notify(pod)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not self.owns_node(node):
            return
        self.consider(pod)

    def owns_node(self, name: str) -> bool:
        """Whether Pods bound to Node ``name`` are this kubelet's to run."""
        return name == self.node_name

    async def run(self) -> None:
        self.register_node()
        hb = asyncio.create_task(self.heartbeat())
        shipping = asyncio.create_task(self.ship_logs())
        uncordon = asyncio.create_task(self.watch_uncordon())
        try:
            self.warm.start_supervisor()
            await self.network.start()
            self.recover()
            self.network.sweep(set(self.workers))  # namespaces of Pods deleted while ketch was down
            rd = self.ctx.api.rd(*POD)
            while True:
                async for typ, obj in self.ctx.api.watch(rd):
                    if typ == "ERROR":
                        break
                    try:
                        self.on_event(typ, obj)
                    except Exception:
                        log.exception("kubelet: handling %s of pod %s failed", typ, obj["metadata"].get("name"))
                await asyncio.sleep(0.1)
        finally:
            hb.cancel()
            shipping.cancel()
            uncordon.cancel()

    async def watch_uncordon(self) -> None:
        """When the Node becomes schedulable again (``kubectl uncordon``), the Pods held Pending for it are
        considered again."""
        rd = self.ctx.api.rd(*NODE)
        while True:
            try:
                async for typ, node in self.ctx.api.watch(rd, field_selector=f"metadata.name={self.node_name}"):
                    if typ == "MODIFIED" and not (node.get("spec") or {}).get("unschedulable") and self.pending:
                        self.pod_finished(None)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kubelet: watching node %s failed", self.node_name)
            await asyncio.sleep(1.0)

    async def ship_logs(self, every: float = 0.2) -> None:
        """Move running containers' new output into their stamped logs, a few times a second."""
        while True:
            await asyncio.sleep(every)
            for w in list(self.workers.values()):
                for name, ship in list(w.shippers.items()):
                    cs = w.cs.get(name)
                    if cs is not None and cs.running and ship.restart == cs.run:
                        try:
                            ship.ship()
                        except OSError:
                            log.debug("shipping logs of %s/%s failed", w.ns, w.name, exc_info=True)

    def recover(self) -> None:
        """Adopt what a previous ketch left: live processes whose pid and start time match a pod record
        keep running; dead ones are reported (and restarted per restartPolicy); processes of pods that
        no longer exist are ended."""
        root = self.home / "kubelet" / "pods"
        if not root.is_dir():
            return
        for d in root.iterdir():
            f = d / "state.json"
            try:
                data = json.loads(f.read_text())
            except (FileNotFoundError, ValueError):
                volumes.remove_pod_dir(d)
                continue
            pod = self.client.get(POD, data["namespace"], data["name"])
            if pod is None or pod["metadata"]["uid"] != data["uid"]:
                for c in (data.get("containers") or {}).values():
                    if c.get("pid") and self.alive(c["pid"], c.get("create_time")):
                        self.kill(c["pid"])
                for pid in exits.unfinished(d):  # started by the supervisor, not yet in the record
                    self.kill(pid)
                volumes.remove_pod_dir(d)
                if pod is None:
                    import shutil

                    shutil.rmtree(self.home / "logs" / data["namespace"] / data["name"], ignore_errors=True)
                continue
            w = PodWorker(self, pod)
            w.restore(data)
            for cs in w.cs.values():
                w.adopt_unrecorded_start(cs)
                if cs.running:
                    w.shippers[cs.name] = Shipper(self.log_dir(w.ns, w.name, cs.name), cs.run)
                    w.exited[cs.name] = asyncio.Event()
                    # a living process is watched; one that ended is reported with its supervisor's record
                    w.waiters[cs.name] = asyncio.create_task(w._wait_adopted(cs))
                    if cs.pid and self.alive(cs.pid, cs.create_time):
                        log.info("kubelet: adopted %s/%s container %s (pid %s)", w.ns, w.name, cs.name, cs.pid)
                        if any(w.spec_of(cs.name).get(p) for p in ("readinessProbe", "livenessProbe", "startupProbe")):
                            try:
                                _, env, cwd = w.build(w.spec_of(cs.name))
                                w._start_probes(cs, w.spec_of(cs.name), env, cwd)
                            except Exception:
                                log.exception("kubelet: could not restart probes of %s/%s", w.ns, w.name)
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                w.done = True
            with contextlib.suppress(ConfigError, Exception):
                w.vols = volumes.prepare(pod, w.dir, self.home, w.lookup, self.allocatable(), self.mint_token)
            self.start_worker(w)
        containers.sweep(self.home, set(self.workers))  # OCI containers of pods deleted while ketch was down

    async def shutdown(self) -> None:
        """ketch is stopping. Default: end every pod's processes (SIGTERM, a short grace, SIGKILL) and
        record how they ended; with KETCH_KUBELET_ON_EXIT=leave they keep running for the next ketch."""
        # No new workers from here: while this awaits, the Pod watch still delivers, and a worker started
        # now would be missing from the list below, its processes left running with nobody to end them.
        self.closing = True
        workers = list(self.workers.values())
        log.info("kubelet: stopping %d pod workers", len(workers))
        await asyncio.gather(*(cancel_and_wait(w.task) for w in workers if w.task is not None))
        if self.leave_running:
            self._leave(workers)
            return
        grace = float(os.environ.get("KETCH_KUBELET_STOP_GRACE") or 3)
        await asyncio.gather(*(w.kill_all(min(grace, float((w.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)))) for w in workers), return_exceptions=True)
        for w in workers:
            with contextlib.suppress(Exception):
                if not w.deleted:
                    w.write_status()
                    w.save()
        self.warm.close()
        if self.log_archive is not None:
            await self.log_archive.flush()  # the runs just ended are archived before ketch goes
        if not self.leave_running:
            for w in workers:
                if w.net is not None and w.net.netns:
                    self.network.teardown(w.uid)
        await self.network.stop()
        log.info("kubelet: stopped")


    def _leave(self, workers: list[PodWorker]) -> None:
        """Stop watching ``workers``' processes without ending them: their state is saved for whichever
        kubelet adopts them next (docs/reliability.md)."""
        for w in workers:
            for s in w.shippers.values():
                with contextlib.suppress(Exception):
                    s.ship()
            w.save()
        self.warm.close(wait=0)  # the zygotes stay while their containers run, to record how they end

    async def stand_down(self) -> None:
        """Another ketch process leads now and its kubelet adopts this machine's Pods, as a restarted ketch
        does: leave every process running, saved, and forget them here (if this process leads again it
        adopts them afresh)."""
        workers = list(self.workers.values())
        log.info("kubelet: standing down; leaving %d pods' processes to the new leader", len(workers))
        await asyncio.gather(*(cancel_and_wait(w.task) for w in workers if w.task is not None))
        watchers = [t for w in workers for t in (*w.waiters.values(), *w.probers.values())]
        for t in watchers:
            t.cancel()  # before the zygotes are hung up on, which would read as the processes ending
        await asyncio.gather(*watchers, return_exceptions=True)
        self._leave(workers)
        self.workers.clear()
        self.pending.clear()


async def cancel_and_wait(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait for it, cancelling again if it swallowed the cancellation (Python 3.11's
    wait_for loses a cancel that races with its inner future completing)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def _hostname() -> str:
    h = socket.gethostname().lower().split(".")[0]
    import re

    h = re.sub(r"[^a-z0-9-]", "-", h).strip("-") or "ketch"
    return h[:63]


__all__ = ["LocalKubelet", "PodWorker", "NODE"]


async def _not_lost(start: Coroutine[Any, Any, tuple[int, Any] | None]) -> tuple[int, Any] | None:
    """Await a zygote's start of a container so that cancelling the wait cannot leak the process: a Pod
    worker cancelled (ketch stopping, the Pod deleted) after the zygote forked but before its answer came
    back would never record the pid, so nothing would end that process, nor could a later ketch adopt it.
    The start runs to its end regardless; if the waiter is gone by then, the process is killed."""
    fut = asyncio.ensure_future(start)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        def reap(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is None and f.result() is not None:
                process.signal_tree(f.result()[0], signal.SIGKILL)

        fut.add_done_callback(reap)
        raise
