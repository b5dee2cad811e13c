"""The local kubelet: every container of a Pod is a process on this machine.

One ``PodWorker`` task per Pod owns its lifecycle and is level-triggered: each pass looks at the Pod
object and at its processes, starts what should run (init containers in order, then the containers),
restarts per restartPolicy with CrashLoopBackOff, enforces memory limits and activeDeadlineSeconds, and
writes the status it observes. What it must remember across a restart of ketch (pids with their start
times, restart counts, states) lives in ``KETCH_HOME/kubelet/pods/<uid>/state.json``; a restarted
ketch adopts live processes and reports dead ones.

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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from ketch.kinds.meta import now, parse_time
from ketch.kubelet import process, volumes
from ketch.kubelet.base import NODE, POD, CannotRun, Kubelet, Started
from ketch.kubelet.env import ConfigError, container_env, expand
from ketch.kubelet.images import Images, find_executable
from ketch.kubelet.logs import Shipper, container_log_dir
from ketch.kubelet.probes import run_probe
from ketch.kubelet.resources import GPU, TRACKED, memory_limit, pod_requests, qos_class
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError

log = logging.getLogger(__name__)
MAX_BACKOFF = 300.0
_KINDS = {"ConfigMap": ("v1", "ConfigMap"), "Secret": ("v1", "Secret"), "PersistentVolumeClaim": ("v1", "PersistentVolumeClaim")}


def backoff_base() -> float:
    return float(os.environ.get("KETCH_BACKOFF_BASE_SECONDS") or 10.0)


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


@dataclass
class CState:
    """One container's runtime record: what the status reports and what a restarted ketch needs."""

    name: str
    init: bool = False
    restart_count: int = 0
    run: int = -1  # index of the current/last run's log file
    pid: int | None = None
    create_time: float | None = None
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing" if False else "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    next_start: float = 0.0  # wall clock time before which a restart waits (CrashLoopBackOff)
    crash_streak: int = 0
    oom: bool = False
    killed_for: str = ""  # liveness / startup probe failure: restart even with OnFailure

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> dict | None:
        return self.state.get("terminated")


class PodWorker:
    def __init__(self, kubelet: LocalKubelet, pod: dict) -> None:
        self.k = kubelet
        self.pod = pod
        md = pod["metadata"]
        self.uid, self.ns, self.name = md["uid"], md.get("namespace", "default"), md["name"]
        self.dir = kubelet.home / "kubelet" / "pods" / self.uid
        spec = pod.get("spec") or {}
        self.cs: dict[str, CState] = {c["name"]: CState(c["name"], init=True) for c in spec.get("initContainers") or []}
        self.cs.update({c["name"]: CState(c["name"]) for c in spec.get("containers") or []})
        self.wake = asyncio.Event()
        self.exited: dict[str, asyncio.Event] = {}
        self.waiters: dict[str, asyncio.Task] = {}
        self.probers: dict[str, asyncio.Task] = {}
        self.shippers: dict[str, Shipper] = {}
        self.vols: dict[str, str] | None = None
        self.start_time: str | None = None
        self.failed: tuple[str, str] | None = None  # (reason, message) of a pod-level failure
        self.config_error: dict[str, tuple[str, str]] = {}
        self.gpus: list[int] = []
        self.task: asyncio.Task | None = None
        self.last_status: dict | None = None
        self.deleted = False
        self.done = False  # terminal: holds no resources any more
        self._dir_made = False

    # -- persistence -----------------------------------------------------------------------------------

    def save(self) -> None:
        if not self._dir_made:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._dir_made = True
        data = {
            "namespace": self.ns, "name": self.name, "uid": self.uid, "startTime": self.start_time,
            "failed": self.failed, "gpus": self.gpus, "containers": {n: asdict(c) for n, c in self.cs.items()},
        }
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.dir / "state.json")

    def restore(self, data: dict) -> None:
        self.start_time = data.get("startTime")
        self.failed = tuple(data["failed"]) if data.get("failed") else None  # type: ignore[assignment]
        self.gpus = list(data.get("gpus") or [])
        for n, d in (data.get("containers") or {}).items():
            if n in self.cs:
                self.cs[n] = CState(**d)

    # -- helpers ---------------------------------------------------------------------------------------

    def spec_of(self, name: str) -> dict:
        spec = self.pod.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if c["name"] == name:
                return c
        return {}

    @property
    def policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy") or "Always"

    def notify(self, pod: dict | None) -> None:
        if pod is None:
            self.deleted = True
        else:
            self.pod = pod
        self.wake.set()

    def lookup(self, kind: str, ns: str, name: str) -> dict | None:
        return self.k.client.get(_KINDS[kind], ns, name)

    # -- starting a container ----------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_") or k == "KETCH_BACKOFF_BASE_SECONDS"}
        env.update({
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.k.ctx.settings.port),
            "KETCH_SERVER": self.k.ctx.settings.url,
            "KETCH_POD_NAME": self.name, "KETCH_POD_NAMESPACE": self.ns, "KETCH_POD_UID": self.uid,
            "KUBECONFIG": self.k.kubeconfig(self.ns),
        })
        return env

    def build(self, c: dict) -> tuple[list[str], dict[str, str], str]:
        """argv, environment and working directory of container ``c`` (ConfigError if it cannot be built)."""
        image = self.k.images.resolve(c.get("image") or "")
        base = self._base_env()
        base.update(image.env)
        base["PATH"] = os.pathsep.join([*image.path_prefix, base.get("PATH", os.defpath)])
        base["PYTHONUNBUFFERED"] = base.get("PYTHONUNBUFFERED", "1")
        if self.gpus or pod_requests(self.pod).get(GPU):
            base["CUDA_VISIBLE_DEVICES"] = base["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        mounts = volumes.mounts_for(c, self.vols or {})
        rw = volumes.rewriter(mounts)
        for m in c.get("volumeMounts") or []:
            if m.get("name") in (self.vols or {}):
                base[volumes.env_name(m["name"])] = mounts.get(m["mountPath"].rstrip("/") or "/", "")
        env = container_env(self.pod, c, base, self.lookup, self.k.allocatable())
        env = {k: rw(v) for k, v in env.items()}
        command = list(c.get("command") or image.entrypoint)
        args = list(c.get("args") or [])
        if not command:
            command, args = args, []
        argv = [rw(expand(x, env)) for x in command + args]
        if not argv:
            raise CannotRun(f'no command specified and image "{c.get("image")}" has no entrypoint known to ketch (map it in images.yaml)')
        cwd = rw(c["workingDir"]) if c.get("workingDir") else str(self.dir / "work")
        os.makedirs(cwd, exist_ok=True)
        return argv, env, cwd

    async def start(self, cs: CState) -> None:
        c = self.spec_of(cs.name)
        cannot_run = None
        try:
            argv, env, cwd = self.build(c)
        except CannotRun as e:
            cannot_run = str(e)
        except ConfigError as e:
            cs.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            cs.next_start = time.time() + 1.0
            return
        except Exception as e:  # a bad mount, an unwritable workingDir: the container cannot be created
            cs.state = {"waiting": {"reason": "CreateContainerError", "message": str(e)}}
            cs.next_start = time.time() + 1.0
            return
        if cs.run >= 0:
            cs.restart_count += 1
            cs.last_state = {"terminated": cs.terminated} if cs.terminated else cs.last_state
        cs.run += 1
        ship = Shipper(container_log_dir(self.k.home, self.ns, self.name, cs.name), cs.run)
        self.shippers[cs.name] = ship
        if cannot_run is not None:
            self._start_failed(cs, ship, cannot_run)
            return
        fds = ship.open_raw()
        try:
            started = await self.k.spawn(argv, env, cwd, fds["stdout"], fds["stderr"])
        except CannotRun as e:
            self._start_failed(cs, ship, str(e))
            return
        finally:
            for fd in fds.values():
                os.close(fd)
        cs.pid = started.pid
        cs.create_time = started.create_time
        cs.state = {"running": {"startedAt": now()}}
        cs.oom = False
        cs.killed_for = ""
        cs.ready = False
        cs.started = not c.get("startupProbe")
        self.exited[cs.name] = asyncio.Event()
        self.waiters[cs.name] = asyncio.create_task(self._wait_child(cs, started))
        self._start_probes(cs, c, env, cwd)
        self.save()

    def _start_failed(self, cs: CState, ship: Shipper, msg: str) -> None:
        ship.dir.mkdir(parents=True, exist_ok=True)
        ship.log.touch()
        ship.ship(final=True)
        ts = now()
        cs.state = {"terminated": {"exitCode": 128, "reason": "ContainerCannotRun", "message": msg, "startedAt": ts, "finishedAt": ts}}
        self._after_exit(cs, failed=True)
        self.save()

    async def _wait_child(self, cs: CState, started: Started) -> None:
        code = await started.wait()
        self._exited(cs, code)

    async def _wait_adopted(self, cs: CState) -> None:
        pid, ct = cs.pid, cs.create_time
        while pid is not None and self.k.alive(pid, ct):
            await asyncio.sleep(0.2)
        self._exited(cs, None)

    def _exited(self, cs: CState, code: int | None) -> None:
        """Record a process's end: exit code (128+signal when signalled), reason, finishedAt."""
        started = (cs.state.get("running") or {}).get("startedAt")
        ship = self.shippers.get(cs.name)
        if ship is not None:
            ship.ship(final=True)
        if cs.oom:
            term = {"exitCode": 137, "reason": "OOMKilled", "message": "memory limit exceeded"}
        elif code is None:
            term = {"exitCode": 137, "reason": "ContainerStatusUnknown", "message": "The container exited while ketch was not its parent; its exit status is unknown"}
        else:
            ec = code if code >= 0 else 128 - code
            term = {"exitCode": ec, "reason": "Completed" if ec == 0 else "Error"}
            if code < 0:
                term["signal"] = -code
        term.update({"startedAt": started or now(), "finishedAt": now(), "containerID": f"ketch://{cs.pid}"})
        if self.cs.get(cs.name) is cs:
            cs.state = {"terminated": term}
            cs.pid = None
            cs.ready = False
            self._after_exit(cs, failed=term["exitCode"] != 0)
            self.save()
        ev = self.exited.get(cs.name)
        if ev is not None:
            ev.set()
        pt = self.probers.pop(cs.name, None)
        if pt is not None:
            pt.cancel()
        self.wake.set()

    def _after_exit(self, cs: CState, failed: bool) -> None:
        """Schedule the restart, if any, with CrashLoopBackOff: base doubling per crash, capped at 5min;
        a run that lasted 10 minutes resets the streak, as in Kubernetes."""
        term = cs.terminated or {}
        st, fin = parse_time(term.get("startedAt")), parse_time(term.get("finishedAt"))
        if st and fin and (fin - st).total_seconds() > 600:
            cs.crash_streak = 0
        delay = min(MAX_BACKOFF, backoff_base() * (2**cs.crash_streak))
        cs.crash_streak += 1
        cs.next_start = time.time() + delay
        if failed and self._should_restart(cs):
            self.k.client.event(self.pod, "Warning", "BackOff", f"Back-off restarting failed container {cs.name} in pod {self.name}_{self.ns}({self.uid})", "kubelet")

    def _should_restart(self, cs: CState) -> bool:
        term = cs.terminated
        if term is None:
            return False
        if cs.init:
            return term.get("exitCode") != 0 and self.policy != "Never"
        if self.policy == "Always":
            return True
        if self.policy == "OnFailure":
            return term.get("exitCode") != 0 or bool(cs.killed_for)
        return False

    # -- probes ----------------------------------------------------------------------------------------

    def _start_probes(self, cs: CState, c: dict, env: dict, cwd: str) -> None:
        if cs.init or not any(c.get(p) for p in ("readinessProbe", "livenessProbe", "startupProbe")):
            cs.ready = not cs.init
            return
        self.probers[cs.name] = asyncio.create_task(self._probe_loop(cs, c, env, cwd))

    async def _probe_loop(self, cs: CState, c: dict, env: dict, cwd: str) -> None:
        start = time.monotonic()
        counts = {p: [0, 0] for p in ("startupProbe", "readinessProbe", "livenessProbe")}  # successes, failures
        due = {p: start + float((c.get(p) or {}).get("initialDelaySeconds") or 0) for p in counts}
        while cs.running:
            t = time.monotonic()
            for p in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c.get(p)
                if not pr or due[p] > t or (p != "startupProbe" and not cs.started) or (p == "startupProbe" and cs.started):
                    continue
                due[p] = t + float(pr.get("periodSeconds") or 10)
                ok, msg = await run_probe(pr, c, env, cwd)
                if not cs.running:
                    return
                s, f = counts[p]
                counts[p] = [s + 1, 0] if ok else [0, f + 1]
                succ_need = int(pr.get("successThreshold") or 1)
                fail_need = int(pr.get("failureThreshold") or 3)
                if p == "startupProbe":
                    if ok and counts[p][0] >= 1:
                        cs.started = True
                        self.wake.set()
                    elif counts[p][1] >= fail_need:
                        await self._probe_kill(cs, "startup", msg, pr)
                        return
                elif p == "livenessProbe":
                    if not ok and counts[p][1] >= fail_need:
                        await self._probe_kill(cs, "liveness", msg, pr)
                        return
                else:
                    ready = cs.ready
                    if ok and counts[p][0] >= succ_need:
                        ready = True
                    elif not ok and counts[p][1] >= fail_need:
                        ready = False
                    if ready != cs.ready:
                        cs.ready = ready
                        self.wake.set()
                        if not ok:
                            self.k.client.event(self.pod, "Warning", "Unhealthy", f"Readiness probe failed: {msg}", "kubelet")
            if not c.get("readinessProbe") and cs.started and not cs.ready:
                cs.ready = True
                self.wake.set()
            nxt = min((due[p] for p in counts if c.get(p)), default=t + 1)
            await asyncio.sleep(max(0.01, min(nxt - time.monotonic(), 1.0)))

    async def _probe_kill(self, cs: CState, which: str, msg: str, probe: dict) -> None:
        self.k.client.event(self.pod, "Warning", "Unhealthy", f"{which.capitalize()} probe failed: {msg}", "kubelet")
        self.k.client.event(self.pod, "Normal", "Killing", f"Container {cs.name} failed {which} probe, will be restarted", "kubelet")
        cs.killed_for = which
        grace = probe.get("terminationGracePeriodSeconds", (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        if cs.pid:
            await self.k.terminate(cs.pid, cs.create_time, float(grace), self.exited.get(cs.name))

    # -- the loop --------------------------------------------------------------------------------------

    async def kill_all(self, grace: float) -> None:
        live = [cs for cs in self.cs.values() if cs.running and cs.pid]
        await asyncio.gather(*(self.k.terminate(cs.pid, cs.create_time, grace, self.exited.get(cs.name)) for cs in live))  # type: ignore[arg-type]
        for cs in live:
            w = self.waiters.get(cs.name)
            if w is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(w), 5)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            for t in list(self.probers.values()):
                t.cancel()

    async def _run(self) -> None:
        if self.start_time is None:
            self.start_time = now()
        while True:
            self.wake.clear()
            md = self.pod["metadata"]
            if self.deleted:
                await self.kill_all(0)
                self.cleanup()
                return
            if md.get("deletionTimestamp"):
                if any(cs.running for cs in self.cs.values()):
                    self.k.client.event(self.pod, "Normal", "Killing", "Stopping containers " + ", ".join(n for n, cs in self.cs.items() if cs.running), "kubelet")
                await self.kill_all(float(md.get("deletionGracePeriodSeconds") or 0))
                self.done = True
                self.write_status()
                self.cleanup()
                with contextlib.suppress(StatusError):
                    self.k.client.delete(POD, self.ns, self.name, grace=0)
                self.k.pod_finished(self)
                return
            if not self.done:
                await self.step()
            self.write_status()
            if self.phase() in ("Succeeded", "Failed") and not self.done:
                self.done = True
                await self.kill_all(0)
                for t in list(self.probers.values()):
                    t.cancel()
                self.k.pod_finished(self)
                self.write_status()
            timeout = self.next_wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    def next_wake(self) -> float:
        if self.done:
            return 3600.0
        t = 5.0
        if any(cs.running for cs in self.cs.values()) and any(memory_limit(self.spec_of(n)) for n in self.cs):
            t = 0.25
        nows = time.time()
        for cs in self.cs.values():
            if cs.terminated is not None or "waiting" in cs.state:
                if cs.next_start > nows:
                    t = min(t, cs.next_start - nows + 0.005)
        ads = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        st = parse_time(self.start_time)
        if ads is not None and st is not None:
            left = st.timestamp() + float(ads) - nows
            t = min(t, max(left, 0.01))
        return max(t, 0.01)

    async def step(self) -> None:
        spec = self.pod.get("spec") or {}
        # activeDeadlineSeconds: the pod fails as a whole
        ads = spec.get("activeDeadlineSeconds")
        st = parse_time(self.start_time)
        if ads is not None and st is not None and time.time() >= st.timestamp() + float(ads):
            self.failed = ("DeadlineExceeded", f"Pod was active on the node longer than the specified deadline ({ads}s)")
            await self.kill_all(float(spec.get("terminationGracePeriodSeconds", 30)))
            self.save()
            return
        if self.vols is None:
            try:
                self.vols = volumes.prepare(self.pod, self.dir, self.k.home, self.lookup, self.k.allocatable())
                self.k.bind_claims(self.pod)
            except ConfigError as e:
                for cs in self.cs.values():
                    cs.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
                self.config_error["volumes"] = ("FailedMount", str(e))
                self.wake_in(1.0)
                return
        # memory limits
        for cs in self.cs.values():
            lim = memory_limit(self.spec_of(cs.name))
            if cs.running and cs.pid and lim and self.k.memory(cs.pid) > lim:
                cs.oom = True
                self.k.kill(cs.pid)
                self.k.client.event(self.pod, "Warning", "OOMKilling", f"Container {cs.name} exceeded its memory limit ({int(lim)} bytes)", "kubelet")
        nowt = time.time()
        for c in spec.get("initContainers") or []:
            cs = self.cs[c["name"]]
            term = cs.terminated
            if term is not None and term.get("exitCode") == 0:
                continue
            if cs.running:
                return
            if term is None or self._should_restart(cs):
                if cs.next_start <= nowt:
                    await self.start(cs)
                elif term is not None:
                    cs.state = cs.state  # keep terminated until restart; status shows backoff
            return
        for c in spec.get("containers") or []:
            cs = self.cs[c["name"]]
            if cs.running:
                continue
            if cs.terminated is None or self._should_restart(cs):
                if cs.next_start <= nowt:
                    await self.start(cs)

    def wake_in(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.wake.set)

    def init_done(self) -> bool:
        return all((cs.terminated or {}).get("exitCode") == 0 for cs in self.cs.values() if cs.init)

    def phase(self) -> str:
        if self.failed:
            return "Failed"
        inits = [cs for cs in self.cs.values() if cs.init]
        mains = [cs for cs in self.cs.values() if not cs.init]
        for cs in inits:
            t = cs.terminated
            if t is not None and t.get("exitCode") != 0 and self.policy == "Never":
                return "Failed"
        if not self.init_done():
            return "Pending"
        if all(cs.terminated is not None for cs in mains):
            if self.policy == "Always":
                return "Running"
            if all(cs.terminated.get("exitCode") == 0 for cs in mains):  # type: ignore[union-attr]
                return "Succeeded"
            if self.policy == "Never":
                return "Failed"
            return "Running"
        if any(cs.running or cs.terminated is not None for cs in mains):
            return "Running"
        return "Pending"

    # -- status ----------------------------------------------------------------------------------------

    def _cstatus(self, cs: CState) -> dict:
        c = self.spec_of(cs.name)
        state = cs.state
        if cs.terminated is not None and self._should_restart(cs) and not self.done and not self.failed:
            waiting_reason = "CrashLoopBackOff"
            if cs.terminated.get("reason") == "ContainerCannotRun":
                waiting_reason = "ContainerCannotRun"
            if cs.next_start > time.time():
                state = {"waiting": {"reason": waiting_reason, "message": f"back-off {cs.next_start - time.time():.1f}s restarting failed container={cs.name} pod={self.name}_{self.ns}({self.uid})" if waiting_reason == "CrashLoopBackOff" else cs.terminated.get("message", "")}}
            last = {"terminated": cs.terminated}
        else:
            last = cs.last_state
        if "waiting" in state and not self.init_done() and not cs.init and state["waiting"].get("reason") == "ContainerCreating":
            state = {"waiting": {"reason": "PodInitializing"}}
        out = {
            "name": cs.name,
            "image": c.get("image", ""),
            "imageID": f"ketch-python://{c.get('image', '')}",
            "ready": bool(cs.ready and cs.running),
            "restartCount": cs.restart_count,
            "started": bool(cs.running and cs.started),
            "state": state,
            "lastState": last,
        }
        if cs.pid or cs.terminated:
            out["containerID"] = f"ketch://{cs.pid or (cs.terminated or {}).get('containerID', 'x').split('//')[-1]}"
        return out

    def status(self) -> dict:
        phase = self.phase()
        spec = self.pod.get("spec") or {}
        ts = now()
        old = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}

        def cond(t: str, ok: bool, reason: str = "", msg: str = "") -> dict:
            s = "True" if ok else "False"
            prev = old.get(t)
            lt = prev["lastTransitionTime"] if prev and prev.get("status") == s and prev.get("lastTransitionTime") else ts
            d = {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": lt}
            if reason:
                d["reason"] = reason
            if msg:
                d["message"] = msg
            return d

        mains = [cs for cs in self.cs.values() if not cs.init]
        ready = bool(mains) and all(cs.ready and cs.running for cs in mains)
        terminal = phase in ("Succeeded", "Failed")
        nr_reason = "PodCompleted" if terminal else "ContainersNotReady"
        nr_msg = "" if terminal else "containers with unready status: [" + " ".join(cs.name for cs in mains if not (cs.ready and cs.running)) + "]"
        init_ok = self.init_done()
        conds = [
            cond("PodReadyToStartContainers", self.vols is not None),
            cond("Initialized", init_ok, "" if init_ok else "ContainersNotInitialized",
                 "" if init_ok else "containers with incomplete status: [" + " ".join(cs.name for cs in self.cs.values() if cs.init and (cs.terminated or {}).get("exitCode") != 0) + "]"),
            cond("Ready", ready, "" if ready else nr_reason, "" if ready else nr_msg),
            cond("ContainersReady", ready, "" if ready else nr_reason, "" if ready else nr_msg),
            cond("PodScheduled", True),
        ]
        st: dict = {
            "phase": phase,
            "conditions": conds,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "qosClass": qos_class(self.pod),
            "containerStatuses": [self._cstatus(cs) for cs in mains],
            "reason": self.failed[0] if self.failed else None,
            "message": self.failed[1] if self.failed else None,
        }
        if spec.get("initContainers"):
            st["initContainerStatuses"] = [self._cstatus(cs) for cs in self.cs.values() if cs.init]
        return st

    def write_status(self) -> None:
        st = self.status()
        cmp = json.dumps(st, sort_keys=True, default=str)
        if cmp == self.last_status:
            return
        try:
            new = self.k.client.patch_status(self.pod, st)
            self.pod = new
            self.last_status = cmp
        except StatusError as e:
            if e.code == 404:
                self.deleted = True
                self.wake.set()
            else:
                log.warning("pod %s/%s: status write failed: %s", self.ns, self.name, e.message)

    def cleanup(self) -> None:
        for t in list(self.probers.values()) + list(self.waiters.values()):
            t.cancel()
        volumes.remove_pod_dir(self.dir)
        import shutil

        shutil.rmtree(self.k.home / "logs" / self.ns / self.name, ignore_errors=True)
        self.done = True

    def holds(self) -> dict[str, float]:
        return {} if self.done else pod_requests(self.pod)


class LocalKubelet(Kubelet):
    kind = "local"

    def __init__(self, ctx: Context, node_name: str | None = None) -> None:
        super().__init__(ctx, node_name or ctx.settings.node_name or os.environ.get("KETCH_NODE_NAME") or _hostname())
        self.home = ctx.settings.home
        self.images = Images(self.home)
        self.workers: dict[str, PodWorker] = {}  # by uid
        self.pending: dict[str, dict] = {}  # uid -> pod waiting for room
        self._capacity: dict[str, float] | None = None
        self.leave_running = os.environ.get("KETCH_KUBELET_ON_EXIT", "kill") == "leave"
        self._kubeconfigs: set[str] = set()

    # -- node ------------------------------------------------------------------------------------------

    def capacity(self) -> dict[str, float]:
        if self._capacity is None:
            from ketch.kubelet.resources import parse_quantity

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

    async def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int) -> Started:
        exe = find_executable(argv[0], env.get("PATH", ""), cwd)
        if exe is None:
            raise CannotRun(f'exec: "{argv[0]}": executable file not found in $PATH')
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, *argv[1:], stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr,
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

    def kubeconfig(self, namespace: str) -> str:
        """A kubeconfig pointing at this ketch with the pod's namespace as default, the way in-cluster
        config works for a real pod (there is no service account token file here)."""
        path = self.home / "kubelet" / "kubeconfig" / f"{namespace}.yaml"
        if namespace not in self._kubeconfigs:
            import yaml

            cfg = {
                "apiVersion": "v1", "kind": "Config", "current-context": "ketch",
                "clusters": [{"name": "ketch", "cluster": {"server": self.ctx.settings.url}}],
                "users": [{"name": "ketch", "user": {"token": "ketch"}}],
                "contexts": [{"name": "ketch", "context": {"cluster": "ketch", "user": "ketch", "namespace": namespace}}],
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
            tmp.replace(path)
            self._kubeconfigs.add(namespace)
        return str(path)

    def bind_claims(self, pod: dict) -> None:
        ns = pod["metadata"].get("namespace", "default")
        for v in (pod.get("spec") or {}).get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.client.get(_KINDS["PersistentVolumeClaim"], ns, claim)
            if pvc is None or (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            spec = pvc.get("spec") or {}
            self.client.patch_status(pvc, {
                "phase": "Bound",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
            })

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
        if not spec.get("nodeName"):
            try:
                pod = self.client.patch(POD, md.get("namespace", ""), md["name"], {"spec": {"nodeName": self.node_name}})
            except StatusError as e:
                if e.code == 404:
                    return
                raise
            self.client.event(pod, "Normal", "Scheduled", f"Successfully assigned {md.get('namespace')}/{md['name']} to {self.node_name}", "default-scheduler")
        w = PodWorker(self, pod)
        ngpu = int(pod_requests(pod).get(GPU, 0))
        w.gpus = self._free_gpus(ngpu)
        self.start_worker(w)

    def start_worker(self, w: PodWorker) -> None:
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
        if node and node != self.node_name:
            return
        self.consider(pod)

    async def run(self) -> None:
        self.register_node()
        hb = asyncio.create_task(self.heartbeat())
        shipping = asyncio.create_task(self.ship_logs())
        try:
            self.recover()
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
                volumes.remove_pod_dir(d)
                if pod is None:
                    import shutil

                    shutil.rmtree(self.home / "logs" / data["namespace"] / data["name"], ignore_errors=True)
                continue
            w = PodWorker(self, pod)
            w.restore(data)
            for cs in w.cs.values():
                if cs.running:
                    w.shippers[cs.name] = Shipper(self.log_dir(w.ns, w.name, cs.name), cs.run)
                    w.exited[cs.name] = asyncio.Event()
                    if cs.pid and self.alive(cs.pid, cs.create_time):
                        log.info("kubelet: adopted %s/%s container %s (pid %s)", w.ns, w.name, cs.name, cs.pid)
                        w.waiters[cs.name] = asyncio.create_task(w._wait_adopted(cs))
                        if any(w.spec_of(cs.name).get(p) for p in ("readinessProbe", "livenessProbe", "startupProbe")):
                            try:
                                _, env, cwd = w.build(w.spec_of(cs.name))
                                w._start_probes(cs, w.spec_of(cs.name), env, cwd)
                            except Exception:
                                log.exception("kubelet: could not restart probes of %s/%s", w.ns, w.name)
                    else:
                        w._exited(cs, None)
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                w.done = True
            with contextlib.suppress(ConfigError, Exception):
                w.vols = volumes.prepare(pod, w.dir, self.home, w.lookup, self.allocatable())
            self.start_worker(w)

    async def shutdown(self) -> None:
        """ketch is stopping. Default: end every pod's processes (SIGTERM, a short grace, SIGKILL) and
        record how they ended; with KETCH_KUBELET_ON_EXIT=leave they keep running for the next ketch."""
        workers = list(self.workers.values())
        log.info("kubelet: stopping %d pod workers", len(workers))
        await asyncio.gather(*(cancel_and_wait(w.task) for w in workers if w.task is not None))
        if self.leave_running:
            for w in workers:
                for s in w.shippers.values():
                    with contextlib.suppress(Exception):
                        s.ship()
                w.save()
            return
        grace = float(os.environ.get("KETCH_KUBELET_STOP_GRACE") or 3)
        await asyncio.gather(*(w.kill_all(min(grace, float((w.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)))) for w in workers), return_exceptions=True)
        for w in workers:
            with contextlib.suppress(Exception):
                if not w.deleted:
                    w.write_status()
                    w.save()
        log.info("kubelet: stopped")


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
