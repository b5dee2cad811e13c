"""What a framework tells the shared replica-job engine (Kubeflow Training Operator v1 semantics).

The engine owns the lifecycle (pods, services, restarts, deadlines, conditions); a framework only says
which replica types exist, what env wires them together, and when the job counts as running or done.
Addresses are real: every replica gets its own port on the host its pod runs on, recorded in the
replica's Service, so jobs never collide and ``MASTER_ADDR:MASTER_PORT`` reaches the peer process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ketch.kinds.definitions import FieldError

GROUP = "kubeflow.org"
VERSION = "v1"


@dataclass
class Topology:
    """Everything env wiring needs: the job, its normalized replica specs and each replica's address."""

    job: dict
    specs: dict[str, dict]  # canonical replica type -> ReplicaSpec
    addrs: dict[tuple[str, int], tuple[str, int]]  # (rtype, index) -> (host, port)

    @property
    def name(self) -> str:
        return self.job["metadata"]["name"]

    @property
    def spec(self) -> dict:
        return self.job.get("spec") or {}

    def replicas(self, rtype: str) -> int:
        s = self.specs.get(rtype)
        return int(s.get("replicas", 1)) if s is not None else 0

    @property
    def total(self) -> int:
        return sum(self.replicas(t) for t in self.specs)

    def addr(self, rtype: str, index: int = 0) -> tuple[str, int]:
        return self.addrs[(rtype, index)]


EnvFn = Callable[[Topology, str, int], list[dict]]


@dataclass
class Framework:
    kind: str
    specs_field: str
    replica_types: tuple[str, ...]  # canonical names, in the order replicas are ranked
    container: str  # the container the operator wires (and that must exist)
    port_name: str
    default_port: int
    default_restart: str
    env: EnvFn
    # (topology, replica statuses) -> True when the job succeeded
    succeeded: Callable[[Topology, dict[str, dict]], bool]
    # (topology, replica statuses) -> True when the job counts as running
    running: Callable[[Topology, dict[str, dict]], bool]
    validate: Callable[[dict], list[FieldError]] = lambda spec: []
    env_all_containers: bool = True  # TFJob wires only the "tensorflow" container
    master_role: Callable[[dict[str, dict], str, int], bool] = lambda specs, rt, i: False
    extra: dict = field(default_factory=dict)
    version: str = VERSION
    # Hooks for kinds whose operator does more than env wiring (MPIJob): the replica's pod/service name,
    # the restart policy a replica type defaults to, owned ConfigMaps/Secrets the pods mount (created
    # before the pods; ConfigMaps kept up to date), a last touch on each pod, and replicas that wait for
    # others (created only once ``defer`` says so).
    pod_name: Callable[[str, str, int], str] | None = None
    default_restarts: dict[str, str] = field(default_factory=dict)
    objects: Callable[[Topology], list[dict]] = lambda topo: []
    decorate: Callable[[Topology, str, int, dict], None] = lambda topo, rt, i, pod: None
    defer: Callable[[Topology, str, int, dict[str, dict]], bool] = lambda topo, rt, i, pods: False

    @property
    def plural(self) -> str:
        return self.kind.lower() + "s"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{self.version}"

    def main_container(self, containers: list[dict]) -> str | None:
        """The container the operator wires: the named one, or (``container=""``) the first."""
        if self.container:
            return self.container
        return containers[0].get("name") if containers and isinstance(containers[0], dict) else None

    def canonical(self, rtype: str) -> str | None:
        """Replica type keys are case-insensitive, as the operator's defaulter normalizes them."""
        for t in self.replica_types:
            if t.lower() == str(rtype).lower():
                return t
        return None

    def normalized_specs(self, job: dict) -> dict[str, dict]:
        raw = (job.get("spec") or {}).get(self.specs_field) or {}
        out: dict[str, dict] = {}
        for k in self.replica_types:  # stable rank order
            for rk, rs in raw.items():
                if self.canonical(rk) == k and isinstance(rs, dict):
                    out[k] = rs
        return out


def env(name: str, value: object) -> dict:
    return {"name": name, "value": str(value)}


def succeeded_count(statuses: dict[str, dict], rtype: str) -> int:
    return int((statuses.get(rtype) or {}).get("succeeded", 0))


def active_count(statuses: dict[str, dict], rtype: str) -> int:
    return int((statuses.get(rtype) or {}).get("active", 0))
