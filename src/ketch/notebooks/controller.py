"""The Notebook controller: a kubeflow.org/v1 Notebook becomes the StatefulSet ``<name>`` (one replica, the
Pod ``<name>-0``) and the Service ``<name>``, as Kubeflow's notebook controller makes them; instead of an
Istio route for ``/notebook/<namespace>/<name>/``, ketch's port serves that path (``proxy.py``). The
StatefulSet controller (``ketch/controllers/statefulset.py``) runs the Pod; a change of the Notebook's
template rolls it, and stopping scales the set to 0.

What the Pod gets, as in Kubeflow: labels ``statefulset: <name>`` and ``notebook-name: <name>``, the
environment ``NB_PREFIX=/notebook/<namespace>/<name>`` in the notebook container (the one named like the
Notebook, else the first). Every Pod here listens on this host, so a notebook that runs its image's entrypoint
gets a free port of its own in ``NB_PORT`` (the known Jupyter images listen there, see kubelet/images.py);
one that brings its own command keeps its declared containerPort (8888 by default). The port is recorded in
the Pod's annotation and the Service's targetPort, so a restarted ketch reads it back. The annotation
``kubeflow-resource-stopped`` stops the notebook (no Pod) until it is removed. Status mirrors Kubeflow's:
``readyReplicas``, ``containerState`` and the Pod's ``conditions``.

Culling, as Kubeflow's culler does it and configured by the same variables of ``ketch up``
(``ENABLE_CULLING=true``, ``CULL_IDLE_TIME`` minutes, default 1440, ``IDLENESS_CHECK_PERIOD`` minutes,
default 1): every period the controller asks the running server for its ``/api/kernels``, records the
kernels' last activity (now, when one is busy) in ``notebooks.kubeflow.org/last-activity``, and stops a
notebook whose kernels are all idle and whose last activity is older than the idle time.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os

from ketch.kinds.builtin.apps import default_template
from ketch.kinds.meta import owner_reference
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result, Watch
from ketch.runtime.ports import free_port

log = logging.getLogger(__name__)

NOTEBOOK = ("kubeflow.org/v1", "Notebook")
POD = ("v1", "Pod")
STATEFULSET = ("apps/v1", "StatefulSet")
SERVICE = ("v1", "Service")
STOPPED = "kubeflow-resource-stopped"
PORT_ANNOTATION = "notebooks.kubeflow.org/port"
LAST_ACTIVITY = "notebooks.kubeflow.org/last-activity"
DEFAULT_PORT = 8888


def pod_name(nb: str) -> str:
    return f"{nb}-0"


SECRET = ("v1", "Secret")
TOKEN_ENV = "JUPYTER_TOKEN"


def token_secret_name(nb: str) -> str:
    """The Secret holding the notebook server's own token: only ketch's proxy (after its own
    authentication) and whoever may read Secrets in the namespace know it."""
    return f"{nb}-jupyter-token"


def desired_token_secret(nb: dict) -> dict:
    import base64
    import secrets

    md = nb["metadata"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": token_secret_name(md["name"]), "namespace": md["namespace"],
                         "labels": {"notebook-name": md["name"]}, "ownerReferences": [owner_reference(nb)]},
            "data": {"token": base64.b64encode(secrets.token_hex(24).encode()).decode()}}


def secret_token(secret: dict | None) -> str | None:
    import base64

    raw = ((secret or {}).get("data") or {}).get("token")
    return base64.b64decode(raw).decode() if raw else None


def prefix(ns: str, name: str) -> str:
    return f"/notebook/{ns}/{name}"


def main_container(spec: dict, name: str) -> dict:
    cs = spec.get("containers") or []
    return next((c for c in cs if c.get("name") == name), cs[0])


def desired_pod(nb: dict, port: int | None = None) -> dict:
    """The Pod for a Notebook: its template, with Kubeflow's labels, NB_PREFIX and this host's port."""
    md = nb["metadata"]
    name, ns = md["name"], md["namespace"]
    tmpl = copy.deepcopy((nb.get("spec") or {}).get("template") or {})
    spec = tmpl.get("spec") or {}
    labels = {**((tmpl.get("metadata") or {}).get("labels") or {}), "statefulset": name, "notebook-name": name}
    c = main_container(spec, name)
    own_command = bool(c.get("command") or c.get("args"))
    declared = next((p.get("containerPort") for p in c.get("ports") or [] if p.get("containerPort")), None)
    if own_command:
        port = int(declared or DEFAULT_PORT)
    elif port is None:
        port = free_port()
    env = [e for e in c.get("env") or [] if e.get("name") not in ("NB_PREFIX", "NB_PORT", TOKEN_ENV)]
    c["env"] = [{"name": "NB_PREFIX", "value": prefix(ns, name)}, {"name": "NB_PORT", "value": str(port)},
                {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": token_secret_name(name), "key": "token"}}}, *env]
    if not c.get("ports"):
        c["ports"] = [{"name": "notebook-port", "containerPort": port, "protocol": "TCP"}]
    elif not own_command:
        c["ports"] = [{**c["ports"][0], "containerPort": port}, *c["ports"][1:]]
    mounts = {m.get("mountPath") for m in c.get("volumeMounts") or []}
    if not c.get("workingDir") and "/home/jovyan" in mounts:
        c["workingDir"] = "/home/jovyan"  # the images' home: the workspace volume, as on Kubeflow
    if not c.get("readinessProbe"):
        # Ready once the server accepts connections, so `kubectl wait` and readyReplicas mean "you can open it"
        c["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 600}
    spec.setdefault("restartPolicy", "Always")
    spec["hostname"] = pod_name(name)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name(name), "namespace": ns, "labels": labels,
            "annotations": {**((tmpl.get("metadata") or {}).get("annotations") or {}), PORT_ANNOTATION: str(port)},
            "ownerReferences": [owner_reference(nb)],
        },
        "spec": spec,
    }


def desired_statefulset(nb: dict, port: int | None = None, stopped: bool = False) -> dict:
    """The one-replica StatefulSet whose Pod is :func:`desired_pod` (0 replicas while stopped)."""
    pod = desired_pod(nb, port)
    md = nb["metadata"]
    pmd = pod["metadata"]
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "labels": {"notebook-name": md["name"]},
                     "ownerReferences": [owner_reference(nb)]},
        "spec": {
            "replicas": 0 if stopped else 1, "serviceName": "",
            "selector": {"matchLabels": {"statefulset": md["name"]}},
            "template": {"metadata": {"labels": pmd["labels"], "annotations": pmd["annotations"]}, "spec": pod["spec"]},
        },
    }


def set_port(sts: dict) -> int | None:
    ann = ((((sts.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations")) or {}
    return int(ann[PORT_ANNOTATION]) if ann.get(PORT_ANNOTATION, "").isdigit() else None


def desired_service(nb: dict, port: int) -> dict:
    md = nb["metadata"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "labels": {"notebook-name": md["name"]},
                     "ownerReferences": [owner_reference(nb)]},
        "spec": {"type": "ClusterIP", "selector": {"statefulset": md["name"]},
                 "ports": [{"name": f"http-{md['name']}", "port": 80, "targetPort": port, "protocol": "TCP"}]},
    }


def culling() -> bool:
    return os.environ.get("ENABLE_CULLING", "false").lower() == "true"


def cull_idle_time() -> float:
    return float(os.environ.get("CULL_IDLE_TIME") or 1440)


def check_period() -> float:
    return 60 * float(os.environ.get("IDLENESS_CHECK_PERIOD") or 1)


def _parse(ts: object) -> dt.datetime | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


class NotebookController(Controller):
    name = "notebook"
    kind = NOTEBOOK
    owns = [STATEFULSET, SERVICE]

    def extra_watches(self) -> list[Watch]:
        # The Pod's state is the Notebook's status: its events (through the notebook-name label) wake it.
        def to_notebook(pod: dict) -> list[Key]:
            n = (pod["metadata"].get("labels") or {}).get("notebook-name")
            return [Key(pod["metadata"].get("namespace", ""), n)] if n else []

        return [Watch(POD, to_notebook)]

    async def reconcile(self, key: Key) -> Result | None:
        nb = self.get(key)
        if nb is None or nb["metadata"].get("deletionTimestamp"):
            return None
        md = nb["metadata"]
        stopped = STOPPED in (md.get("annotations") or {})
        if self.client.get(SECRET, key.namespace, token_secret_name(key.name)) is None:
            try:  # the notebook server's own token, before anything that starts it
                self.client.create(desired_token_secret(nb), key.namespace)
            except StatusError as e:
                if e.code != 409:
                    raise
        sts = self.client.get(STATEFULSET, key.namespace, key.name)
        if sts is not None and not any(o.get("uid") == md["uid"] for o in sts["metadata"].get("ownerReferences") or []):
            return self._status(nb, None, f"a StatefulSet named {key.name} exists and is not this Notebook's")
        if sts is None:
            want = desired_statefulset(nb, stopped=stopped)
            try:
                sts = self.client.create(want, key.namespace)
            except StatusError as e:
                if e.code == 409:
                    return Result(requeue_after=0.2)
                self.client.event(nb, "Warning", "FailedCreate", f"cannot create statefulset {key.name}: {e.message}", "notebook-controller")
                return self._status(nb, None, e.message)
            self.client.event(nb, "Normal", "SuccessfulCreate", f"create StatefulSet {key.name} successful", "notebook-controller")
        else:
            want = desired_statefulset(nb, set_port(sts), stopped)
            default_template(want["spec"])  # compared as stored: with the API's defaults
            if (sts["spec"].get("replicas"), sts["spec"].get("template")) != (want["spec"]["replicas"], want["spec"]["template"]):
                if not stopped and sts["spec"].get("replicas") == 0 and culling():
                    # a restarted notebook is active now, not as idle as before it was stopped
                    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    nb = self.client.patch(NOTEBOOK, key.namespace, key.name, {"metadata": {"annotations": {LAST_ACTIVITY: stamp}}})
                sts = self.client.patch(STATEFULSET, key.namespace, key.name, {"spec": {"replicas": want["spec"]["replicas"], "template": want["spec"]["template"]}})
        port = set_port(sts) or DEFAULT_PORT
        pod = self.client.get(POD, key.namespace, pod_name(key.name))
        if pod is not None and not any(o.get("uid") == sts["metadata"]["uid"] for o in pod["metadata"].get("ownerReferences") or []):
            pod = None
        if stopped:
            return self._status(nb, None)
        svc = next(iter(o for o in self.owned(SERVICE, nb) if o["metadata"]["name"] == key.name), None)
        want_svc = desired_service(nb, port)
        if svc is None:
            try:
                self.client.create(want_svc, key.namespace)
            except StatusError as e:
                if e.code != 409:
                    raise
        elif svc["spec"].get("ports") != want_svc["spec"]["ports"] or svc["spec"].get("selector") != want_svc["spec"]["selector"]:
            self.client.patch(SERVICE, key.namespace, key.name, {"spec": {"ports": want_svc["spec"]["ports"], "selector": want_svc["spec"]["selector"]}})
        self._status(nb, pod)
        if culling() and pod is not None and (pod.get("status") or {}).get("phase") == "Running":
            await self._cull(nb, port, (pod.get("status") or {}).get("podIP") or "127.0.0.1")
            return Result(requeue_after=check_period())
        return None

    async def _cull(self, nb: dict, port: int, ip: str = "127.0.0.1") -> None:
        """Record the server's last activity; stop the notebook once idle past CULL_IDLE_TIME."""
        import httpx

        md = nb["metadata"]
        base = f"http://{ip}:{port}{prefix(md['namespace'], md['name'])}/api"
        tok = secret_token(self.client.get(SECRET, md["namespace"], token_secret_name(md["name"])))
        try:
            async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"token {tok}"} if tok else {}) as http:
                kernels = (await http.get(f"{base}/kernels")).json()
        except (httpx.HTTPError, ValueError):
            return  # not answering yet (starting) or not a Jupyter server: nothing to judge by
        # Activity is the kernels' (the server's own last_activity counts these very polls): a busy kernel
        # is activity now; with no kernels, the last recorded activity stands (the first check records now).
        now = dt.datetime.now(dt.UTC)
        kernels = [k for k in kernels if isinstance(k, dict)] if isinstance(kernels, list) else []
        busy = any(k.get("execution_state") == "busy" for k in kernels)
        recorded = _parse((md.get("annotations") or {}).get(LAST_ACTIVITY))
        seen = [t for t in (_parse(k.get("last_activity")) for k in kernels) if t is not None]
        last = now if busy or recorded is None else max([recorded, *seen])
        ann = {LAST_ACTIVITY: last.strftime("%Y-%m-%dT%H:%M:%SZ")}
        idle = (now - last).total_seconds() / 60
        if not busy and idle >= cull_idle_time():
            ann[STOPPED] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            self.client.event(nb, "Normal", "Culled", f"idle for {idle:.1f} minutes (CULL_IDLE_TIME {cull_idle_time():g}): stopped", "notebook-controller")
        if any((md.get("annotations") or {}).get(k) != v for k, v in ann.items()):
            self.client.patch(NOTEBOOK, md["namespace"], md["name"], {"metadata": {"annotations": ann}})

    def _status(self, nb: dict, pod: dict | None, error: str | None = None) -> None:
        ps = (pod or {}).get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in ps.get("conditions") or [])
        cname = main_container((nb.get("spec") or {}).get("template", {}).get("spec") or {"containers": [{}]}, nb["metadata"]["name"]).get("name")
        cs = next((c for c in ps.get("containerStatuses") or [] if c.get("name") == cname), {})
        conds = [{k: c[k] for k in ("type", "status", "reason", "message", "lastProbeTime", "lastTransitionTime") if c.get(k) is not None}
                 for c in ps.get("conditions") or []]
        if error:
            conds.append({"type": "Failed", "status": "True", "reason": "CreatePodFailed", "message": error})
        st = {"readyReplicas": 1 if ready else 0, "containerState": cs.get("state") or {}, "conditions": conds}
        if nb.get("status") != st:
            nb["status"] = st
            self.update_status(nb)
        return None


CONTROLLERS = [NotebookController]
