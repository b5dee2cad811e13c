"""Real containers, the Kubernetes way: a Pod whose ``runtimeClassName`` names a RuntimeClass (or every Pod
when ``KETCH_DEFAULT_RUNTIME`` is set) runs its containers as OCI containers through podman or docker.

The pod lifecycle (lifecycle.py) stays the one for processes: each container's process is the engine's
client in the foreground, ``podman run --name <...> <image> ...``, which streams the container's output
into the Pod's log files, forwards SIGTERM to the container (graceful termination) and exits with its exit
status. What a container needs on top of a process is here:

- **networking**: the Pod's network, as for processes (network.py): ``--network host`` on the host network;
  with a namespace per Pod (``KETCH_POD_NETWORK=netns``), podman joins the Pod's namespace by path
  (``--network ns:/run/netns/ketch-<uid>``) with the Pod's hosts file as /etc/hosts, so a container has the
  Pod's address; docker cannot join a named namespace, so its Pods stay on the host network;
- **volumes**: every volume (emptyDir, PVC, hostPath, configMap, secret, downwardAPI, projected) is the same
  directory as for a process, bind-mounted at its real mountPath (``readOnly`` honoured); nothing is
  rewritten. The pod's kubeconfig is mounted at the path ``KUBECONFIG`` names;
- **environment**: only what Kubernetes gives a container (env, envFrom, service variables, HOSTNAME), over
  the image's own ENV; ketch's environment stays out;
- **command**: ``command`` replaces the image's ENTRYPOINT (and its CMD), ``args`` replace CMD, as in
  Kubernetes; ``workingDir`` or the image's WORKDIR;
- **limits**: memory (``--memory`` = ``--memory-swap``) and CPU (``--cpus``) enforced by cgroups; a container
  killed by the kernel for its memory limit is ``OOMKilled``: the engine's OOMKilled flag, or (where the
  engine cannot see it, cgroup v1) exit 137 with a memory limit set and no kill from ketch;
- **images**: ``imagePullPolicy`` (Always / IfNotPresent / Never), ``imagePullSecrets`` (dockerconfigjson),
  ``ErrImagePull`` then ``ImagePullBackOff`` with the engine's message, ``ErrImageNeverPull``;
- **exec**: ``kubectl exec`` and exec probes run ``podman exec`` in the container;
- **identity**: containers are named ``k8s_<container>_<pod>_<namespace>_<uid8>_<restart>`` and labelled with
  the pod's uid, so a restarted ketch finds them again (adoption) and removes those of pods that are gone.

Handlers: ``podman``, ``docker``, and ``oci`` (or ``runc``/``crun``), meaning whichever is installed, podman
first. An engine is usable when its CLI answers ``version`` (docker's needs its daemon).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ketch.kinds.resources import parse_quantity
from ketch.kubelet.network import PodNet

log = logging.getLogger(__name__)
RUNTIME_CLASS = ("node.k8s.io/v1", "RuntimeClass")
HANDLERS = {"podman": ("podman",), "docker": ("docker",), "oci": ("podman", "docker"), "runc": ("podman", "docker"), "crun": ("podman", "docker")}
LABEL_UID = "ketch.dev/pod-uid"
_engines: dict[str, str | None] = {}
_present: set[tuple[str, str]] = set()  # (engine, image) known to be there, until a run of it fails to start


class Unavailable(Exception):
    """The Pod's RuntimeClass cannot be used on this node (missing, or its handler's engine is not installed)."""


class PullError(Exception):
    """The image could not be had: ``reason`` is ErrImagePull or ErrImageNeverPull."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def engine(kind: str) -> str | None:
    """The path of a working ``podman`` / ``docker`` CLI, or None (checked once per process)."""
    if kind not in _engines:
        exe = shutil.which(kind)
        ok = False
        if exe:
            try:
                ok = subprocess.run([exe, "version"], capture_output=True, timeout=20, stdin=subprocess.DEVNULL).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _engines[kind] = exe if ok else None
    return _engines[kind]


def engine_for_handler(handler: str) -> str | None:
    for kind in HANDLERS.get(handler, ()):
        exe = engine(kind)
        if exe:
            return exe
    return None


@dataclass
class Runtime:
    """The container runtime a Pod runs in: its RuntimeClass's name, the handler and the engine's CLI."""

    class_name: str
    handler: str
    exe: str

    @property
    def kind(self) -> str:
        return Path(self.exe).name

    # -- naming ----------------------------------------------------------------------------------------

    @staticmethod
    def container_name(pod: dict, container: str, run: int) -> str:
        md = pod["metadata"]
        return f"k8s_{container}_{md['name']}_{md.get('namespace', 'default')}_{md['uid'][:8]}_{max(run, 0)}"

    # -- images ----------------------------------------------------------------------------------------

    async def _cli(self, *args: str, timeout: float = 600) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(self.exe, *args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return 124, f"{self.kind} {args[0]} timed out after {timeout:g}s"
        return proc.returncode or 0, out.decode(errors="replace").strip()

    async def has_image(self, image: str) -> bool:
        """Whether the engine has ``image``. A yes is remembered until a run of the image fails to start
        (``forget_image``): asking costs a pod start an ``image inspect`` (40-150 ms, a whole engine CLI
        start), and a removed image shows itself anyway, as that failed run, with the engine's message."""
        key = (self.exe, image)
        if key in _present:
            return True
        rc, _ = await self._cli("image", "inspect", "--format", "{{.Id}}", image, timeout=60)
        if rc == 0:
            _present.add(key)
        return rc == 0

    def forget_image(self, image: str) -> None:
        """A container of ``image`` was created but never started (its image may be gone): ask the engine
        again on the next start, which then pulls as the imagePullPolicy says."""
        _present.discard((self.exe, image))

    async def ensure_image(self, c: dict, auth: dict | None, auth_dir: Path) -> None:
        """Pull the container's image as its imagePullPolicy says; raise PullError when it cannot be had."""
        image = c.get("image") or ""
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        if policy != "Always" and await self.has_image(image):
            return
        if policy == "Never":
            raise PullError("ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never')
        args = ["pull"]
        if auth:
            auth_dir.mkdir(parents=True, exist_ok=True)
            f = auth_dir / "auth.json"
            f.write_text(json.dumps({"auths": auth}))
            f.chmod(0o600)
            args = ["--config", str(auth_dir), "pull"] if self.kind == "docker" else ["pull", "--authfile", str(f)]
        rc, out = await self._cli(*args, image)
        if rc == 0:
            _present.add((self.exe, image))
        if rc != 0:
            last = out.splitlines()[-1] if out else f"exit status {rc}"
            raise PullError("ErrImagePull", f'failed to pull image "{image}": {last}')

    # -- running ---------------------------------------------------------------------------------------

    def run_argv(self, pod: dict, c: dict, name: str, env: dict[str, str], mounts: list[tuple[str, str, bool]],
                 client_env: dict[str, str], net: PodNet | None = None) -> tuple[list[str], dict[str, str]]:
        """The engine client's argv and environment for one run of container ``c``. Variables go by name
        (``--env NAME``, the value in the client's environment, so secrets stay off the command line),
        except those the client itself needs under the same name (PATH, HOME...), which go as NAME=value."""
        md = pod["metadata"]
        # the Pod's network namespace when it has one (podman joins it by path), else the host's
        network = f"ns:{net.path}" if net is not None and net.netns and self.kind == "podman" else "host"
        argv = [self.exe, "run", "--name", name, "--network", network, "--hostname", md["name"][:63],
                "--label", f"{LABEL_UID}={md['uid']}", "--label", f"ketch.dev/container={c['name']}",
                "--label", f"ketch.dev/pod={md.get('namespace', 'default')}/{md['name']}"]
        if self.kind == "podman":
            argv += ["--pull", "never"]
        cenv = dict(client_env)
        for k, v in env.items():
            if k in client_env:
                argv += ["--env", f"{k}={v}"]
            else:
                cenv[k] = v
                argv += ["--env", k]
        if network != "host" and net is not None and net.hosts:  # Service names, as the Pod's processes see them
            argv += ["--no-hosts", "--volume", f"{net.hosts}:/etc/hosts:ro"]
        for host, path, ro in mounts:
            argv += ["--volume", f"{host}:{path}:{'ro' if ro else 'rw'}"]
        limits = (c.get("resources") or {}).get("limits") or {}
        if limits.get("memory"):
            mem = str(int(parse_quantity(limits["memory"])))
            argv += ["--memory", mem, "--memory-swap", mem]
        if limits.get("cpu"):
            argv += ["--cpus", f"{parse_quantity(limits['cpu']):g}"]
        if c.get("workingDir"):
            argv += ["--workdir", c["workingDir"]]
        command, args = list(c.get("command") or []), list(c.get("args") or [])
        if command:
            argv += ["--entrypoint", json.dumps(command)]
        argv += ["--", c.get("image") or "", *args] if self.kind == "podman" else [c.get("image") or "", *args]
        return argv, cenv

    async def finished(self, name: str) -> tuple[int | None, bool, str]:
        """(exit code, OOM-killed, error) of a container whose client has exited, then remove it."""
        rc, out = await self._cli("inspect", "--format", "{{json .State}}", name, timeout=60)
        code, oom, err = None, False, ""
        if rc == 0:
            with contextlib.suppress(ValueError, IndexError):
                st = json.loads(out.splitlines()[-1])
                code = int(st.get("ExitCode", 0)) if st.get("Status", st.get("status")) in ("exited", "stopped") else None
                oom = bool(st.get("OOMKilled") or st.get("OomKilled"))
                err = st.get("Error") or ""
        await self.remove(name)
        return code, oom, err

    async def remove(self, name: str) -> None:
        args = ["rm", "-f", "-t", "0", name] if self.kind == "podman" else ["rm", "-f", name]
        await self._cli(*args, timeout=60)

    def exec_argv(self, name: str, command: list[str], tty: bool = False, stdin: bool = False) -> list[str]:
        return [self.exe, "exec", *(["-i"] if stdin else []), *(["-t"] if tty else []), name, *command]

    def running_names(self) -> dict[str, str]:
        """name -> pod uid of every container ketch started that this engine still has."""
        try:
            names = subprocess.run([self.exe, "ps", "-a", "--filter", f"label={LABEL_UID}", "--format", "{{.Names}}"],
                                   capture_output=True, text=True, timeout=60).stdout.split()
            if not names:
                return {}
            out = subprocess.run([self.exe, "inspect", "--format", f'{{{{.Name}}}} {{{{index .Config.Labels "{LABEL_UID}"}}}}', *names],
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return {}
        found = {}
        for line in out.splitlines():
            name, _, uid = line.strip().partition(" ")
            found[name.lstrip("/")] = uid.strip()
        return found


def select(pod: dict, get_class) -> Runtime | None:
    """The Runtime of a Pod: its runtimeClassName (a RuntimeClass object), else KETCH_DEFAULT_RUNTIME (a
    RuntimeClass name, or a handler name directly); None: the Pod's containers are processes."""
    name = (pod.get("spec") or {}).get("runtimeClassName") or ""
    default = not name
    if default:
        name = os.environ.get("KETCH_DEFAULT_RUNTIME", "")
    if not name:
        return None
    rc = get_class(name)
    if rc is None:
        if default and name in HANDLERS:
            handler = name
        else:
            raise Unavailable(f'RuntimeClass "{name}" not found')
    else:
        handler = rc.get("handler") or ""
    exe = engine_for_handler(handler)
    if exe is None:
        wants = " or ".join(HANDLERS.get(handler, ())) or f"a runtime for handler {handler!r} (ketch knows podman, docker, oci)"
        raise Unavailable(f'RuntimeClass "{name}" has handler "{handler}", but {wants} is not installed and working on this node')
    return Runtime(name, handler, exe)


def pull_auth(pod: dict, lookup) -> dict | None:
    """The registries' credentials of the Pod's imagePullSecrets (kubernetes.io/dockerconfigjson or
    dockercfg), merged; None without any."""
    ns = pod["metadata"].get("namespace", "default")
    auths: dict = {}
    for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        s = lookup("Secret", ns, ref.get("name", ""))
        if s is None:
            continue
        data = s.get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not raw:
            continue
        with contextlib.suppress(ValueError):
            cfg = json.loads(base64.b64decode(raw))
            auths.update(cfg.get("auths") or ({} if ".dockerconfigjson" in data else cfg))
    return auths or None


def mounts_of(c: dict, vols: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(host directory or file, mountPath, read-only) for each of the container's volumeMounts."""
    out = []
    for m in c.get("volumeMounts") or []:
        d = vols.get(m.get("name", ""))
        if d is None:
            continue
        if m.get("subPath"):
            d = os.path.join(d, m["subPath"])
            if not os.path.exists(d):
                os.makedirs(d, exist_ok=True)
        out.append((d, m["mountPath"], bool(m.get("readOnly"))))
    return out


def ketch_mapped_in(command: list[str], home: Path) -> tuple[list[tuple[str, str, bool]], dict[str, str]] | None:
    """Mounts and environment that let a container run ketch's own programs (a pipeline task's launcher,
    whose command is ketch's interpreter by absolute path) in its image: ketch's interpreter, environment
    and sources at their paths (read-only), and KETCH_HOME (the task's files and artifacts). None when the
    command is not ketch's interpreter. The image must provide the C libraries the interpreter links to
    (any glibc distribution as recent as the host's)."""
    import sys

    if not command or not os.path.isabs(command[0]) or os.path.realpath(command[0]) != os.path.realpath(sys.executable):
        return None
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    dirs.update(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p))
    dirs.add(os.path.dirname(os.path.realpath(sys.executable)))
    top = sorted(dirs)
    keep: list[str] = []
    for d in top:
        if not any(d == k or d.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(d)
    mounts = [(d, d, True) for d in keep if d != "/" and not str(home).startswith(d.rstrip("/") + "/")]
    mounts.append((str(home), str(home), False))
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    return mounts, env


def sweep(home: Path, known_uids: set[str]) -> list[str]:
    """Remove containers ketch started for Pods it no longer knows (ketch restarted, the Pod was deleted
    meanwhile); returns their names. Only where this home ever ran a container."""
    removed: list[str] = []
    if not (home / "kubelet" / "containers").is_dir():
        return removed
    for kind in ("podman", "docker"):
        exe = shutil.which(kind)
        if not exe or engine(kind) is None:
            continue
        rt = Runtime("", kind, exe)
        for name, uid in rt.running_names().items():
            if uid and uid not in known_uids:
                args = ["rm", "-f", "-t", "0", name] if kind == "podman" else ["rm", "-f", name]
                subprocess.run([exe, *args], capture_output=True, timeout=60)
                removed.append(name)
    return removed
