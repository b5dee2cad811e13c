"""core/v1 Pod: the one unit that runs. Defaults, validation and the columns kubectl prints."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.meta import validate_dns_label

POD_MERGE_KEYS = {
    **META_MERGE_KEYS,
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "status.conditions": "type",
    "status.podIPs": "ip",
}
RESTART_POLICIES = ("Always", "OnFailure", "Never")


def default_pod_spec(spec: dict) -> None:
    """Kubernetes' defaults for a PodSpec, also used for pod templates inside jobs."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            c.setdefault("imagePullPolicy", "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                p.setdefault("protocol", "TCP")


SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_VOLUME_PREFIX = "kube-api-access-"


def service_account_admission(obj: dict) -> None:
    """What Kubernetes' ServiceAccount admission plugin does to a new Pod: it runs as
    ``spec.serviceAccountName`` (``default`` when unset), and unless ``automountServiceAccountToken`` is
    false, a projected volume with a token for that account and the namespace is mounted at
    /var/run/secrets/kubernetes.io/serviceaccount in every container. The kubelet fills the volume."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if not isinstance(sa, str):
        return
    spec["serviceAccountName"] = spec["serviceAccount"] = sa
    if spec.get("automountServiceAccountToken") is False:
        return
    containers = [c for c in (spec.get("initContainers") or []) + (spec.get("containers") or []) if isinstance(c, dict)]
    vols = spec.get("volumes")
    if vols is not None and not isinstance(vols, list):
        return
    name = next((v.get("name") for v in vols or [] if isinstance(v, dict) and str(v.get("name", "")).startswith(SA_VOLUME_PREFIX)), None)
    if name is None:
        if any(isinstance(m, dict) and str(m.get("mountPath", "")).rstrip("/") == SA_MOUNT
               for c in containers for m in (c.get("volumeMounts") or []) if isinstance(c.get("volumeMounts"), list)):
            return  # the user mounts something of their own there
        import secrets

        name = SA_VOLUME_PREFIX + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        spec["volumes"] = [*(vols or []), {"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}]
    for c in containers:
        mounts = c.get("volumeMounts")
        if mounts is not None and not isinstance(mounts, list):
            continue
        if not any(isinstance(m, dict) and m.get("name") == name for m in mounts or []):
            c["volumeMounts"] = [*(mounts or []), {"name": name, "readOnly": True, "mountPath": SA_MOUNT}]


def _default(obj: dict) -> None:
    default_pod_spec(obj.setdefault("spec", {}))
    service_account_admission(obj)


def validate_pod_spec(spec: dict, path: str = "spec") -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [FieldError(path, "FieldValueRequired", "")]
    containers = spec.get("containers")
    if not containers:
        errs.append(FieldError(f"{path}.containers", "FieldValueRequired", ""))
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            p = f"{path}.{kind}[{i}]"
            if not isinstance(c, dict):
                errs.append(FieldError(p, "FieldValueInvalid", "must be an object", str(c)))
                continue
            name = c.get("name")
            if not name:
                errs.append(FieldError(f"{p}.name", "FieldValueRequired", ""))
            else:
                why = validate_dns_label(name)
                if why:
                    errs.append(FieldError(f"{p}.name", "FieldValueInvalid", why, name))
                if name in seen:
                    errs.append(FieldError(f"{p}.name", "FieldValueDuplicate", "", name))
                seen.add(name)
            if not c.get("image"):
                errs.append(FieldError(f"{p}.image", "FieldValueRequired", ""))
            for fld in ("command", "args"):
                v = c.get(fld)
                if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                    errs.append(FieldError(f"{p}.{fld}", "FieldValueInvalid", "must be a list of strings", str(v)))
            for j, e in enumerate(c.get("env") or []):
                if not isinstance(e, dict) or not e.get("name"):
                    errs.append(FieldError(f"{p}.env[{j}].name", "FieldValueRequired", ""))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        errs.append(
            FieldError(f"{path}.restartPolicy", "FieldValueNotSupported", 'supported values: "Always", "OnFailure", "Never"', rp)
        )
    vnames: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        n = (v or {}).get("name")
        if not n:
            errs.append(FieldError(f"{path}.volumes[{i}].name", "FieldValueRequired", ""))
        elif n in vnames:
            errs.append(FieldError(f"{path}.volumes[{i}].name", "FieldValueDuplicate", "", n))
        vnames.add(n or "")
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            for j, m in enumerate((c or {}).get("volumeMounts") or []):
                if m.get("name") not in vnames:
                    errs.append(FieldError(f"{path}.{kind}[{i}].volumeMounts[{j}].name", "FieldValueNotFound", "", m.get("name")))
    return errs


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    errs = validate_pod_spec(obj.get("spec") or {})
    if old is not None:
        # A Pod's spec is immutable except for a few fields, as in Kubernetes.
        mutable = {"activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"}
        if not (old.get("spec") or {}).get("nodeName"):
            mutable.add("nodeName")  # binding: a scheduler or kubelet sets nodeName once
        a = {k: v for k, v in (obj.get("spec") or {}).items() if k not in mutable}
        b = {k: v for k, v in (old.get("spec") or {}).items() if k not in mutable}
        ia = [{k: v for k, v in c.items() if k != "image"} for c in a.pop("containers", []) or []]
        ib = [{k: v for k, v in c.items() if k != "image"} for c in b.pop("containers", []) or []]
        if a != b or ia != ib:
            errs.append(
                FieldError(
                    "spec",
                    "FieldValueForbidden",
                    "pod updates may not change fields other than `spec.containers[*].image`, "
                    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                    "(only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`",
                )
            )
    return errs


def pod_status_reason(o: dict) -> str:
    """The STATUS column of kubectl get pods, computed as kubectl's printer does."""
    st = o.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Pending"
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode") == 0:
            continue
        if "terminated" in state:
            t = state["terminated"]
            reason = "Init:" + (t.get("reason") or f"ExitCode:{t.get('exitCode')}")
        elif "waiting" in state and state["waiting"].get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len((o.get('spec') or {}).get('initContainers') or [])}"
        break
    else:
        for cs in reversed(st.get("containerStatuses") or []):
            state = cs.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated", {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif "terminated" in state:
                t = state["terminated"]
                reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}"
    if o.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _ready(o: dict) -> str:
    cs = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for c in cs if c.get('ready'))}/{total}"


def _restarts(o: dict) -> int:
    return sum(c.get("restartCount", 0) for c in (o.get("status") or {}).get("containerStatuses") or [])


def _initial_status(obj: dict) -> dict:
    return {"phase": "Pending", "qosClass": "BestEffort"}


DEFINITIONS = [
    ResourceDefinition(
        group="",
        kind="Pod",
        plural="pods",
        singular="pod",
        namespaced=True,
        short_names=["po"],
        categories=["all"],
        versions=[
            VersionDef(
                "v1",
                schema=OPEN,
                status_subresource=True,
                printer_columns=[
                    PrinterColumn("Ready", fn=_ready),
                    PrinterColumn("Status", fn=pod_status_reason),
                    PrinterColumn("Restarts", "integer", fn=_restarts),
                    age_column(),
                    PrinterColumn("IP", fn=lambda o: (o.get("status") or {}).get("podIP") or "<none>", priority=1),
                    PrinterColumn("Node", fn=lambda o: (o.get("spec") or {}).get("nodeName") or "<none>", priority=1),
                ],
            )
        ],
        merge_keys=POD_MERGE_KEYS,
        defaulter=_default,
        validator=_validate,
        initial_status=_initial_status,
        graceful_deletion=True,
    )
]
