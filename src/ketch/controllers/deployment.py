"""apps/v1 Deployment: a Deployment owns ReplicaSets, one per pod template it has had, and rolls Pods from
the old ones to the new one.

Each reconcile, as Kubernetes' deployment controller:

- finds the new ReplicaSet (the one whose template, ``pod-template-hash`` label aside, equals the
  Deployment's) or creates it as ``<name>-<hash>``; its ``deployment.kubernetes.io/revision`` is one more
  than any other's, so ``kubectl rollout undo`` (which copies an old ReplicaSet's template back) revives
  that ReplicaSet with a new revision, recorded in ``revision-history``;
- **RollingUpdate**: scales the new ReplicaSet up while all Pods stay within ``replicas + maxSurge``, and
  the old ones down while available Pods stay at least ``replicas - maxUnavailable`` (percentages of
  replicas: surge rounds up, unavailable down); **Recreate**: old ReplicaSets to zero, and the new one up
  once their Pods are gone;
- ``spec.paused``: no new ReplicaSet and no rollout, only scaling; Progressing is Unknown/DeploymentPaused;
- keeps ``revisionHistoryLimit`` old, empty ReplicaSets and deletes older ones;
- reports observedGeneration, replicas, updatedReplicas, readyReplicas, availableReplicas,
  unavailableReplicas, and the Available and Progressing conditions with Kubernetes' reasons
  (NewReplicaSetCreated, ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded), which is
  what ``kubectl rollout status`` and ``kubectl wait --for=condition=Available`` read.
"""

from __future__ import annotations

import copy
import datetime as dt
import math

from ketch.controllers.workload_pods import POD, controlled_by, template_hash, terminal
from ketch.kinds.meta import get_condition, now, owner_reference, parse_time, set_condition
from ketch.machinery.errors import StatusError
from ketch.machinery.selectors import label_matches
from ketch.runtime import Controller, Key, Result

RS = ("apps/v1", "ReplicaSet")
HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX = "deployment.kubernetes.io/max-replicas"
# Deployment annotations that are not copied onto its ReplicaSets.
NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION, HISTORY, DESIRED, MAX)


def resolve(v: object, total: int, round_up: bool) -> int:
    """An int-or-percent of ``total`` (maxSurge rounds up, maxUnavailable down)."""
    if isinstance(v, str) and v.endswith("%"):
        x = int(v[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(v or 0)


def surge_and_unavailable(d: dict) -> tuple[int, int]:
    spec = d.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    replicas = int(spec.get("replicas", 1))
    surge = resolve(ru.get("maxSurge", "25%"), replicas, True)
    unavail = resolve(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavail == 0:
        unavail = 1  # as Kubernetes: a rollout must be able to make progress
    return surge, unavail


def _strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH, None)
    return t


def _rev(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _replicas(rs: dict) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _st(o: dict, f: str) -> int:
    return int((o.get("status") or {}).get(f) or 0)


class DeploymentController(Controller):
    name = "deployment"
    kind = ("apps/v1", "Deployment")
    owns = [RS]
    workers = 4

    async def reconcile(self, key: Key) -> Result | None:
        d = self.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return None
        spec = d.get("spec") or {}
        rss = self._replica_sets(d)
        paused = bool(spec.get("paused"))
        new = self._find_new(d, rss)
        olds = [r for r in rss if new is None or r["metadata"]["uid"] != new["metadata"]["uid"]]
        created = False
        if new is None and not paused:
            new, created = self._create_new(d, olds)
            if new is None:
                return Result(requeue_after=0.2)  # a hash collision: the next name is tried
        elif new is not None:
            new = self._sync_revision(d, new, olds)
        if new is not None and not created:
            d = self._annotate_revision(d, new)
        if paused:
            self._scale_paused(d, new, olds)
        elif (spec.get("strategy") or {}).get("type") == "Recreate":
            self._recreate(d, new, olds)
        else:
            self._rolling(d, new, olds)
        self._cleanup(d, new, olds)
        return self._status(d, new, olds, created)

    # -- which ReplicaSets ---------------------------------------------------------------------------------

    def _replica_sets(self, d: dict) -> list[dict]:
        sel = (d.get("spec") or {}).get("selector") or {}
        items = self.client.list(RS, d["metadata"]["namespace"], sel.get("matchLabels") or None)
        return [r for r in items if controlled_by(r, d) and not r["metadata"].get("deletionTimestamp")
                and label_matches(sel, (((r.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})]

    def _find_new(self, d: dict, rss: list[dict]) -> dict | None:
        want = _strip_hash((d.get("spec") or {}).get("template") or {})
        same = [r for r in rss if _strip_hash((r.get("spec") or {}).get("template") or {}) == want]
        return min(same, key=lambda r: r["metadata"].get("creationTimestamp", "")) if same else None

    def _create_new(self, d: dict, olds: list[dict]) -> tuple[dict | None, bool]:
        spec = d.get("spec") or {}
        md = d["metadata"]
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        tmpl = copy.deepcopy(spec.get("template") or {})
        h = template_hash(_strip_hash(tmpl), collisions)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH] = h
        sel = copy.deepcopy(spec.get("selector") or {})
        sel.setdefault("matchLabels", {})[HASH] = h
        revision = max([_rev(r) for r in olds], default=0) + 1
        surge, _ = surge_and_unavailable(d)
        replicas = int(spec.get("replicas", 1))
        annotations = {k: v for k, v in (md.get("annotations") or {}).items() if k not in NOT_COPIED}
        annotations.update({REVISION: str(revision), DESIRED: str(replicas), MAX: str(replicas + surge)})
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{md['name']}-{h}",
                "namespace": md["namespace"],
                "labels": dict(tmpl["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0), "selector": sel, "template": tmpl},
        }
        try:
            out = self.client.create(rs)
        except StatusError as e:
            if e.code != 409:
                raise
            existing = self.client.get(RS, md["namespace"], rs["metadata"]["name"])
            if existing is not None and controlled_by(existing, d) and _strip_hash(existing["spec"]["template"]) == _strip_hash(tmpl):
                return existing, False
            st = copy.deepcopy(d.get("status") or {})
            st["collisionCount"] = collisions + 1
            self.client.update_status({**d, "status": st})
            return None, False
        return out, True

    def _sync_revision(self, d: dict, new: dict, olds: list[dict]) -> dict:
        """A rolled-back-to ReplicaSet takes the next revision; its old one joins revision-history."""
        top = max([_rev(r) for r in olds], default=0)
        if _rev(new) > top and _rev(new) > 0:
            return new
        ann = dict(new["metadata"].get("annotations") or {})
        old_rev = ann.get(REVISION)
        ann[REVISION] = str(top + 1)
        if old_rev:
            hist = [h for h in (ann.get(HISTORY) or "").split(",") if h]
            ann[HISTORY] = ",".join([*hist, old_rev])
        for k, v in (d["metadata"].get("annotations") or {}).items():
            if k not in NOT_COPIED:
                ann[k] = v
        out = copy.deepcopy(new)
        out["metadata"]["annotations"] = ann
        return self.client.update(out)

    def _annotate_revision(self, d: dict, new: dict) -> dict:
        rev = (new["metadata"].get("annotations") or {}).get(REVISION)
        ann = d["metadata"].get("annotations") or {}
        if rev and ann.get(REVISION) != rev:
            out = copy.deepcopy(d)
            out["metadata"].setdefault("annotations", {})[REVISION] = rev
            return self.client.update(out)
        return d

    # -- scaling ---------------------------------------------------------------------------------------------

    def _scale(self, d: dict, rs: dict, n: int) -> dict:
        cur = _replicas(rs)
        spec = d.get("spec") or {}
        surge, _ = surge_and_unavailable(d)
        ann = dict(rs["metadata"].get("annotations") or {})
        want_ann = {DESIRED: str(int(spec.get("replicas", 1))), MAX: str(int(spec.get("replicas", 1)) + surge)}
        mrs = int(spec.get("minReadySeconds") or 0)
        if cur == n and all(ann.get(k) == v for k, v in want_ann.items()) and int((rs.get("spec") or {}).get("minReadySeconds") or 0) == mrs:
            return rs
        out = copy.deepcopy(rs)
        out["spec"]["replicas"] = n
        out["spec"]["minReadySeconds"] = mrs
        out["metadata"]["annotations"] = {**ann, **want_ann}
        out = self.client.update(out)
        if cur != n:
            verb = "up" if n > cur else "down"
            self.client.event(d, "Normal", "ScalingReplicaSet", f'Scaled {verb} replica set {rs["metadata"]["name"]} from {cur} to {n}', "deployment-controller")
        rs.clear()
        rs.update(out)
        return rs

    def _scale_paused(self, d: dict, new: dict | None, olds: list[dict]) -> None:
        """Paused: only a change of replicas is followed, by the newest ReplicaSet that has Pods."""
        want = int((d.get("spec") or {}).get("replicas", 1))
        live = [r for r in ([new] if new else []) + sorted(olds, key=_rev, reverse=True) if _replicas(r) > 0]
        target = live[0] if live else new
        if target is None:
            return
        others = sum(_replicas(r) for r in live if r is not target)
        self._scale(d, target, max(0, want - others))

    def _recreate(self, d: dict, new: dict | None, olds: list[dict]) -> None:
        for r in olds:
            if _replicas(r):
                self._scale(d, r, 0)
        if new is None:
            return
        old_uids = {r["metadata"]["uid"] for r in olds}
        if old_uids:
            pods = self.client.list(POD, d["metadata"]["namespace"], ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or None)
            if any(not terminal(p) for p in pods if any(o.get("uid") in old_uids for o in p["metadata"].get("ownerReferences") or [])):
                return  # the old Pods must be gone before the new ones start
        self._scale(d, new, int((d.get("spec") or {}).get("replicas", 1)))

    def _rolling(self, d: dict, new: dict | None, olds: list[dict]) -> None:
        assert new is not None
        replicas = int((d.get("spec") or {}).get("replicas", 1))
        surge, unavail = surge_and_unavailable(d)
        all_rs = [new, *olds]
        # -- the new ReplicaSet up, within replicas + maxSurge
        if _replicas(new) > replicas:
            self._scale(d, new, replicas)
        elif _replicas(new) < replicas:
            total = sum(_replicas(r) for r in all_rs)
            room = replicas + surge - total
            if room > 0:
                self._scale(d, new, _replicas(new) + min(room, replicas - _replicas(new)))
                return
        else:
            self._scale(d, new, replicas)  # keeps the annotations current
        # -- old ones down, keeping replicas - maxUnavailable available
        old_count = sum(_replicas(r) for r in olds)
        if old_count == 0:
            return
        total = sum(_replicas(r) for r in all_rs)
        min_available = replicas - unavail
        new_unavailable = _replicas(new) - _st(new, "availableReplicas")
        budget = total - min_available - new_unavailable
        if budget <= 0:
            return
        # first the old Pods that are not available anyway
        for r in sorted(olds, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            if budget <= 0:
                break
            unhealthy = _replicas(r) - _st(r, "availableReplicas")
            if unhealthy > 0 and _replicas(r) > 0:
                cut = min(budget, unhealthy)
                self._scale(d, r, _replicas(r) - cut)
                budget -= cut
        # then available ones, as far as availability allows
        avail = sum(min(_st(r, "availableReplicas"), _replicas(r)) for r in all_rs)
        room = avail - min_available
        for r in sorted(olds, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            if room <= 0:
                break
            if _replicas(r) == 0:
                continue
            cut = min(room, _replicas(r))
            self._scale(d, r, _replicas(r) - cut)
            room -= cut

    def _cleanup(self, d: dict, new: dict | None, olds: list[dict]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        empty = [r for r in olds if _replicas(r) == 0 and _st(r, "replicas") == 0]
        for r in sorted(empty, key=_rev)[: max(0, len(empty) - int(limit))]:
            self.client.delete(RS, r["metadata"]["namespace"], r["metadata"]["name"])

    # -- status ----------------------------------------------------------------------------------------------

    def _status(self, d: dict, new: dict | None, olds: list[dict], created: bool) -> Result | None:
        spec = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        all_rs = ([new] if new else []) + olds
        _, unavail = surge_and_unavailable(d)
        old_st = d.get("status") or {}
        st = copy.deepcopy(old_st)
        counts = {
            "replicas": sum(_st(r, "replicas") for r in all_rs),
            "updatedReplicas": _st(new, "replicas") if new else 0,
            "readyReplicas": sum(_st(r, "readyReplicas") for r in all_rs),
            "availableReplicas": sum(_st(r, "availableReplicas") for r in all_rs),
        }
        counts["unavailableReplicas"] = max(0, replicas - counts["availableReplicas"])
        moved = any(int(old_st.get(k) or 0) != v for k, v in counts.items())
        for k, v in counts.items():
            if v:
                st[k] = v
            else:
                st.pop(k, None)
        st["observedGeneration"] = d["metadata"].get("generation", 1)
        if counts["availableReplicas"] >= replicas - unavail:
            set_condition(st, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            set_condition(st, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        requeue: float | None = None
        name = new["metadata"]["name"] if new else ""
        prog = get_condition({"status": st}, "Progressing")
        complete = new is not None and counts["updatedReplicas"] == replicas and counts["replicas"] == replicas and counts["availableReplicas"] >= replicas and _replicas(new) == replicas
        deadline = spec.get("progressDeadlineSeconds")
        if spec.get("paused"):
            set_condition(st, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif prog is not None and prog.get("reason") == "DeploymentPaused":
            set_condition(st, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        elif complete:
            set_condition(st, "Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
        elif created:
            set_condition(st, "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
        elif prog is not None and prog.get("reason") == "ProgressDeadlineExceeded" and not moved:
            pass  # stays timed out until something moves
        else:
            if set_condition(st, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.') is False and moved:
                get_condition({"status": st}, "Progressing")["lastUpdateTime"] = now()
            if deadline is not None:
                c = get_condition({"status": st}, "Progressing")
                since = parse_time(c.get("lastUpdateTime")) or dt.datetime.now(dt.UTC)
                left = (since + dt.timedelta(seconds=int(deadline)) - dt.datetime.now(dt.UTC)).total_seconds()
                if left <= 0:
                    set_condition(st, "Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{name}" has timed out progressing.')
                else:
                    requeue = left + 0.1
        if st != old_st:
            out = copy.deepcopy(d)
            out["status"] = st
            self.update_status(out)
        return Result(requeue_after=requeue) if requeue else None


CONTROLLERS = [DeploymentController]
