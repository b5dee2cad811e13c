"""The kubelet interface: what any executor of Pods does, whoever runs the processes.

A kubelet registers one or more Nodes, decides which Pods are its own (nodeName, nodeSelector, resource
requests against allocatable), runs them, writes their status through the status subresource, removes
them once stopped when they are deleted, and serves their logs. The local kubelet (``local.py``) runs
each container as a process on this machine; a Ray kubelet implements the same class by placing Pods on
a Ray cluster's nodes. Controllers never know which kubelet runs a Pod: they only see Pods and Nodes.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import platform
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import ketch
from ketch.kinds.meta import now
from ketch.kinds.resources import TRACKED, format_quantity, pod_requests
from ketch.kubelet.images import Images
from ketch.kubelet.logs import LogArchive, LogOptions
from ketch.kubelet.network import Network, PodNet
from ketch.machinery.client import Client
from ketch.machinery.context import Context

log = logging.getLogger(__name__)
POD = ("v1", "Pod")
NODE = ("v1", "Node")
KINDS = {"ConfigMap": ("v1", "ConfigMap"), "Secret": ("v1", "Secret"), "PersistentVolumeClaim": ("v1", "PersistentVolumeClaim")}


def node_object(name: str, labels: dict[str, str], capacity: dict[str, float], allocatable: dict[str, float], addresses: list[dict],
                kind: str, ready: tuple[str, str, str] | None = None, taints: list[dict] | None = None, machine_id: str = "") -> dict:
    """A Node as a kubelet registers it. ``ready`` is (status, reason, message) of its Ready condition
    (default: True, KubeletReady)."""
    def q(d: dict[str, float]) -> dict[str, str]:
        return {k: format_quantity(k, v) for k, v in d.items()}

    ts = now()
    rs, reason, msg = ready or ("True", "KubeletReady", f"ketch {kind} kubelet is posting ready status")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": q(capacity),
            "allocatable": q(allocatable),
            "conditions": [
                {"type": "Ready", "status": rs, "reason": reason, "message": msg, "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "", "lastHeartbeatTime": ts, "lastTransitionTime": ts},
            ],
            "addresses": addresses,
            "nodeInfo": {
                "kubeletVersion": f"v1.37.0+ketch.{ketch.__version__}",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": labels.get("kubernetes.io/arch", arch),
                "containerRuntimeVersion": f"ketch-{kind}://{ketch.__version__}",
                "kernelVersion": platform.release(),
                "osImage": platform.platform(),
                "machineID": machine_id,
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


class CannotRun(Exception):
    """The container's process could not be started (reported as ContainerCannotRun, exit code 128)."""


@dataclass
class Started:
    """A started container process: enough to recognise it again after a restart of ketch (pid and
    start time), and a coroutine function that waits for its exit status (negative: killed by that
    signal; None: unknowable)."""

    pid: int
    create_time: float | None
    wait: Callable[[], Awaitable[int | None]]


class Kubelet(abc.ABC):
    """Subclasses implement the abstract methods; node registration and pod selection are shared."""

    def __init__(self, ctx: Context, node_name: str) -> None:
        self.ctx = ctx
        self.node_name = node_name
        self.client = Client(ctx.api, manager="ketch-kubelet")
        self.home = ctx.settings.home
        self.images = Images(self.home)
        self.network: Network = Network(ctx.settings.port, self.home)  # the host's, unless a kubelet gives Pods their own
        # ended runs' logs copied to the shared store (KETCH_ARTIFACTS), read back where the local file is gone
        self.log_archive: LogArchive | None = LogArchive(ctx.settings.log_archive) if ctx.settings.log_archive else None

    # -- the node ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def capacity(self) -> dict[str, float]:
        """cpu (cores), memory (bytes), nvidia.com/gpu (devices), pods: what the node has."""

    def allocatable(self) -> dict[str, float]:
        return self.capacity()

    def node_labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            "node-role.kubernetes.io/control-plane": "",
            "ketch.dev/kubelet": self.kind,
        }

    kind = "abstract"
    # Whether containers are processes of this machine: what warm starts (forking) and kubectl exec need.
    local_processes = False

    def addresses(self) -> list[dict]:
        return [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node_name}]

    def node_object(self) -> dict:
        return node_object(self.node_name, self.node_labels(), self.capacity(), self.allocatable(), self.addresses(), self.kind)

    # -- what a Pod's processes see of the node (the Ray kubelet answers per Pod, from the Pod's node) --

    def pod_net(self, pod: dict) -> PodNet:
        """The Pod's network when it shares its node's (not a namespace of its own): 127.0.0.1 here."""
        from ketch.kubelet.network import HOST

        return HOST

    def api_host(self, pod: dict) -> str:
        """Where the Pod's processes reach ketch's API (``KUBERNETES_SERVICE_HOST``, ``KETCH_SERVER``, the
        Pod's kubeconfig): the Pod network's, loopback or its bridge's forwarder, both served plain HTTP.
        A kubelet whose Pods run on other machines answers ketch's reachable address (over TLS)."""
        return self.network.api_host

    def host_ip(self, pod: dict) -> str:
        """``status.hostIP``: the address of the Pod's node (ketch's, as Pods reach it, on this machine)."""
        return self.network.api_host

    def bind_host(self, net: PodNet | None) -> str:
        """``KETCH_BIND_HOST``, where ketch's own servers in Pods (the model server, JupyterLab) listen:
        everywhere inside a Pod's own namespace, loopback on the shared host network."""
        return "0.0.0.0" if net is not None and net.netns else "127.0.0.1"

    def extra_env(self, pod: dict, container: dict) -> dict[str, str]:
        """Variables a kubelet adds to a container's environment before its env is expanded (none here)."""
        return {}

    def register_node(self) -> dict:
        """Create the Node, or refresh its status (capacity may have changed since last start)."""
        want = self.node_object()
        cur = self.client.get(NODE, "", self.node_name)
        if cur is None:
            cur = self.client.create(want)
        else:
            labels = {**(cur["metadata"].get("labels") or {}), **want["metadata"]["labels"]}
            if labels != cur["metadata"].get("labels"):
                cur = self.client.patch(NODE, "", self.node_name, {"metadata": {"labels": labels}})
        return self.client.patch_status(cur, want["status"])

    async def heartbeat(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                self.register_node()
            except Exception:
                log.exception("node heartbeat failed")

    def mint_token(self, pod: dict, source: dict) -> str:
        """The token of a serviceAccountToken projection: the pod's ServiceAccount, bound to this very pod
        (it stops working when the pod is deleted), as the kubelet's TokenRequest on a real node."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ns, sa = meta.get("namespace", "default"), spec.get("serviceAccountName") or "default"
        obj = self.client.get(("v1", "ServiceAccount"), ns, sa)
        tok, _ = self.ctx.services["authn"].service_account_token(
            ns, sa, obj["metadata"]["uid"] if obj else "", pod=(meta["name"], meta["uid"]),
            expiration_seconds=max(int(source.get("expirationSeconds") or 3607), 365 * 86400),
            audiences=[source["audience"]] if source.get("audience") else None)
        return tok

    def kubeconfig(self, pod_dir: Path, namespace: str, token_file: str | None, host: str = "127.0.0.1") -> str:
        """The pod's kubeconfig: this ketch, the pod's namespace as default, and the pod's ServiceAccount
        token as its credential (none when the token is not mounted), as in-cluster config is on a node."""
        import yaml

        path = pod_dir / "kubeconfig"
        # HTTPS: client-go (kubectl) sends a token only over TLS; the certificate is ketch's own.
        bracketed = f"[{host}]" if ":" in host else host
        cluster: dict = {"server": self.ctx.settings.kube_url if host == "127.0.0.1" else f"https://{bracketed}:{self.ctx.settings.port}"}
        if self.ctx.settings.tls_cert:  # inline, so the file alone is enough (a container mounts only it)
            import base64

            cluster["certificate-authority-data"] = base64.b64encode(Path(self.ctx.settings.tls_cert).read_bytes()).decode()
        user: dict = {}
        if token_file and os.path.exists(token_file):
            user["token"] = Path(token_file).read_text().strip()
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "ketch",
            "clusters": [{"name": "ketch", "cluster": cluster}],
            "users": [{"name": "ketch", "user": user}],
            "contexts": [{"name": "ketch", "context": {"cluster": "ketch", "user": "ketch", "namespace": namespace}}],
        }
        from ketch.machinery.authn import private_file

        # libyaml's emitter where PyYAML has it: the same text, ~10x faster (the pure-Python one cost each
        # container start ~4 ms, on the way to its exec)
        text = yaml.dump(cfg, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
        try:  # build() runs for each start, exec and probe restart: write only what changed
            same = path.read_text() == text
        except OSError:
            same = False
        if not same:
            private_file(path, text)
        return str(path)

    def bind_claims(self, pod: dict) -> None:
        ns = pod["metadata"].get("namespace", "default")
        for v in (pod.get("spec") or {}).get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.client.get(KINDS["PersistentVolumeClaim"], ns, claim)
            if pvc is None or (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            spec = pvc.get("spec") or {}
            self.client.patch_status(pvc, {
                "phase": "Bound",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
            })

    @abc.abstractmethod
    def pod_finished(self, worker: object) -> None:
        """A pod stopped holding resources (finished or deleted): a chance to admit waiting pods."""

    # -- selection and admission -----------------------------------------------------------------------

    def selects(self, pod: dict) -> str | None:
        """None when this kubelet may run ``pod``; otherwise why not (nodeName or nodeSelector)."""
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if node and node != self.node_name:
            return f"pod is bound to node {node!r}"
        if not node and self.cordoned():
            return "0/1 nodes are available: 1 node(s) were unschedulable."
        labels = self.node_labels()
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        return None

    def cordoned(self) -> bool:
        """``kubectl cordon`` (and drain) set the Node's ``spec.unschedulable``: no new Pods are scheduled
        here, while Pods already bound to it (a DaemonSet's) still run, as with Kubernetes' scheduler."""
        node = self.client.get(NODE, "", self.node_name)
        return bool(((node or {}).get("spec") or {}).get("unschedulable"))

    def fits(self, pod: dict, used: dict[str, float]) -> str | None:
        """None when the pod's requests fit into what is left of allocatable; else the scheduler's message."""
        alloc = self.allocatable()
        want = pod_requests(pod)
        short = [k for k in TRACKED if want.get(k, 0) > 0 and used.get(k, 0) + want[k] > alloc.get(k, 0) + 1e-9]
        if used.get("pods", 0) + 1 > alloc.get("pods", float("inf")):
            short.append("pods")
        if short:
            return "0/1 nodes are available: " + ", ".join(f"1 Insufficient {k}" for k in short) + "."
        return None

    # -- process supervision: where and how a container's process runs ------------------------------------
    # The pod lifecycle (init order, restarts and back-off, probes, limits, status) only uses these.

    @abc.abstractmethod
    async def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, preload: tuple[str, ...] = (),
                    requests: dict[str, float] | None = None, exit_file: str | None = None,
                    stdin: int | None = None, net: PodNet | None = None, pod_uid: str | None = None) -> Started:
        """Start one container process in its own process group, output to the given descriptors;
        raise CannotRun with Kubernetes' message when the executable cannot be found or started.
        ``exit_file`` is where something that outlives ketch should record how the process ended
        (``exit_status`` reads it back after a restart); a kubelet that cannot may ignore it.
        ``preload`` (the Pod's ``kubelet.ketch.dev/preload`` modules) is a hint that a ``python -m``
        container may be forked from an interpreter that has imported them; a kubelet may ignore it.
        ``requests`` (cpu cores, memory bytes, GPUs) is where a kubelet that places processes on other
        machines finds what the container needs; the local kubelet has admitted the Pod already.
        ``stdin`` (a container with ``stdin: true``) is the read end of its stdin FIFO; a kubelet whose
        processes run elsewhere may leave it unconnected. ``net`` is the Pod's network (network.py): a
        kubelet that gives Pods network namespaces starts the process inside the Pod's. ``pod_uid`` names
        the Pod, for a kubelet that runs it on the Pod's node."""

    @abc.abstractmethod
    def alive(self, pid: int, create_time: float | None) -> bool:
        """Whether ``pid`` is still the process that was started at ``create_time``."""

    @abc.abstractmethod
    async def terminate(self, pid: int, create_time: float | None, grace: float, exited: asyncio.Event | None = None) -> None:
        """SIGTERM the process tree, SIGKILL what is left after ``grace`` seconds."""

    @abc.abstractmethod
    def kill(self, pid: int) -> None:
        """SIGKILL the process tree at once (memory limit, orphan clean-up)."""

    @abc.abstractmethod
    def memory(self, pid: int) -> int:
        """Resident memory of the process tree, in bytes (memory limits are enforced against it)."""

    # -- what implementations provide -------------------------------------------------------------------

    @abc.abstractmethod
    async def run(self) -> None:
        """Register the node, recover what a previous run left, then run Pods until cancelled."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """ketch is stopping: end (or leave, by policy) the processes of the Pods this kubelet runs."""

    async def stand_down(self) -> None:
        """This process stopped leading (runtime/leader.py; ``run`` was cancelled): let another process's
        kubelet take the Pods over. By default as at shutdown; the local kubelet leaves them running."""
        await self.shutdown()

    def pod_removed(self, uid: str, pod_dir: Path) -> None:
        """The pod's directory here was removed (its worker is done): a kubelet that laid copies of its
        files elsewhere (the Ray kubelet, on nodes that do not share this home) removes those too."""
        return None

    @abc.abstractmethod
    def log_dir(self, namespace: str, pod: str, container: str):  # noqa: ANN201
        """Directory holding the container's shipped logs (``<restart>.log`` files, see logs.py)."""

    def archive_log(self, pod: dict, container: str, restart: int, path: Path) -> None:
        """A container run has ended and its log is complete: copy it to the shared store, if there is one."""
        if self.log_archive is not None:
            md = pod["metadata"]
            self.log_archive.upload(path, md.get("namespace") or "default", md["name"], md.get("uid") or "", container, restart)

    async def restore_logs(self, pod: dict, container: str) -> int:
        """Fetch a container's archived runs back into its local log directory (0: none archived)."""
        if self.log_archive is None:
            return 0
        md = pod["metadata"]
        ns = md.get("namespace") or "default"
        return await asyncio.to_thread(self.log_archive.restore, self.log_dir(ns, md["name"], container), ns, md["name"],
                                       md.get("uid") or "", container)

    async def read_log(self, namespace: str, pod: str, container: str, opts: LogOptions) -> AsyncIterator[str]:
        """Yield the container's log text; the default reads the shipped files."""
        from ketch.kubelet import logs

        d = self.log_dir(namespace, pod, container)
        rs = logs.runs(d)
        idx = rs[-2] if opts.previous else rs[-1]
        async for chunk in logs.read(d / f"{idx}.log", opts):
            yield chunk
