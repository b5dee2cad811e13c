"""XGBoostJob: Master/Worker wired for XGBoost's collective (the tracker at MASTER_ADDR:MASTER_PORT)."""

from __future__ import annotations

from ketch.training.frameworks.base import Framework, Topology, active_count, env, succeeded_count


def _env(t: Topology, rtype: str, index: int) -> list[dict]:
    host, port = t.addr("Master", 0)
    masters = t.replicas("Master")
    rank = index + masters if rtype == "Worker" else index
    out = [
        env("MASTER_PORT", port),
        env("MASTER_ADDR", host),
        env("WORLD_SIZE", t.total),
        env("RANK", rank),
        env("PYTHONUNBUFFERED", "1"),
    ]
    workers = t.replicas("Worker")
    if t.total > 1 and workers:
        out.append(env("WORKER_PORT", t.addr("Worker", 0)[1]))
        out.append(env("WORKER_ADDRS", ",".join(t.addr("Worker", i)[0] for i in range(workers))))
    return out


FRAMEWORK = Framework(
    kind="XGBoostJob",
    specs_field="xgbReplicaSpecs",
    replica_types=("Master", "Worker"),
    container="xgboost",
    port_name="xgboostjob-port",
    default_port=9999,
    default_restart="Never",
    env=_env,
    succeeded=lambda t, st: succeeded_count(st, "Master") >= t.replicas("Master") > 0,
    running=lambda t, st: active_count(st, "Master") > 0,
    master_role=lambda specs, rt, i: rt == "Master",
    extra={"single": ("Master",), "required": ("Master",)},
)
