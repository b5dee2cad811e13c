"""JAXJob: Workers wired for ``jax.distributed.initialize`` (COORDINATOR_*, NUM_PROCESSES, PROCESS_ID)."""

from __future__ import annotations

from ketch.training.frameworks.base import Framework, Topology, active_count, env, succeeded_count


def _env(t: Topology, rtype: str, index: int) -> list[dict]:
    host, port = t.addr("Worker", 0)
    return [
        env("PYTHONUNBUFFERED", "1"),
        env("COORDINATOR_PORT", port),
        env("COORDINATOR_ADDRESS", host),
        env("NUM_PROCESSES", t.total),
        env("PROCESS_ID", index),
    ]


FRAMEWORK = Framework(
    kind="JAXJob",
    specs_field="jaxReplicaSpecs",
    replica_types=("Worker",),
    container="jax",
    port_name="jaxjob-port",
    default_port=6666,
    default_restart="Never",
    env=_env,
    succeeded=lambda t, st: succeeded_count(st, "Worker") >= t.replicas("Worker") > 0,
    running=lambda t, st: active_count(st, "Worker") > 0,
    master_role=lambda specs, rt, i: rt == "Worker" and i == 0,
    extra={"required": ("Worker",)},
)
