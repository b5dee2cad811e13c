"""PaddleJob: Master/Worker wired for ``paddle.distributed.launch`` (PADDLE_MASTER, PADDLE_NNODES, ...).

As the operator does: every container gets PADDLE_JOB_ID and PADDLE_NNODES; the rendezvous endpoint
PADDLE_MASTER is Master 0 (parameter-server mode) or Worker 0 (collective mode, no Master). On that
rank-0 pod it is ``$(POD_IP_DUMMY):<port>`` with POD_IP_DUMMY from the pod's own IP (fieldRef), on the
others the endpoint's address. In PS mode the Master gets PADDLE_SERVER_NUM=1 and Workers
PADDLE_TRAINER_NUM=1. The address is 127.0.0.1 with the port ketch allocated to that replica.
"""

from __future__ import annotations

from ketch.kinds.definitions import FieldError
from ketch.training.frameworks.base import Framework, Topology, active_count, env, succeeded_count


def _env(t: Topology, rtype: str, index: int) -> list[dict]:
    ps = "Master" in t.specs
    endpoint = "Master" if ps else "Worker"
    host, port = t.addr(endpoint, 0)
    out = [env("PYTHONUNBUFFERED", "1"), env("PADDLE_JOB_ID", t.name), env("PADDLE_NNODES", t.total)]
    if rtype == endpoint and index == 0:
        out.append({"name": "POD_IP_DUMMY", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        out.append(env("PADDLE_MASTER", f"$(POD_IP_DUMMY):{port}"))
    else:
        out.append(env("PADDLE_MASTER", f"{host}:{port}"))
    if ps:
        out.append(env("PADDLE_SERVER_NUM" if rtype == "Master" else "PADDLE_TRAINER_NUM", "1"))
    return out


def _succeeded(t: Topology, st: dict[str, dict]) -> bool:
    if "Master" in t.specs:
        return succeeded_count(st, "Master") >= t.replicas("Master")
    return succeeded_count(st, "Worker") >= t.replicas("Worker") > 0


def _running(t: Topology, st: dict[str, dict]) -> bool:
    return active_count(st, "Master") > 0 or active_count(st, "Worker") > 0


def _validate(spec: dict) -> list[FieldError]:
    ep = spec.get("elasticPolicy")
    if isinstance(ep, dict):
        lo, hi = ep.get("minReplicas"), ep.get("maxReplicas")
        if lo is not None and hi is not None and lo > hi:
            return [FieldError("spec.elasticPolicy.minReplicas", "FieldValueInvalid", f"must not be greater than maxReplicas ({hi})", lo)]
    return []


FRAMEWORK = Framework(
    kind="PaddleJob",
    specs_field="paddleReplicaSpecs",
    replica_types=("Master", "Worker"),
    container="paddle",
    port_name="master",
    default_port=36543,
    default_restart="OnFailure",
    env=_env,
    succeeded=_succeeded,
    running=_running,
    validate=_validate,
    master_role=lambda specs, rt, i: rt == "Master" or ("Master" not in specs and rt == "Worker" and i == 0),
)
