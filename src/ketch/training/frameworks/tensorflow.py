"""TFJob: Chief/Master/Worker/PS/Evaluator wired through ``TF_CONFIG`` with each task's real address."""

from __future__ import annotations

import json

from ketch.kinds.definitions import FieldError
from ketch.training.frameworks.base import Framework, Topology, active_count, succeeded_count


def _env(t: Topology, rtype: str, index: int) -> list[dict]:
    if t.total == 1:
        return []  # not distributed: the operator sets no TF_CONFIG
    dynamic = bool(t.spec.get("enableDynamicWorker"))
    cluster: dict = {}
    for rt in sorted(t.specs, key=str.lower):
        addrs = [f"{h}:{p}" for h, p in (t.addr(rt, i) for i in range(t.replicas(rt)))]
        if dynamic and rt == "Worker":
            cluster["worker"] = {str(i): a for i, a in enumerate(addrs)}
        else:
            cluster[rt.lower()] = addrs
    cfg: dict = {"cluster": cluster, "task": {"type": rtype.lower(), "index": index}}
    if not dynamic:
        cfg["environment"] = "cloud"
    return [{"name": "TF_CONFIG", "value": json.dumps(cfg, separators=(",", ":"))}]


def _succeeded(t: Topology, st: dict[str, dict]) -> bool:
    for chief in ("Chief", "Master"):
        if chief in t.specs:
            return succeeded_count(st, chief) >= t.replicas(chief)
    if t.spec.get("successPolicy") == "AllWorkers":
        return succeeded_count(st, "Worker") >= t.replicas("Worker") > 0
    return 0 in ((st.get("Worker") or {}).get("_succeededIndexes") or set())


def _running(t: Topology, st: dict[str, dict]) -> bool:
    for chief in ("Chief", "Master"):
        if chief in t.specs:
            return active_count(st, chief) > 0
    return active_count(st, "Worker") > 0


def _validate(spec: dict) -> list[FieldError]:
    keys = {k.lower(): k for k in (spec.get("tfReplicaSpecs") or {})}
    errs: list[FieldError] = []
    if "chief" in keys and "master" in keys:
        errs.append(FieldError("spec.tfReplicaSpecs", "FieldValueInvalid", "Chief and Master cannot both be set: they are the same role", sorted(keys.values())))
    return errs


FRAMEWORK = Framework(
    kind="TFJob",
    specs_field="tfReplicaSpecs",
    replica_types=("Chief", "Master", "PS", "Worker", "Evaluator"),
    container="tensorflow",
    port_name="tfjob-port",
    default_port=2222,
    default_restart="Never",
    env=_env,
    succeeded=_succeeded,
    running=_running,
    validate=_validate,
    env_all_containers=False,
    master_role=lambda specs, rt, i: rt in ("Chief", "Master"),
    extra={"single": ("Chief", "Master", "Evaluator")},
)
