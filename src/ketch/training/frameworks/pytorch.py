"""PyTorchJob: Master/Worker wired for ``torch.distributed`` and ``torchrun`` (MASTER_*, RANK, PET_*)."""

from __future__ import annotations

from ketch.kinds.definitions import FieldError
from ketch.training.frameworks.base import Framework, Topology, active_count, env, succeeded_count

NPROC_WORDS = ("auto", "cpu", "gpu")


def _nproc(spec: dict) -> str:
    return str(spec.get("nprocPerNode") or "auto")


def _env(t: Topology, rtype: str, index: int) -> list[dict]:
    out = [env("PYTHONUNBUFFERED", "1")]
    spec = t.spec
    elastic = spec.get("elasticPolicy")
    nproc = _nproc(spec)
    nproc_int = int(nproc) if nproc.isdigit() else 1
    if "Master" in t.specs or not elastic:
        # The operator wires MASTER_* only when a Master exists; ketch also wires Worker-only jobs to
        # worker 0 (the pod that carries job-role=master), so they run without a rendezvous server.
        mtype = "Master" if "Master" in t.specs else "Worker"
        host, port = t.addr(mtype, 0)
        rank = index + 1 if (rtype == "Worker" and mtype == "Master") else index
        out += [
            env("MASTER_PORT", port),
            env("PET_MASTER_PORT", port),
            env("MASTER_ADDR", host),
            env("PET_MASTER_ADDR", host),
            env("WORLD_SIZE", t.total * nproc_int),
            env("RANK", rank),
            env("PET_NODE_RANK", rank),
        ]
    out.append(env("PET_NPROC_PER_NODE", nproc))
    if not elastic:
        out.append(env("PET_NNODES", t.total))
        return out
    workers = t.replicas("Worker")
    lo = elastic.get("minReplicas") or elastic.get("maxReplicas") or workers
    hi = elastic.get("maxReplicas") or elastic.get("minReplicas") or workers
    host, port = t.addr("Worker", 0)
    if elastic.get("rdzvHost"):
        host = elastic["rdzvHost"]
    if elastic.get("rdzvPort"):
        port = elastic["rdzvPort"]
    out += [
        env("PET_RDZV_ENDPOINT", f"{host}:{port}"),
        env("PET_RDZV_BACKEND", elastic.get("rdzvBackend") or "c10d"),
        env("PET_NNODES", f"{lo}:{hi}"),
    ]
    if elastic.get("maxRestarts") is not None:
        out.append(env("PET_MAX_RESTARTS", elastic["maxRestarts"]))
    if elastic.get("nProcPerNode") is not None:
        out.append(env("PET_NPROC_PER_NODE", elastic["nProcPerNode"]))
    if elastic.get("rdzvId"):
        out.append(env("PET_RDZV_ID", elastic["rdzvId"]))
    if elastic.get("rdzvConf"):
        out.append(env("PET_RDZV_CONF", ",".join(f"{c.get('key')}={c.get('value')}" for c in elastic["rdzvConf"])))
    if elastic.get("standalone"):
        out.append(env("PET_STANDALONE", ""))
    return out


def _succeeded(t: Topology, st: dict[str, dict]) -> bool:
    if "Master" in t.specs:
        return succeeded_count(st, "Master") >= t.replicas("Master")
    workers = t.replicas("Worker")
    if t.spec.get("elasticPolicy") and succeeded_count(st, "Worker") > 0:
        return True
    return workers > 0 and succeeded_count(st, "Worker") >= workers


def _running(t: Topology, st: dict[str, dict]) -> bool:
    if "Master" in t.specs:
        return active_count(st, "Master") > 0
    return active_count(st, "Worker") > 0


def _validate(spec: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    n = _nproc(spec)
    if n not in NPROC_WORDS and not n.isdigit():
        errs.append(FieldError("spec.nprocPerNode", "FieldValueInvalid", 'must be "auto", "cpu", "gpu" or a positive integer', n))
    ep = spec.get("elasticPolicy")
    if isinstance(ep, dict):
        lo, hi = ep.get("minReplicas"), ep.get("maxReplicas")
        if lo is not None and hi is not None and lo > hi:
            errs.append(FieldError("spec.elasticPolicy.minReplicas", "FieldValueInvalid", f"must not be greater than maxReplicas ({hi})", lo))
        workers = next((v for k, v in (spec.get("pytorchReplicaSpecs") or {}).items() if k.lower() == "worker"), None)
        if workers is not None:
            w = int(workers.get("replicas", 1))
            if (lo is not None and w < lo) or (hi is not None and w > hi):
                errs.append(FieldError("spec.pytorchReplicaSpecs.Worker.replicas", "FieldValueInvalid",
                                       f"must be within elasticPolicy minReplicas..maxReplicas ({lo}..{hi})", w))
    return errs


def _master_role(specs: dict[str, dict], rtype: str, index: int) -> bool:
    return rtype == "Master" or ("Master" not in specs and rtype == "Worker" and index == 0)


FRAMEWORK = Framework(
    kind="PyTorchJob",
    specs_field="pytorchReplicaSpecs",
    replica_types=("Master", "Worker"),
    container="pytorch",
    port_name="pytorchjob-port",
    default_port=23456,
    default_restart="OnFailure",
    env=_env,
    succeeded=_succeeded,
    running=_running,
    validate=_validate,
    master_role=_master_role,
    extra={"single": ("Master",)},
)
