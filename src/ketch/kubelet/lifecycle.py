"""A Pod's lifecycle, whoever runs its processes: one ``PodWorker`` task per Pod.

The worker is level-triggered: each pass looks at the Pod object and at its processes, starts what should
run (init containers in order, then the containers), restarts per restartPolicy with CrashLoopBackOff,
runs probes, enforces memory limits and activeDeadlineSeconds, and writes the status it observes. It
touches processes only through the kubelet's supervision methods (``spawn``, ``alive``, ``terminate``,
``kill``, ``memory``), so the local kubelet and a Ray kubelet share it. What it must remember across a
restart of ketch (pids with their start times, restart counts, states) lives in
``KETCH_HOME/kubelet/pods/<uid>/state.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

from ketch.kinds.builtin.pod import SA_VOLUME_PREFIX
from ketch.kinds.meta import now, parse_time
from ketch.kinds.mounts import ENV as MOUNTS_ENV
from ketch.kinds.resources import GPU, container_requests, memory_limit, pod_requests, qos_class
from ketch.kubelet import containers, exits, images, logs, network, process, torchrun, volumes
from ketch.kubelet.base import KINDS, POD, CannotRun, Kubelet, Started
from ketch.kubelet.env import ConfigError, container_env, expand
from ketch.kubelet.images import find_executable
from ketch.kubelet.logs import Shipper
from ketch.kubelet.probes import run_probe
from ketch.kubelet.warm import preload_of
from ketch.machinery.errors import StatusError

log = logging.getLogger(__name__)
MAX_BACKOFF = 300.0
SHARED_NETWORK_REASON = "SharedHostNetwork"
SHARED_NETWORK_MESSAGE = ("Pod shares the host's network (KETCH_POD_NETWORK=host): its podIP is 127.0.0.1 and its ports are the "
                          "host's; a second Pod listening on a port already in use fails with \"Address already in use\". "
                          "Run ketch as root with KETCH_POD_NETWORK=netns for a network namespace per Pod")


def _rfc3339(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backoff_base() -> float:
    return float(os.environ.get("KETCH_BACKOFF_BASE_SECONDS") or 10.0)


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
    def __init__(self, kubelet: Kubelet, pod: dict) -> None:
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
        self.warned: set[str] = set()  # containers whose image warning (InterpreterNotFound) was recorded
        self.runtime: containers.Runtime | None = None  # set when a RuntimeClass runs the Pod as OCI containers
        self._runtime_known = False
        self.stopping: set[str] = set()  # containers ketch is ending (an exit 137 then is not an OOM kill)
        self.cannot_run: dict[str, str] = {}  # container -> why its container could not be started
        self.pull_failures: dict[str, int] = {}
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
        self._exits_made = False
        self.net: network.PodNet | None = None  # the Pod's address and network namespace, once made
        self.pod_ip: str | None = None  # recorded, so a restarted ketch adopts the namespace with its address

    # -- persistence -----------------------------------------------------------------------------------

    def save(self) -> None:
        if not self._dir_made:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._dir_made = True
        data = {
            "namespace": self.ns, "name": self.name, "uid": self.uid, "startTime": self.start_time,
            "failed": self.failed, "gpus": self.gpus, "podIP": self.pod_ip, "containers": {n: asdict(c) for n, c in self.cs.items()},
        }
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.dir / "state.json")

    def restore(self, data: dict) -> None:
        self.start_time = data.get("startTime")
        self.failed = tuple(data["failed"]) if data.get("failed") else None  # type: ignore[assignment]
        self.gpus = list(data.get("gpus") or [])
        self.pod_ip = data.get("podIP")
        for n, d in (data.get("containers") or {}).items():
            if n in self.cs:
                self.cs[n] = CState(**d)

    def adopt_unrecorded_start(self, cs: CState) -> None:
        """After a restart of ketch: a run the supervisor started but ketch was killed before recording (its
        pid file is there, the state says otherwise) is taken as started, so it is adopted, not run twice."""
        if cs.running:
            return
        got = exits.read_start(exits.exit_file(self.dir, cs.name, cs.run + 1))
        if got is None:
            return
        pid, started, ticks = got
        if cs.run >= 0:
            cs.restart_count += 1
            cs.last_state = {"terminated": cs.terminated} if cs.terminated else cs.last_state
        cs.run += 1
        cs.pid = pid
        # its identity from the supervisor's record: a recycled pid is not it (nor is one with no record)
        cs.create_time = process.create_time(pid) if exits.running(pid, ticks) else 0.0
        cs.state = {"running": {"startedAt": _rfc3339(started)}}
        cs.oom, cs.killed_for, cs.ready = False, "", False
        cs.started = not self.spec_of(cs.name).get("startupProbe")
        log.info("kubelet: %s/%s container %s run %d was started but not recorded; adopting pid %s", self.ns, self.name, cs.name, cs.run, pid)
        self.save()

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
        return self.k.client.get(KINDS[kind], ns, name)

    # -- starting a container ----------------------------------------------------------------------------

    def token_file(self) -> str | None:
        """The ServiceAccount token the pod has mounted (its kube-api-access projected volume), if any."""
        for v in (self.pod.get("spec") or {}).get("volumes") or []:
            if str(v.get("name", "")).startswith(SA_VOLUME_PREFIX) and v["name"] in (self.vols or {}):
                return os.path.join((self.vols or {})[v["name"]], "token")
        return None

    def _api_env(self) -> dict[str, str]:
        """How the Pod reaches ketch (the bridge's address in netns mode, loopback otherwise, ketch's
        reachable address for a Pod on another machine: over HTTPS, as ketch serves plain HTTP only to its
        own machine's loopback), what its servers bind to, and who it is."""
        host, port = self.k.api_host(self.pod), self.k.ctx.settings.port
        scheme = "http" if host == self.k.network.api_host else "https"
        return {
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(port),
            "KETCH_SERVER": f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}",
            "KETCH_BIND_HOST": self.k.bind_host(self.net),
            "KETCH_POD_NAME": self.name, "KETCH_POD_NAMESPACE": self.ns, "KETCH_POD_UID": self.uid,
            "KUBECONFIG": self.k.kubeconfig(self.dir, self.ns, self.token_file(), host),
        }

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_") or k == "KETCH_BACKOFF_BASE_SECONDS"}
        env.update(self._api_env())
        return env

    def _with_ip(self) -> dict:
        """The Pod as its containers' fieldRefs see it: with its address even before the status says it."""
        if self.net is None:
            return self.pod
        return {**self.pod, "status": {**(self.pod.get("status") or {}), "podIP": self.net.ip, "podIPs": [{"ip": self.net.ip}]}}

    def rt(self) -> containers.Runtime | None:
        """The Pod's container runtime (None: its containers are processes); raises containers.Unavailable."""
        if not self._runtime_known:
            if self.k.local_processes:  # an engine on this machine runs them; the Ray kubelet's nodes have none
                self.runtime = containers.select(self.pod, lambda n: self.k.client.get(containers.RUNTIME_CLASS, "", n))
            self._runtime_known = True
            if self.runtime is not None:
                (self.k.home / "kubelet" / "containers").mkdir(parents=True, exist_ok=True)  # the restart sweep looks here
        return self.runtime

    def build(self, c: dict) -> tuple[list[str], dict[str, str], str]:
        """argv, environment and working directory of container ``c`` (ConfigError if it cannot be built)."""
        if self.rt() is not None:
            return self._build_container(c)
        image = self.k.images.resolve(c.get("image") or "")
        base = self._base_env()
        base.update(image.env)
        base.update(self.k.extra_env(self.pod, c))
        base["PATH"] = os.pathsep.join([*image.path_prefix, *torchrun.path_for(self.k.home, image.python), base.get("PATH", os.defpath)])
        base["PYTHONUNBUFFERED"] = base.get("PYTHONUNBUFFERED", "1")
        if self.gpus or pod_requests(self.pod).get(GPU):
            base["CUDA_VISIBLE_DEVICES"] = base["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        mounts = volumes.mounts_for(c, self.vols or {})
        rw = volumes.rewriter(mounts)
        for m in c.get("volumeMounts") or []:
            if m.get("name") in (self.vols or {}):
                base[volumes.env_name(m["name"])] = mounts.get(m["mountPath"].rstrip("/") or "/", "")
        env = container_env(self._with_ip(), c, base, self.lookup, self.k.allocatable())
        env = {k: rw(v) for k, v in env.items()}
        if mounts:
            env[MOUNTS_ENV] = json.dumps(mounts)  # after rewriting: its keys are the mountPaths themselves
        # Kubernetes' rule: args alone run the image's ENTRYPOINT with them appended. An image without
        # one runs its args as the program (Docker replaces CMD), which is all ketch can do when it does
        # not know the entrypoint; if that "program" is not one, say so instead of a bare exec error.
        command = list(c.get("command") or image.entrypoint)
        args = list(c.get("args") or [])
        only_args = not command and bool(args)
        if not command:
            command, args = args, []
        argv = [rw(expand(x, env)) for x in command + args]
        if only_args and "/" not in argv[0] and find_executable(argv[0], env.get("PATH", ""), "") is None:
            raise CannotRun(f'container "{c.get("name")}" sets only args, and image "{c.get("image")}" has no entrypoint '
                            f'known to ketch, so its first argument "{argv[0]}" would be the program: set command, or give '
                            f'the image a command (its ENTRYPOINT) in KETCH_HOME/images.yaml')
        if not argv:
            raise CannotRun(f'no command specified and image "{c.get("image")}" has no entrypoint known to ketch (map it in images.yaml)')
        wd = c.get("workingDir") or image.working_dir
        cwd = rw(wd) if wd else str(self.dir / "work")
        os.makedirs(cwd, exist_ok=True)
        if self.k.local_processes:
            images.check_command(argv, env.get("PATH", ""), cwd, c.get("image") or "", bool(wd))
        if image.warning and not os.path.isabs(argv[0]) and c["name"] not in self.warned:
            self.warned.add(c["name"])
            self.k.client.event(self.pod, "Warning", "InterpreterNotFound", image.warning, "kubelet")
        return argv, env, cwd

    def _build_container(self, c: dict) -> tuple[list[str], dict[str, str], str]:
        """The engine client's argv and environment, for one run of ``c`` as an OCI container
        (containers.py): Kubernetes' variables only, volumes at their real mountPaths, nothing rewritten."""
        rt = self.runtime
        assert rt is not None
        base = self._api_env()
        kubeconfig = base["KUBECONFIG"]
        mapped = containers.ketch_mapped_in(list(c.get("command") or []), self.k.home)
        if mapped is not None:  # ketch's own program (a pipeline task): ketch is mapped into the image
            base.update(mapped[1])
        env = container_env(self._with_ip(), c, base, self.lookup, self.k.allocatable())
        spec = dict(c)
        for f in ("command", "args"):
            if c.get(f):
                spec[f] = [expand(x, env) for x in c[f]]
        mounts = [*containers.mounts_of(c, self.vols or {}), *(mapped[0] if mapped else []), (kubeconfig, kubeconfig, True)]
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
        name = rt.container_name(self.pod, c["name"], self.cs[c["name"]].run + 1)
        argv, cenv = rt.run_argv(self.pod, spec, name, env, mounts, client_env, self.net)
        os.makedirs(self.dir, exist_ok=True)
        return argv, cenv, str(self.dir)

    async def _pull(self, cs: CState, c: dict) -> bool:
        """Have the container's image (containers.Runtime.ensure_image); on failure the container waits
        with ErrImagePull, then ImagePullBackOff, retried with back-off as Kubernetes does."""
        assert self.runtime is not None
        try:
            await self.runtime.ensure_image(c, containers.pull_auth(self.pod, self.lookup), self.dir / "auth")
        except containers.PullError as e:
            n = self.pull_failures.get(cs.name, 0)
            self.pull_failures[cs.name] = n + 1
            reason = e.reason if n == 0 or e.reason == "ErrImageNeverPull" else "ImagePullBackOff"
            msg = str(e) if reason != "ImagePullBackOff" else f'Back-off pulling image "{c.get("image")}": {e}'
            if cs.terminated:  # a restart that cannot pull: the run before stays in lastState, as in Kubernetes
                cs.last_state = {"terminated": cs.terminated}
            cs.state = {"waiting": {"reason": reason, "message": msg}}
            cs.next_start = time.time() + min(MAX_BACKOFF, backoff_base() * (2**n))
            self.k.client.event(self.pod, "Warning", "Failed" if n == 0 else "BackOff", msg, "kubelet")
            return False
        self.pull_failures.pop(cs.name, None)
        return True

    async def start(self, cs: CState) -> None:
        c = self.spec_of(cs.name)
        cannot_run = None
        try:
            rt = self.rt()
        except containers.Unavailable as e:
            if "waiting" not in cs.state or cs.state["waiting"].get("message") != str(e):
                self.k.client.event(self.pod, "Warning", "FailedCreatePodSandBox", str(e), "kubelet")
            cs.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
            cs.next_start = time.time() + 2.0
            return
        if rt is not None and not await self._pull(cs, c):
            return
        try:
            argv, env, cwd = self.build(c)
        except CannotRun as e:
            cannot_run = str(e)
        except ConfigError as e:
            cs.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            cs.next_start = time.time() + 1.0
            return
        except images.Preparing as e:  # the image's requirements environment is being built
            cs.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
            cs.next_start = time.time() + 0.5
            return
        except images.PrepareFailed as e:
            cs.state = {"waiting": {"reason": "CreateContainerError", "message": str(e)}}
            cs.next_start = time.time() + 5.0
            return
        except Exception as e:  # a bad mount, an unwritable workingDir: the container cannot be created
            cs.state = {"waiting": {"reason": "CreateContainerError", "message": str(e)}}
            cs.next_start = time.time() + 1.0
            return
        if cs.run >= 0:
            cs.restart_count += 1
            cs.last_state = {"terminated": cs.terminated} if cs.terminated else cs.last_state
        cs.run += 1
        ship = Shipper(self.k.log_dir(self.ns, self.name, cs.name), cs.run)
        self.shippers[cs.name] = ship
        if cannot_run is not None:
            self._start_failed(cs, ship, cannot_run)
            return
        fds = ship.open_raw()
        record = exits.exit_file(self.dir, cs.name, cs.run)
        if c.get("stdin"):
            fds["stdin"] = ship.open_stdin()
        try:
            if not self._exits_made:
                record.parent.mkdir(parents=True, exist_ok=True)
                self._exits_made = True
            started = await self.k.spawn(argv, env, cwd, fds["stdout"], fds["stderr"], preload_of(self.pod), container_requests(c),
                                         exit_file=str(record), stdin=fds.get("stdin"), net=self.net, pod_uid=self.uid)
        except CannotRun as e:
            self._start_failed(cs, ship, str(e))
            return
        finally:
            for fd in fds.values():
                os.close(fd)
        cs.pid = started.pid
        cs.create_time = started.create_time
        self.stopping.discard(cs.name)
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
        self.k.archive_log(self.pod, cs.name, cs.run, ship.log)
        ts = now()
        cs.state = {"terminated": {"exitCode": 128, "reason": "ContainerCannotRun", "message": msg, "startedAt": ts, "finishedAt": ts}}
        self._after_exit(cs, failed=True)
        self.save()

    async def _wait_child(self, cs: CState, started: Started) -> None:
        code = await started.wait()
        if self.runtime is not None:
            code = await self._container_ended(cs, code)
        self._exited(cs, code)

    async def _wait_adopted(self, cs: CState, record_wait: float = 2.0) -> None:
        """A container ketch did not start in this life (so is not its parent): watch it end, then take its
        exit status from its supervisor's record (written as it reaps it: allow a moment for that), or
        report it unknown if there is none."""
        pid, ct = cs.pid, cs.create_time
        while pid is not None and self.k.alive(pid, ct):
            await asyncio.sleep(0.2)
        runtime = None
        with contextlib.suppress(containers.Unavailable):
            runtime = self.rt()
        if runtime is not None:  # the engine kept the container's exit status: not lost with ketch
            code = None
            with contextlib.suppress(containers.Unavailable):
                code = await self._container_ended(cs, None)
            self._exited(cs, code)
            return
        path = exits.exit_file(self.dir, cs.name, cs.run)
        deadline = time.monotonic() + record_wait
        while (rec := exits.read_exit(path)) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if rec is None:
            self._exited(cs, None)
        else:
            self._exited(cs, rec[0], rec[1])

    async def _container_ended(self, cs: CState, client_code: int | None) -> int | None:
        """The container's own exit status and OOM kill, read from the engine, then the container removed."""
        assert self.runtime is not None
        code, oom, err = await self.runtime.finished(self.runtime.container_name(self.pod, cs.name, cs.run))
        if code is None and client_code is not None and client_code >= 125:  # created, never started
            self.runtime.forget_image(self.spec_of(cs.name).get("image") or "")
            self.cannot_run[cs.name] = err or self._engine_error(cs) or f"{self.runtime.kind} run exited with {client_code}"
            return client_code
        limited = memory_limit(self.spec_of(cs.name))
        cs.oom = cs.oom or oom or (code == 137 and bool(limited) and cs.name not in self.stopping)
        return code if code is not None else client_code

    def _engine_error(self, cs: CState) -> str:
        """The engine client's own error line (``Error: ...``) from the container's log."""
        ship = self.shippers.get(cs.name)
        if ship is None:
            return ""
        ship.ship(final=True)
        with contextlib.suppress(OSError):
            for line in reversed(ship.log.read_text(errors="replace").splitlines()):
                if "Error: " in line:
                    return line[line.index("Error: ") + 7:].strip()
        return ""

    def _exited(self, cs: CState, code: int | None, finished: float | None = None) -> None:
        """Record a process's end: exit code (128+signal when signalled), reason, finishedAt (when it ended,
        if its supervisor recorded that, else now)."""
        started = (cs.state.get("running") or {}).get("startedAt")
        ship = self.shippers.get(cs.name)
        if ship is not None:
            ship.ship(final=True)
            self.k.archive_log(self.pod, cs.name, cs.run, ship.log)
        cannot = self.cannot_run.pop(cs.name, None)
        if cannot is not None:
            term = {"exitCode": 128, "reason": "ContainerCannotRun", "message": cannot}
        elif cs.oom:
            term = {"exitCode": 137, "reason": "OOMKilled", "message": "memory limit exceeded"}
        elif code is None:
            term = {"exitCode": 137, "reason": "ContainerStatusUnknown", "message": "The container exited while ketch was not its parent; its exit status is unknown"}
        else:
            ec = code if code >= 0 else 128 - code
            term = {"exitCode": ec, "reason": "Completed" if ec == 0 else "Error"}
            if code < 0:
                term["signal"] = -code
        fin = now() if finished is None else _rfc3339(finished)
        term.update({"startedAt": started or fin, "finishedAt": fin, "containerID": f"ketch://{cs.pid}"})
        if term["exitCode"] != 0 and "message" not in term and ship is not None \
                and self.spec_of(cs.name).get("terminationMessagePolicy") == "FallbackToLogsOnError":
            msg = logs.tail(ship.log)  # there is no termination-log file here: the log's end, as Kubernetes falls back to
            if msg:
                term["message"] = msg
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
        if self.runtime is not None:  # exec probes run in the container
            name = self.runtime.container_name(self.pod, cs.name, cs.run)
            c = {**c, **{p: {**c[p], "exec": {"command": self.runtime.exec_argv(name, list((c[p].get("exec") or {}).get("command") or []))}}
                         for p in ("readinessProbe", "livenessProbe", "startupProbe") if c.get(p) and "exec" in c[p]}}
        self.probers[cs.name] = asyncio.create_task(self._probe_loop(cs, c, env, cwd))

    def _probe_net(self) -> network.PodNet:
        """Where probes reach the Pod: its IP; exec probes of processes enter its namespace (an OCI
        container's already run inside it, through the engine)."""
        net = self.net or network.HOST
        return network.PodNet(net.ip) if self.runtime is not None else net

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
                ok, msg = await run_probe(pr, c, env, cwd, self._probe_net(), cs.pid)
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
        self.stopping.add(cs.name)
        grace = probe.get("terminationGracePeriodSeconds", (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        if cs.pid:
            await self.k.terminate(cs.pid, cs.create_time, float(grace), self.exited.get(cs.name))

    # -- the loop --------------------------------------------------------------------------------------

    async def kill_all(self, grace: float) -> None:
        live = [cs for cs in self.cs.values() if cs.running and cs.pid]
        self.stopping.update(cs.name for cs in live)
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
                if self.net is not None and self.net.netns:  # a finished Pod keeps its address, not its namespace
                    await asyncio.to_thread(self.k.network.teardown, self.uid)
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
                self.vols = volumes.prepare(self.pod, self.dir, self.k.home, self.lookup, self.k.allocatable(), self.k.mint_token)
                self.k.bind_claims(self.pod)
            except ConfigError as e:
                for cs in self.cs.values():
                    cs.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
                self.config_error["volumes"] = ("FailedMount", str(e))
                self.wake_in(1.0)
                return
        if self.net is None and not await self._network(spec):
            return
        # memory limits
        for cs in self.cs.values():
            lim = memory_limit(self.spec_of(cs.name))
            if cs.running and cs.pid and lim and self.runtime is None and self.k.memory(cs.pid) > lim:
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

    async def _network(self, spec: dict) -> bool:
        """Give the Pod its network (network.py) before any container starts; False: not yet (retried)."""
        try:
            docker = getattr(self.rt(), "kind", "") == "docker"  # cannot join a named namespace (containers.py)
        except containers.Unavailable:
            docker = False
        if spec.get("hostNetwork") or self.k.network.kind == "host" or docker:
            self.net = self.k.pod_net(self.pod)
            if not spec.get("hostNetwork"):
                # said on the Pod, never silently: this node gives Pods no network namespace (docs/kubelet.md)
                msg = SHARED_NETWORK_MESSAGE.replace("127.0.0.1", self.net.ip)  # the Ray kubelet's Pods: their node's
                self.k.client.event(self.pod, "Normal", SHARED_NETWORK_REASON, msg, "kubelet")
            return True
        try:
            self.net = await asyncio.to_thread(self.k.network.setup, self.uid, spec.get("hostname") or self.name, self.ns, self.pod_ip)
        except OSError as e:
            msg = f"Failed to create pod sandbox: setting up the Pod's network namespace failed: {e}"
            for cs in self.cs.values():
                if "waiting" in cs.state:
                    cs.state = {"waiting": {"reason": "ContainerCreating", "message": msg}}
            self.config_error["network"] = ("FailedCreatePodSandBox", msg)
            self.k.client.event(self.pod, "Warning", "FailedCreatePodSandBox", msg, "kubelet")
            self.wake_in(2.0)
            return False
        self.config_error.pop("network", None)
        if self.net.ip != self.pod_ip:
            self.pod_ip = self.net.ip
            self.save()
        return True

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
            "imageID": f"{self.runtime.kind if self.runtime else 'ketch-python'}://{c.get('image', '')}",
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
        host_ip = self.k.host_ip(self.pod)
        pod_ip = self.net.ip if self.net is not None else (self.pod_ip or "127.0.0.1")
        if spec.get("hostNetwork"):
            pod_ip = host_ip
        st: dict = {
            "phase": phase,
            "conditions": conds,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
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
        if self.net is not None and self.net.netns:
            self.k.network.teardown(self.uid)
        volumes.remove_pod_dir(self.dir)
        self.k.pod_removed(self.uid, self.dir)
        import shutil

        shutil.rmtree(self.k.log_dir(self.ns, self.name, "-").parent, ignore_errors=True)
        self.done = True

    def holds(self) -> dict[str, float]:
        return {} if self.done else pod_requests(self.pod)
