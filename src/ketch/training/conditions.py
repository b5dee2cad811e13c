"""Job conditions the way the training operator keeps them: the newest transition is last (so the
``State`` printer column, ``.status.conditions[-1].type``, reads the current state), Running and
Restarting exclude each other, and a finished job's Running turns False."""

from __future__ import annotations

from ketch.kinds.meta import now

CREATED, RUNNING, RESTARTING, SUCCEEDED, FAILED, SUSPENDED = "Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended"


def get(status: dict, ctype: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_true(status: dict, ctype: str) -> bool:
    c = get(status, ctype)
    return bool(c and c.get("status") == "True")


def finished(status: dict) -> bool:
    return is_true(status, SUCCEEDED) or is_true(status, FAILED)


def set_condition(status: dict, ctype: str, reason: str, message: str, value: str = "True") -> bool:
    cur = get(status, ctype)
    if cur and cur.get("status") == value and cur.get("reason") == reason and cur.get("message") == message:
        return False
    ts = now()
    out = []
    for c in status.get("conditions") or []:
        t = c.get("type")
        if t == ctype:
            continue
        if (ctype == RESTARTING and t == RUNNING) or (ctype == RUNNING and t == RESTARTING):
            continue
        if ctype in (SUCCEEDED, FAILED, SUSPENDED) and t == RUNNING and c.get("status") == "True":
            c = {**c, "status": "False", "lastUpdateTime": ts, "lastTransitionTime": ts}
        out.append(c)
    out.append({"type": ctype, "status": value, "reason": reason, "message": message,
                "lastUpdateTime": ts, "lastTransitionTime": ts if not cur or cur.get("status") != value else cur.get("lastTransitionTime", ts)})
    status["conditions"] = out
    return True
