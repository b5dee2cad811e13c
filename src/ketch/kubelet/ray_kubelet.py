"""The Ray kubelet: the same Pods, their containers run as processes on a Ray cluster's nodes.

Everything about a Pod's life (init order, restarts and back-off, probes, limits, logs, status, deletion) is
the local kubelet's; what differs is where Pods go and how processes are supervised.

- **A Node per Ray node** (ray_nodes.py), from the cluster's membership (``ray.nodes()``), polled every
  ``KETCH_RAY_NODE_POLL`` seconds (default 2). A node Ray reports dead (or no longer lists) becomes
  NotReady (Ready=Unknown, the ``unreachable`` taints), and the Pods bound to it are marked Failed with
  reason ``NodeLost``, as the node lifecycle controller and Pod GC do for a lost machine, so their owners
  (Jobs, ReplicaSets, training jobs) make new ones, which go to the nodes that are left.
- **The kubelet is the scheduler of those Nodes** (scheduling.py): each Pod it takes is placed by
  nodeName, nodeSelector, node affinity, taints, resources, topology spread and pod (anti-)affinity,
  bound (``spec.nodeName``), and its containers' actors are pinned to that Ray node with
  ``NodeAffinitySchedulingStrategy(node_id, soft=False)``.
- **Addresses**: a Pod's ``podIP`` and ``hostIP`` are its node's IP; ketch's servers in Pods bind every
  interface (``KETCH_BIND_HOST=0.0.0.0``) so peers on other machines reach them there; a container whose
  env, command or args names ``$(<SERVICE>_SERVICE_HOST)`` gets the address of the node that runs the
  Service's Pod (how the training operators' MASTER_ADDR / TF_CONFIG reach a peer on another machine),
  and waits (CreateContainerConfigError) until that Pod is scheduled.

Each container is run by its node's **warm worker** (ray_workers.py: a detached named actor per Ray node and
ketch home, with the local kubelet's zygotes, so Pods the local kubelet would warm-start are forked warm there
too, and the others exec'd by its supervisor); a container that requests resources first gets a reservation
actor holding them on that node. The kubelet pulls each container's output into its log files, its exit
status and its memory from the worker, and asks it to terminate or kill the process group.

``KETCH_KUBELET=ray`` selects it; ``KETCH_RAY_ADDRESS`` names a cluster to join (``auto``, ``ray://...``,
an address), else ketch starts a local Ray instance (one node, named as the local kubelet's Node). Paths are
the same on every node (working and volume directories under KETCH_HOME, the Python environment): a node
whose worker does not see ketch's home (another machine) gets each container's files with its start, laid
at those paths there, and a pipeline task's directory comes back with its end (ray_files.py). The workers outlive ketch, so a restarted ketch on the same home and cluster adopts the
containers they run (``recover``): the Pods stay Running and their exits are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ketch.kinds.endpoints import SERVICE_REF, service_env_name
from ketch.kinds.meta import now
from ketch.kinds.resources import GPU, pod_requests
from ketch.kubelet import exits, ray_files, ray_nodes, ray_workers, scheduling
from ketch.kubelet.base import NODE, POD, CannotRun, Started
from ketch.kubelet.env import ConfigError
from ketch.kubelet.lifecycle import PodWorker
from ketch.kubelet.local import LocalKubelet
from ketch.kubelet.logs import Shipper
from ketch.kubelet.network import PodNet
from ketch.kubelet.warm import startup_env
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError

log = logging.getLogger(__name__)
RAY_NAMESPACE = "ketch"  # the Ray namespace of ketch's driver and of its detached workers
# The preload list each node's warm worker imports as soon as it starts: the pipelines controller's (runs.py).
PREWARM = os.environ.get("KETCH_RAY_PREWARM", "ketch.pipelines._preload")
# Container handles stand in for pids: never a pid on this host, and never one a previous ketch on this home
# handed out (they are saved as the containers' pids, and adopted by them).
_HANDLES = itertools.count(int(time.time() * 1e6))


class _Container:
    """The kubelet's side of one container on Ray: the node's warm worker that runs it (by key), the
    reservation holding its resources, where its output goes, how it ended."""

    def __init__(self, worker: object, key: str, stdout: int, stderr: int, release: Callable[[_Container], None],
                 offsets: tuple[int, int] = (0, 0), exit_file: str | None = None) -> None:
        self.worker = worker
        self.key = key
        self.release = release
        self.reservation: object | None = None
        self.exit_file = exit_file  # adopted: the end is written here if the supervisor's record is not
        self.fds = (os.dup(stdout), os.dup(stderr))  # the caller closes its own descriptors after spawn
        self.offsets = list(offsets)
        self.back: list[str] = []  # shipped directories whose changed files come back with the end (ray_files.py)
        self.code: int | None = None
        self.rss = 0
        self.pid: int | None = None
        self.ended = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.pump())

    async def pump(self) -> None:
        """Copy output until the process has ended and all of it is here. Each read waits on the worker
        for the end (up to a quarter second), so an ended container is seen at once."""
        try:
            while True:
                r = await self.worker.read.remote(self.key, *self.offsets, 0.25)  # type: ignore[attr-defined]
                if r.get("gone"):
                    log.warning("ray kubelet: the warm worker no longer knows container %s", self.key)
                    self.code = None
                    break
                for i, key in enumerate(("stdout", "stderr")):
                    if r[key]:
                        os.write(self.fds[i], r[key])
                        self.offsets[i] += len(r[key])
                self.rss = r["rss"]
                self.pid = r.get("pid")
                if r.get("files"):  # before the end is reported: whoever reads them (a pipeline's result) finds them
                    ray_files.receive(r["files"], self.back)
                if r["done"]:
                    self.code = r["code"]
                    break
        except asyncio.CancelledError:  # this kubelet stood down: the container is another's to adopt
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        except Exception as e:  # noqa: BLE001 - the worker or its node died: the exit status is unknowable
            log.warning("ray kubelet: lost container %s: %s", self.key, e)
            self.code = None
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.exit_file and self.code is not None and exits.read_exit(self.exit_file) is None:
            exits.record_exit(self.exit_file, self.code)  # for the adopting worker, when the node's disk is not ours
        if not self.ended.done():
            self.ended.set_result(self.code)
        self.release(self)


GANG = "ketch.dev/placement-group"  # set by the training operators on a job annotated ketch.dev/placement-strategy
GANG_STRATEGY = "ketch.dev/placement-strategy"
GANG_SIZE = "ketch.dev/placement-group-size"
GANG_INDEX = "ketch.dev/placement-index"


def gang_of(pod: dict) -> tuple[str, str, int, int] | None:
    """(group, strategy, size, this Pod's bundle index) of a Pod placed as one of a gang, else None."""
    a = pod["metadata"].get("annotations") or {}
    if not a.get(GANG):
        return None
    try:
        size, idx = int(a.get(GANG_SIZE, "")), int(a.get(GANG_INDEX, ""))
    except ValueError:
        return None
    strategy = str(a.get(GANG_STRATEGY) or "PACK").upper()
    if not 0 <= idx < size or strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
        return None
    return a[GANG], strategy, size, idx


def _bundle(pod: dict) -> dict[str, float]:
    """A Ray bundle holding what the Pod requests (Ray wants something in each: at least 0.01 CPU)."""
    req = pod_requests(pod)
    b = {"CPU": max(req.get("cpu", 0.0), 0.01)}
    if req.get(GPU):
        b["GPU"] = req[GPU]
    if req.get("memory"):
        b["memory"] = req["memory"]
    return b


@dataclass
class _Gang:
    gid: str
    strategy: str
    size: int
    pg: object | None = None
    ready: bool = False
    error: str = ""
    task: asyncio.Task | None = None
    bundles: dict[int, str] = field(default_factory=dict)  # bundle index -> Ray node id, as last read from the GCS
    table_error: str = ""  # why the group's table could not be read (the group is gone)
    reading: asyncio.Task | None = None  # a read of the table under way (in a thread: it is a blocking GCS call)


def _bundle_nodes(pg: object) -> dict[int, str]:
    """Where Ray placed each bundle of the group (blocking: a GCS call, run in a thread)."""
    import ray

    return {int(k): v for k, v in (ray.util.placement_group_table(pg).get("bundles_to_node_id") or {}).items()}


class RayKubelet(LocalKubelet):
    kind = "ray"
    local_processes = False  # no kubectl exec here: the processes are on Ray's nodes (warm-started by their workers)

    def __init__(self, ctx: Context, node_name: str | None = None) -> None:
        super().__init__(ctx, node_name)  # the name of the node of a Ray instance ketch starts itself
        self.address = os.environ.get("KETCH_RAY_ADDRESS") or None
        self.containers: dict[int, _Container] = {}
        self._worker_cls = None
        self._reservation_cls = None
        self.node_workers: dict[str, object] = {}  # Ray node id -> that node's warm worker (a detached actor)
        self.home_id = hashlib.sha1(str(Path(self.home).resolve()).encode()).hexdigest()[:8]  # whose workers are whose
        self.members: dict[str, dict] = {}  # Node name -> its ray.nodes() entry, as last polled
        self.nodes: dict[str, dict] = {}  # Node name -> the Node object, as last read or written
        self.lost: set[str] = set()  # Nodes whose Pods were failed as NodeLost (until the node is back)
        self._status_written: dict[str, tuple[str, float]] = {}  # name -> (what was written, when)
        self.poll = float(os.environ.get("KETCH_RAY_NODE_POLL") or 2)
        self.pods_per_node = float(os.environ.get("KETCH_NODE_PODS") or 1000)
        self.gangs: dict[str, _Gang] = {}  # placement group name -> the gang of Pods placed by it
        self.api_address: str | None = None  # ketch's address for Pods on other machines (None: loopback only)
        self.marker = self.home / "kubelet" / "ray-home-marker"  # a node's worker that reads this token sees this home
        self.marker_token = secrets.token_hex(16)
        self.sees_home: dict[str, bool] = {}  # Ray node id -> whether its worker sees this home (else files are shipped)
        self.laid: dict[str, dict[str, set[str]]] = {}  # pod uid -> Ray node id -> directories laid there
        self._syncing: asyncio.Future | None = None  # the membership sync under way (sync_shared)

    # -- the cluster ----------------------------------------------------------------------------------

    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            kw: dict = {"address": self.address, "namespace": RAY_NAMESPACE, "log_to_driver": False, "include_dashboard": False}
            if self.address is None:
                kw["labels"] = {ray_nodes.NAME_LABEL: self.node_name}
                if os.environ.get("KETCH_RAY_NUM_CPUS"):
                    kw["num_cpus"] = int(os.environ["KETCH_RAY_NUM_CPUS"])
            ray.init(**kw)
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(self.marker_token)
        self._worker_cls = ray.remote(ray_workers.NodeWorker)
        self._reservation_cls = ray.remote(ray_workers.Reservation)
        self.api_address = ray_nodes.reachable_api_host(self.ctx.settings.host, ray.util.get_node_ip_address())

    @property
    def cluster(self) -> str:
        return self.address or "local"

    def capacity(self) -> dict[str, float]:
        """What the live nodes have together (what a Pod's resourceFieldRef limits default to)."""
        tot = {"cpu": 0.0, "memory": 0.0, GPU: 0.0, "pods": 0.0}
        for e in self.members.values():
            if ray_nodes.alive(e):
                for k, v in ray_nodes.capacity(e, self.pods_per_node).items():
                    if k in tot:
                        tot[k] += v
        return tot

    def owns_node(self, name: str) -> bool:
        return name in self.nodes or name in self.members

    def node_ip(self, name: str | None) -> str | None:
        e = self.members.get(name or "")
        return ray_nodes.ip(e) if e is not None else None

    def register_node(self) -> dict:
        """The Nodes are the members (see ``sync_nodes``); nothing of the local kubelet's one Node."""
        return {}

    async def heartbeat(self, every: float = 60.0) -> None:
        """Poll Ray's membership: Nodes come, change and go with the Ray nodes."""
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.sync_shared()
                self._sweep_gangs()
                for gang in self.gangs.values():
                    if gang.ready:
                        self._read_group(gang)  # a group Ray lost or moved is seen (off the loop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ray kubelet: syncing the nodes failed")

    async def sync_shared(self) -> None:
        """``sync_nodes``, one at a time: a caller while one is under way waits for that one (a dead node's
        every container asks at once; one ``ray.nodes()`` answers them all). A waiter's cancel does not
        cancel the sync the others wait on."""
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.ensure_future(self.sync_nodes())
        await asyncio.shield(self._syncing)

    async def sync_nodes(self) -> None:
        import ray

        entries = await asyncio.to_thread(ray.nodes)
        self.apply_membership(entries)
        live = {ray_nodes.node_id(e) for e in self.members.values() if ray_nodes.alive(e)}
        for nid in set(self.node_workers) - live:
            self.node_workers.pop(nid, None)  # gone with its node
            self.sees_home.pop(nid, None)
        for nid in live - set(self.node_workers):
            self._node_worker(nid).ping.remote([m for m in PREWARM.split(",") if m], startup_env(dict(os.environ)))  # started now, not on the first container

    def _node_worker(self, nid: str) -> object:
        """The warm worker of Ray node ``nid`` for this home: found by name (a previous ketch's, still
        running its containers) or made, detached, pinned to the node, holding nothing."""
        w = self.node_workers.get(nid)
        if w is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            w = self._worker_cls.options(  # type: ignore[union-attr]
                name=ray_workers.worker_name(self.home_id, nid), namespace=RAY_NAMESPACE, get_if_exists=True, lifetime="detached",
                num_cpus=0, max_concurrency=10000, scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)).remote()
            self.node_workers[nid] = w
        return w

    def apply_membership(self, entries: list[dict]) -> None:
        """Register or refresh a Node per Ray node; a dead one (or one Ray no longer lists) is NotReady
        and its Pods are failed, once."""
        seen: dict[str, dict] = {}
        for e in entries:
            name = ray_nodes.node_name(e)
            prev = seen.get(name)
            if prev is None or (ray_nodes.alive(e) and not ray_nodes.alive(prev)):
                seen[name] = e  # a node restarted under the same name: the live entry wins
        for n in self.client.list(NODE, None, {"ketch.dev/kubelet": "ray"}):
            self.nodes[n["metadata"]["name"]] = n
        self.members = seen
        for name, e in seen.items():
            self._write_node(name, e)
        for name in sorted(set(self.nodes) - set(seen)):
            node = self.nodes[name]
            if _ready(node):
                self._write_gone(name, node)
        for name in list(self.nodes):
            if not _ready(self.nodes[name]) and name not in self.lost:
                self.lost.add(name)
                self._fail_pods_of(name)
            elif _ready(self.nodes[name]):
                self.lost.discard(name)

    def _write_node(self, name: str, entry: dict) -> None:
        want = ray_nodes.to_node(entry, self.cluster, self.pods_per_node)
        cur = self.nodes.get(name)
        if cur is None:
            try:
                cur = self.client.create({**want, "spec": {}})
            except StatusError as e:
                if e.code != 409:
                    raise
                cur = self.client.get(NODE, "", name)
                if cur is None:
                    return
        labels = {**(cur["metadata"].get("labels") or {}), **want["metadata"]["labels"]}
        if labels != cur["metadata"].get("labels"):
            cur = self.client.patch(NODE, "", name, {"metadata": {"labels": labels}})
        mine = (want.get("spec") or {}).get("taints") or []
        cur = self._set_taints(cur, mine)
        self.nodes[name] = self._write_status(cur, want["status"])

    def _write_gone(self, name: str, node: dict) -> None:
        """A Node of this cluster that Ray does not list at all (a previous cluster's, or pruned)."""
        st = dict(node.get("status") or {})
        ts = now()
        st["conditions"] = [c if c.get("type") != "Ready" else
                            {**c, "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Ray does not list this node any more",
                             "lastHeartbeatTime": ts, "lastTransitionTime": ts} for c in st.get("conditions") or []]
        node = self._set_taints(node, ray_nodes.unreachable_taints())
        self.nodes[name] = self._write_status(node, st)

    def _set_taints(self, node: dict, mine: list[dict]) -> dict:
        ours = {ray_nodes.UNREACHABLE_TAINT}
        have = (node.get("spec") or {}).get("taints") or []
        keep = [t for t in have if t.get("key") not in ours]
        kept_ours = [t for t in have if t.get("key") in ours]
        if {(t["key"], t["effect"]) for t in kept_ours} == {(t["key"], t["effect"]) for t in mine}:
            return node
        return self.client.patch(NODE, "", node["metadata"]["name"], {"spec": {"taints": keep + mine or None}})

    def _write_status(self, node: dict, want: dict) -> dict:
        """Patch the status when it changed (timestamps aside), or every minute as a heartbeat; keeps each
        condition's lastTransitionTime while its status holds."""
        name = node["metadata"]["name"]
        old = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}
        conds = []
        for c in want.get("conditions") or []:
            prev = old.get(c["type"])
            if prev and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
                c = {**c, "lastTransitionTime": prev["lastTransitionTime"]}
            conds.append(c)
        want = {**want, "conditions": conds}
        digest = json.dumps({**want, "conditions": [{k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in conds]}, sort_keys=True)
        last = self._status_written.get(name)
        if last is not None and last[0] == digest and time.monotonic() - last[1] < 60:
            return node
        out = self.client.patch_status(node, want)
        self._status_written[name] = (digest, time.monotonic())
        return out

    def _fail_pods_of(self, name: str) -> None:
        """The node lifecycle controller's part: Pods bound to a lost Node fail (NodeLost), so their owners
        replace them; the containers' actors went with the node."""
        log.warning("ray kubelet: node %s is lost; failing its pods", name)
        mine = set()
        for w in list(self.workers.values()):
            if w.done or (w.pod.get("spec") or {}).get("nodeName") != name:
                continue
            mine.add(w.uid)
            msg = f"Node {name} which was running pod {w.name} is unresponsive"
            w.failed = ("NodeLost", msg)
            w.save()
            w.wake.set()
            self.client.event(w.pod, "Warning", "NodeLost", msg, "node-controller")
        for pod in self.client.list(POD, None, fields=f"spec.nodeName={name}"):
            md = pod["metadata"]
            if md["uid"] in mine or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or md.get("deletionTimestamp"):
                continue
            self._fail_lost(pod, name)

    def _fail_lost(self, pod: dict, name: str) -> None:
        """A Pod bound to a lost Node that no worker runs here: Failed, NodeLost."""
        md = pod["metadata"]
        self.pending.pop(md["uid"], None)
        msg = f"Node {name} which was running pod {md['name']} is unresponsive"
        with contextlib.suppress(StatusError):
            self.client.patch_status(pod, {"phase": "Failed", "reason": "NodeLost", "message": msg})
            self.client.event(pod, "Warning", "NodeLost", msg, "node-controller")

    async def watch_uncordon(self) -> None:
        """Changes to the Nodes (cordon, taints, a node joining or coming back) may make room: the Pods
        held Pending are considered again."""
        rd = self.ctx.api.rd(*NODE)
        while True:
            try:
                async for typ, node in self.ctx.api.watch(rd, label_selector="ketch.dev/kubelet=ray"):
                    if typ in ("ADDED", "MODIFIED"):
                        self.nodes[node["metadata"]["name"]] = node
                    elif typ == "DELETED":
                        self.nodes.pop(node["metadata"]["name"], None)
                    if self.pending:
                        self.pod_finished(None)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ray kubelet: watching nodes failed")
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        await asyncio.to_thread(self._connect)
        await self.sync_nodes()
        await super().run()

    async def shutdown(self) -> None:
        await super().shutdown()
        if self.leave_running:  # the workers keep the containers for the next ketch: stop watching, forget nothing
            for c in list(self.containers.values()):
                if c.task is not None:
                    c.task.cancel()
            self.containers.clear()
        if not self.leave_running:  # its containers are ended: the workers (and their zygotes) go too
            for w in self.node_workers.values():
                self._drop(w)
            self.node_workers.clear()
        import ray

        if ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)

    # -- scheduling: this kubelet places Pods on its Nodes ------------------------------------------------

    def placed(self) -> list[tuple[dict, str]]:
        """(pod, node) of every Pod this kubelet runs that still holds its place."""
        return [(w.pod, (w.pod.get("spec") or {}).get("nodeName") or "") for w in self.workers.values() if not w.done]

    def consider(self, pod: dict) -> None:
        """A Pod without a worker: place it (filter, score, bind) and start it, or hold it Pending with the
        scheduler's reasons. A Pod bound by name to one of the Nodes is admitted there if it fits."""
        md, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        uid = md["uid"]
        if md.get("deletionTimestamp") or st.get("phase") in ("Succeeded", "Failed"):
            self.pending.pop(uid, None)
            return
        node = spec.get("nodeName")
        scheduled = False
        if node:
            target = self.nodes.get(node)
            if target is None:
                return
            if node in self.lost:
                self._fail_lost(pod, node)
                return
            short = scheduling.fit_reasons(pod, target, self.placed())
            if short:
                self._unschedulable(pod, "0/1 nodes are available: " + ", ".join(f"1 {r}" for r in short) + ".")
                self.pending[uid] = pod
                return
        else:
            g = gang_of(pod)
            if g is not None:  # placed by Ray, with the rest of its group
                node, why = self._gang_node(pod, g)
            else:
                d = scheduling.schedule(pod, sorted(self.nodes.values(), key=lambda n: n["metadata"]["name"]), self.placed())
                node, why = d.node, d.message
            if node is None:
                self._unschedulable(pod, why)
                self.pending[uid] = pod
                return
            try:
                pod = self.client.patch(POD, md.get("namespace", ""), md["name"], {"spec": {"nodeName": node}})
            except StatusError as e:
                if e.code == 404:
                    self.pending.pop(uid, None)
                    return
                raise
            scheduled = True
        self.pending.pop(uid, None)
        w = PodWorker(self, pod)
        self.start_worker(w)
        if scheduled:
            msg = f"Successfully assigned {md.get('namespace')}/{md['name']} to {node}"
            asyncio.get_running_loop().call_soon(self.client.event, pod, "Normal", "Scheduled", msg, "default-scheduler")

    # -- gangs: a training job's replicas as one Ray placement group ------------------------------------------

    def _gang_members(self, gid: str) -> dict[int, dict]:
        """The Pods of placement group ``gid`` that still hold (or wait for) a place, by bundle index."""
        out: dict[int, dict] = {}
        for p in [w.pod for w in self.workers.values() if not w.done] + list(self.pending.values()):
            g = gang_of(p)
            if g is not None and g[0] == gid:
                out[g[3]] = p
        return out

    def _gang_node(self, pod: dict, g: tuple[str, str, int, int]) -> tuple[str | None, str]:
        """The Node of the Pod's bundle once Ray has placed the whole group (all bundles or none); until
        then None and why."""
        gid, strategy, size, idx = g
        gang = self.gangs.setdefault(gid, _Gang(gid, strategy, size))
        waiting = f"waiting for Ray to place placement group {gid} ({size} bundles, {strategy})"
        if gang.pg is None:
            members = {**self._gang_members(gid), idx: pod}
            if set(members) != set(range(size)):
                return None, f"waiting for {size - len(set(members) & set(range(size)))} more Pod(s) of placement group {gid} (a gang of {size})"
            if gang.task is None:
                gang.task = asyncio.create_task(self._make_group(gang, [members[i] for i in range(size)]))
            return None, waiting
        if not gang.ready:
            return None, gang.error or waiting
        if gang.table_error:  # the group is gone (removed, or Ray lost it)
            return None, gang.table_error
        nid = gang.bundles.get(idx)
        name = next((n for n, e in self.members.items() if ray_nodes.node_id(e) == nid and ray_nodes.alive(e)), None)
        if name is None:
            self._read_group(gang)  # Ray may have moved the bundle since: read again, the Pod is considered after
            return None, f"bundle {idx} of placement group {gid} is not placed on a live node yet"
        return name, ""

    def _read_group(self, gang: _Gang) -> None:
        """Read the group's bundle placement again, off the event loop (once at a time per group); when it
        changed (or the group is gone), the held Pods are considered again."""
        if gang.pg is None or (gang.reading is not None and not gang.reading.done()):
            return

        async def read() -> None:
            try:
                bundles, error = await asyncio.to_thread(_bundle_nodes, gang.pg), ""
            except Exception as e:  # noqa: BLE001 - the group is gone (removed, or Ray lost it)
                bundles, error = {}, f"placement group {gang.gid}: {e}"
            if (bundles, error) != (gang.bundles, gang.table_error):
                gang.bundles, gang.table_error = bundles, error
                if self.pending:
                    self.pod_finished(None)  # type: ignore[arg-type]

        gang.reading = asyncio.create_task(read())

    async def _make_group(self, gang: _Gang, pods: list[dict]) -> None:
        """Ask Ray for the gang's placement group and wait until it is placed (all bundles or none). Cancelled
        on the way (the gang went, the kubelet stops), the group is removed, also one still being made."""
        from ray.util.placement_group import placement_group, remove_placement_group

        bundles = [_bundle(p) for p in pods]
        loop = asyncio.get_running_loop()
        made = loop.run_in_executor(None, placement_group, bundles, gang.strategy, f"ketch-{gang.gid}")
        try:
            gang.pg = await asyncio.shield(made)
            await gang.pg.ready()  # type: ignore[attr-defined]
            gang.bundles = await asyncio.to_thread(_bundle_nodes, gang.pg)
        except asyncio.CancelledError:
            def remove(f: asyncio.Future) -> None:
                if not f.cancelled() and f.exception() is None:
                    loop.run_in_executor(None, functools.partial(_remove_quietly, remove_placement_group, f.result()))
            made.add_done_callback(remove)
            gang.pg = None
            raise
        except Exception as e:  # noqa: BLE001 - refused by Ray: said on the Pods
            gang.error = f"Ray refused placement group {gang.gid}: {e}"
            log.warning("ray kubelet: %s", gang.error)
            self.pod_finished(None)  # type: ignore[arg-type]
            return
        gang.ready = True
        log.info("ray kubelet: placement group %s placed (%d bundles, %s)", gang.gid, len(bundles), gang.strategy)
        self.pod_finished(None)  # type: ignore[arg-type]  # the held Pods are bound now

    def _sweep_gangs(self) -> None:
        """A group none of whose Pods holds a place any more is removed, and its reservation with it."""
        for gid, gang in list(self.gangs.items()):
            if self._gang_members(gid):
                continue
            del self.gangs[gid]
            if gang.task is not None:
                gang.task.cancel()
            if gang.pg is not None:
                from ray.util.placement_group import remove_placement_group

                with contextlib.suppress(Exception):
                    remove_placement_group(gang.pg)

    def _gang_strategy(self, pod: dict | None) -> object | None:
        """How the Pod's actors are scheduled when it belongs to a placed group: into its bundle."""
        g = gang_of(pod) if pod is not None else None
        gang = self.gangs.get(g[0]) if g is not None else None
        if gang is None or not gang.ready or gang.pg is None:
            return None
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(placement_group=gang.pg, placement_group_bundle_index=g[3])  # type: ignore[index]

    # -- what a Pod sees of its node ---------------------------------------------------------------------

    def pod_net(self, pod: dict) -> PodNet:
        return PodNet(self.node_ip((pod.get("spec") or {}).get("nodeName")) or "127.0.0.1")

    def api_host(self, pod: dict) -> str:
        """ketch's reachable address when it listens beyond loopback (a Pod may run on another machine)."""
        return self.api_address or super().api_host(pod)

    def host_ip(self, pod: dict) -> str:
        return self.node_ip((pod.get("spec") or {}).get("nodeName")) or "127.0.0.1"

    def bind_host(self, net: PodNet | None) -> str:
        return "0.0.0.0"  # peers on other nodes reach a Pod at its node's address

    def extra_env(self, pod: dict, container: dict) -> dict[str, str]:
        """``<SVC>_SERVICE_HOST`` / ``_SERVICE_PORT`` for each Service the container refers to as
        ``$(<SVC>_SERVICE_HOST)``: the address of the node running the Service's Pod. ConfigError (the
        container waits, retried) while that Pod is not scheduled yet."""
        texts = [str(e.get("value") or "") for e in container.get("env") or []]
        texts += [str(x) for x in (container.get("command") or []) + (container.get("args") or [])]
        wanted = {m.group(1) for t in texts for m in SERVICE_REF.finditer(t)}
        if not wanted:
            return {}
        ns = pod["metadata"].get("namespace", "default")
        out: dict[str, str] = {}
        for svc in self.client.list(("v1", "Service"), ns):
            prefix = service_env_name(svc["metadata"]["name"])
            if prefix not in wanted:
                continue
            sspec = svc.get("spec") or {}
            ports = sspec.get("ports") or []
            if ports:
                out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
            sel = sspec.get("selector")
            if not sel:
                continue
            backing = sorted((p for p in self.client.list(POD, ns, sel)
                              if (p.get("spec") or {}).get("nodeName") and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                              and not p["metadata"].get("deletionTimestamp")), key=lambda p: p["metadata"]["name"])
            host = next((ip for p in backing if (ip := self.node_ip(p["spec"]["nodeName"]))), None)
            if host is None:
                raise ConfigError(f'waiting for a Pod of Service "{svc["metadata"]["name"]}" to be scheduled: its address is its node\'s')
            out[f"{prefix}_SERVICE_HOST"] = host
        return out

    # -- process supervision through the nodes' warm workers -------------------------------------------

    async def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, preload: tuple[str, ...] = (),
                    requests: dict[str, float] | None = None, exit_file: str | None = None,
                    stdin: int | None = None, net: PodNet | None = None, pod_uid: str | None = None) -> Started:
        """Start the container through its node's warm worker: forked from a warm zygote when the Pod asks
        for preloads and the command fits (as the local kubelet decides), else exec'd by the supervisor. A
        container that requests resources (or is in a placement group) first gets a reservation actor
        holding them on that node."""
        w = self.workers.get(pod_uid or "")
        node = ((w.pod.get("spec") or {}).get("nodeName") if w is not None else None) or ""
        entry = self.members.get(node)
        if entry is None or not ray_nodes.alive(entry):
            raise CannotRun(f"node {node or '?'} is not a live Ray node")
        nid = ray_nodes.node_id(entry)
        key = container_key(pod_uid or "", exit_file)
        req = requests or {}
        opts = {"num_cpus": float(req.get("cpu", 0)), "num_gpus": float(req.get(GPU, 0))}
        if req.get("memory"):
            opts["memory"] = float(req["memory"])
        in_group = self._gang_strategy(w.pod if w is not None else None)
        reservation = None
        if any(opts.values()) or in_group is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            reservation = self._reservation_cls.options(  # type: ignore[union-attr]
                **opts, name=ray_workers.reservation_name(self.home_id, key), namespace=RAY_NAMESPACE, lifetime="detached",
                scheduling_strategy=in_group or NodeAffinitySchedulingStrategy(nid, soft=False)).remote()
            try:
                gpus = await reservation.gpu_ids.remote()  # type: ignore[attr-defined]
            except BaseException as e:  # a cancel too (the Pod went while Ray placed it): the detached actor is not left holding
                self._drop(reservation)
                if not isinstance(e, Exception):
                    raise
                raise CannotRun(f"ray could not reserve the container's resources on node {node}: {e}") from e
            if opts["num_gpus"]:
                ids = ",".join(gpus)
                env = {**env, "CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids}
        worker = self._node_worker(nid)
        try:
            ship = None
            if w is not None and not await self._sees_home(nid, worker):
                ship = ray_files.collect(w.pod, w.dir, self.home, argv, env, cwd, self.ctx.services.get("pod_file_roots") or [])
                self.laid.setdefault(w.uid, {}).setdefault(nid, set()).update([str(w.dir), *ship["back"]])
            info = await self._started(worker.spawn.remote(key, argv, env, cwd, list(preload) if stdin is None else [], exit_file, ship), worker, key)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            if reservation is not None:
                self._drop(reservation)
            raise
        except Exception as e:  # noqa: BLE001 - the worker could not be had on its node
            self.node_workers.pop(nid, None)
            if reservation is not None:
                self._drop(reservation)
            raise CannotRun(f"ray could not start the container on node {node}: {e}") from e
        if info["error"]:
            if reservation is not None:
                self._drop(reservation)
            raise CannotRun(info["error"])
        c = _Container(worker, key, stdout, stderr, self._release)
        c.back = list((ship or {}).get("back") or [])
        c.reservation = reservation
        c.pid = info["pid"]
        handle = next(_HANDLES)
        self.containers[handle] = c
        c.start()
        log.debug("ray kubelet: %s started on %s (ray node %s) as pid %s%s", argv[0], node, info["node"], info["pid"], " (warm)" if info["warm"] else "")
        return Started(handle, time.time(), self._waiter(handle, c, node))

    async def _sees_home(self, nid: str, worker: object) -> bool:
        """Whether node ``nid`` sees this ketch's home (the same machine, or a shared filesystem): asked
        once per node's worker. Else each container's files are shipped there (ray_files.py)."""
        if nid not in self.sees_home:
            try:
                self.sees_home[nid] = bool(await worker.sees.remote(str(self.marker), self.marker_token))  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001 - a worker of an older ketch (adopted by name): shared paths, as it assumed
                log.warning("ray kubelet: cannot ask the worker of Ray node %s whether it sees %s (%s): taking it that it does", nid[:12], self.home, e)
                self.sees_home[nid] = True
            if not self.sees_home[nid]:
                log.info("ray kubelet: Ray node %s does not see %s: Pods' files are shipped there", nid[:12], self.home)
        return self.sees_home[nid]

    def pod_removed(self, uid: str, pod_dir: Path) -> None:
        for nid, dirs in self.laid.pop(uid, {}).items():
            w = self.node_workers.get(nid)
            if w is not None:
                with contextlib.suppress(Exception):
                    w.drop.remote(sorted(dirs))  # type: ignore[attr-defined]

    @staticmethod
    async def _started(call: Awaitable[dict], worker: object, key: str) -> dict:
        """The worker's answer to a spawn. Cancelled while it is under way (the Pod went, the kubelet stops),
        the process it may still start is not left running unwatched: once the answer is in, the worker
        forgets (kills) the container. (A forget sent at once could overtake the spawn in the async actor.)"""
        fut = asyncio.ensure_future(call)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            def forget(f: asyncio.Future) -> None:
                if not f.cancelled() and f.exception() is None and f.result().get("pid"):
                    with contextlib.suppress(Exception):
                        worker.forget.remote(key)  # type: ignore[attr-defined]
            fut.add_done_callback(forget)
            raise

    def _waiter(self, handle: int, c: _Container, node: str) -> Callable[[], Awaitable[int | None]]:
        async def wait() -> int | None:
            try:
                code = await asyncio.shield(c.ended)
                if code is None:
                    await self._lost_actor(node)
                return code
            finally:
                if c.ended.done():
                    self.containers.pop(handle, None)

        return wait

    async def _lost_actor(self, node: str) -> None:
        """A container's worker is gone. If its node went with it the Pod is NodeLost, not a container that
        ended unknowably: ask Ray about the membership now (and again for a few seconds, as Ray may take
        a moment to declare the node dead) before the exit is reported."""
        deadline = time.monotonic() + float(os.environ.get("KETCH_RAY_LOST_GRACE") or 10)
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await self.sync_shared()
            if node in self.lost:
                return
            await asyncio.sleep(0.5)

    def _release(self, c: _Container) -> None:
        """The container's end is here: the worker forgets it, its reservation is given back."""
        import ray

        if not ray.is_initialized():
            return
        with contextlib.suppress(Exception):
            c.worker.forget.remote(c.key)  # type: ignore[attr-defined]
        if c.reservation is not None:
            self._drop(c.reservation)

    @staticmethod
    def _drop(actor: object) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(actor)

    # -- adoption: the containers a previous ketch on this home left running on the Ray cluster --------------

    def recover(self) -> None:
        """Before the local kubelet's recovery reads the saved Pods: find each live node's warm worker of
        this home (by name), list its containers, and take back every one a saved Pod records as running,
        under the handle saved as its pid, so the Pod stays Running with the same process and its exit
        is recorded when it ends. Containers no saved Pod claims are ended."""
        self._adopt()
        super().recover()

    def _adopt(self) -> None:
        import ray

        held: dict[str, tuple[object, dict, str]] = {}  # key -> (worker, what it says of the container, node)
        for e in self.members.values():
            if not ray_nodes.alive(e):
                continue
            nid = ray_nodes.node_id(e)
            try:
                w = ray.get_actor(ray_workers.worker_name(self.home_id, nid), namespace=RAY_NAMESPACE)
                listing = ray.get(w.list.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - no worker of this home there (or it died): nothing to adopt
                continue
            self.node_workers[nid] = w
            for key, info in listing.items():
                held[key] = (w, info, ray_nodes.node_name(e))
        if not held:
            return
        root = self.home / "kubelet" / "pods"
        claimed: set[str] = set()
        for f in root.glob("*/state.json") if root.is_dir() else []:
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            for name, cs in (data.get("containers") or {}).items():
                key = f"{data['uid']}/{name}/{cs.get('run')}"
                if key not in held or not cs.get("pid") or "running" not in (cs.get("state") or {}):
                    continue
                worker, info, node = held[key]
                claimed.add(key)
                ship = Shipper(self.log_dir(data["namespace"], data["name"], name), int(cs["run"]))
                fds = ship.open_raw()
                sizes = tuple(os.fstat(fds[s]).st_size for s in ("stdout", "stderr"))
                try:
                    c = _Container(worker, key, fds["stdout"], fds["stderr"], self._release, offsets=sizes,  # type: ignore[arg-type]
                                   exit_file=str(exits.exit_file(f.parent, name, int(cs["run"]))))
                finally:
                    for fd in fds.values():
                        os.close(fd)
                c.pid = info["pid"]
                with contextlib.suppress(Exception):
                    c.reservation = ray.get_actor(ray_workers.reservation_name(self.home_id, key), namespace=RAY_NAMESPACE)
                self.containers[int(cs["pid"])] = c
                c.start()
                log.info("ray kubelet: adopted %s/%s container %s (pid %s on node %s)", data["namespace"], data["name"], name, info["pid"], node)
        for key in set(held) - claimed:  # started for a Pod no saved state claims: not to be left running
            worker = held[key][0]
            worker.forget.remote(key)  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                self._drop(ray.get_actor(ray_workers.reservation_name(self.home_id, key), namespace=RAY_NAMESPACE))

    async def stand_down(self) -> None:
        """Another ketch leads: its kubelet adopts the containers from the warm workers, which keep them;
        this one stops watching them (without ending or forgetting them)."""
        await super().stand_down()
        for c in list(self.containers.values()):
            if c.task is not None:
                c.task.cancel()
        self.containers.clear()

    def alive(self, pid: int, create_time: float | None) -> bool:
        c = self.containers.get(pid)
        return c is not None and not c.ended.done()

    async def terminate(self, pid: int, create_time: float | None, grace: float, exited: asyncio.Event | None = None) -> None:
        c = self.containers.get(pid)
        if c is None or c.ended.done():
            return
        with contextlib.suppress(Exception):
            await c.worker.terminate.remote(c.key, grace)  # type: ignore[attr-defined]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(c.ended), 5.0)

    def kill(self, pid: int) -> None:
        c = self.containers.get(pid)
        if c is not None and not c.ended.done():
            c.worker.signal.remote(c.key, int(signal.SIGKILL))  # type: ignore[attr-defined]

    def memory(self, pid: int) -> int:
        c = self.containers.get(pid)
        return c.rss if c is not None else 0


def container_key(pod_uid: str, exit_file: str | None) -> str:
    """``<pod uid>/<container>/<run>``: how the warm worker knows a container run, from its exit file's
    name (``<container>.<run>.exit``: container names are DNS labels, without dots)."""
    base = os.path.basename(exit_file or "")
    name, _, run = base[: -len(".exit")].rpartition(".") if base.endswith(".exit") else ("", "", "")
    if not name or not run.isdigit():
        return f"{pod_uid}/{base or 'container'}/{next(_HANDLES)}"
    return f"{pod_uid}/{name}/{run}"


def _remove_quietly(remove: Callable[[object], None], pg: object) -> None:
    with contextlib.suppress(Exception):
        remove(pg)


def _ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (node.get("status") or {}).get("conditions") or [])
