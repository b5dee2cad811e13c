"""Core v1 kinds other than Pods: Namespace, ConfigMap, Secret, ServiceAccount, Event, PVC, Node,
Service and Endpoints."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column, obj_schema
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef
from ketch.kinds.meta import human_age, validate_dns_label


def _v1(schema: dict, cols: list[PrinterColumn], status: bool = False) -> list[VersionDef]:
    return [VersionDef("v1", schema=schema, printer_columns=cols, status_subresource=status)]


def _ns_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {})["phase"] = obj.get("status", {}).get("phase") or "Active"
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def _data_count(o: dict) -> int:
    return len(o.get("data") or {}) + len(o.get("binaryData") or {}) + len(o.get("stringData") or {})


def _secret_default(obj: dict) -> None:
    import base64

    obj.setdefault("type", "Opaque")
    sd = obj.pop("stringData", None) or {}
    if sd:
        data = obj.setdefault("data", {})
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _secret_validate(obj: dict, old: dict | None) -> list[FieldError]:
    import base64
    import binascii

    errs = []
    for k, v in (obj.get("data") or {}).items():
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, TypeError, ValueError):
            errs.append(FieldError(f"data[{k}]", "FieldValueInvalid", "illegal base64 data", "<secret contents redacted>"))
    return errs


def _immutable_data(obj: dict, old: dict | None) -> list[FieldError]:
    """ConfigMaps and Secrets marked ``immutable: true`` keep their data, and stay immutable."""
    if old is None or not old.get("immutable"):
        return []
    errs = []
    if not obj.get("immutable"):
        errs.append(FieldError("immutable", "FieldValueForbidden", "field is immutable when `immutable` is set"))
    for f in ("data", "binaryData"):
        if (obj.get(f) or {}) != (old.get(f) or {}):
            errs.append(FieldError(f, "FieldValueForbidden", "field is immutable when `immutable` is set"))
    return errs


def _secret_validate_all(obj: dict, old: dict | None) -> list[FieldError]:
    errs = _secret_validate(obj, old) + _immutable_data(obj, old)
    if old is not None and obj.get("type") != old.get("type"):
        errs.append(FieldError("type", "FieldValueInvalid", "field is immutable", obj.get("type")))
    return errs


def _pvc_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("accessModes", ["ReadWriteOnce"])
    spec.setdefault("volumeMode", "Filesystem")


def _service_default(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    # No cluster network: every pod runs on this host, so a Service is reached on loopback (docs/services.md).
    if spec.get("type") != "ExternalName":
        spec.setdefault("clusterIP", "127.0.0.1")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    for p in spec.get("ports") or []:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))


def _ports(o: dict) -> str:
    ps = (o.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ps) or "<none>"


def _node_address(o: dict, kind: str) -> str:
    """The Node's first address of that type (kubectl get nodes -o wide's INTERNAL-IP, EXTERNAL-IP)."""
    return next((a.get("address", "") for a in (o.get("status") or {}).get("addresses") or [] if a.get("type") == kind), "<none>")


def _node_status(o: dict) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else "NotReady"
    return "Unknown"


def _event_object(o: dict) -> str:
    io = o.get("involvedObject") or o.get("regarding") or {}
    return f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"


DEFINITIONS = [
    ResourceDefinition(
        group="",
        kind="Namespace",
        plural="namespaces",
        singular="namespace",
        namespaced=False,
        short_names=["ns"],
        versions=_v1(OPEN, [PrinterColumn("Status", fn=lambda o: (o.get("status") or {}).get("phase", "")), age_column()], status=True),
        defaulter=_ns_default,
        name_validator=validate_dns_label,
        delete_finalizers=["kubernetes"],
        protected_names=("default", "kube-system", "kube-public"),
        merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="",
        kind="ConfigMap",
        plural="configmaps",
        singular="configmap",
        namespaced=True,
        short_names=["cm"],
        versions=_v1(
            obj_schema(data={"type": "object", "additionalProperties": {"type": "string"}}, binaryData={"type": "object", "additionalProperties": {"type": "string"}}),
            [PrinterColumn("Data", "integer", fn=_data_count), age_column()],
        ),
        validator=_immutable_data,
        merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="",
        kind="Secret",
        plural="secrets",
        singular="secret",
        namespaced=True,
        versions=_v1(
            obj_schema(data={"type": "object", "additionalProperties": {"type": "string"}}, type={"type": "string"}),
            [PrinterColumn("Type", fn=lambda o: o.get("type", "")), PrinterColumn("Data", "integer", fn=_data_count), age_column()],
        ),
        defaulter=_secret_default,
        validator=_secret_validate_all,
        merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="",
        kind="ServiceAccount",
        plural="serviceaccounts",
        singular="serviceaccount",
        namespaced=True,
        short_names=["sa"],
        versions=_v1(OPEN, [PrinterColumn("Secrets", "integer", fn=lambda o: len(o.get("secrets") or [])), age_column()]),
        merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="",
        kind="Event",
        plural="events",
        singular="event",
        namespaced=True,
        short_names=["ev"],
        versions=_v1(
            OPEN,
            [
                PrinterColumn("Last Seen", fn=lambda o: human_age(o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp"))),
                PrinterColumn("Type", fn=lambda o: o.get("type", "")),
                PrinterColumn("Reason", fn=lambda o: o.get("reason", "")),
                PrinterColumn("Object", fn=_event_object),
                PrinterColumn("Message", fn=lambda o: o.get("message", "")),
            ],
        ),
        merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="",
        kind="PersistentVolumeClaim",
        plural="persistentvolumeclaims",
        singular="persistentvolumeclaim",
        namespaced=True,
        short_names=["pvc"],
        versions=_v1(
            OPEN,
            [
                PrinterColumn("Status", fn=lambda o: (o.get("status") or {}).get("phase", "Pending")),
                PrinterColumn("Volume", fn=lambda o: (o.get("spec") or {}).get("volumeName", "")),
                PrinterColumn("Capacity", fn=lambda o: ((o.get("status") or {}).get("capacity") or {}).get("storage", "")),
                PrinterColumn("Access Modes", fn=lambda o: ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}.get(m, m) for m in (o.get("spec") or {}).get("accessModes") or [])),
                PrinterColumn("StorageClass", fn=lambda o: (o.get("spec") or {}).get("storageClassName", "")),
                age_column(),
            ],
            status=True,
        ),
        defaulter=_pvc_default,
        merge_keys=META_MERGE_KEYS,
    ),
    ResourceDefinition(
        group="",
        kind="Node",
        plural="nodes",
        singular="node",
        namespaced=False,
        short_names=["no"],
        versions=_v1(
            OPEN,
            [
                PrinterColumn("Status", fn=_node_status),
                PrinterColumn("Roles", fn=lambda o: ",".join(k.split("/", 1)[1] for k in (o["metadata"].get("labels") or {}) if k.startswith("node-role.kubernetes.io/")) or "<none>"),
                age_column(),
                PrinterColumn("Version", fn=lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")),
                PrinterColumn("Internal-IP", fn=lambda o: _node_address(o, "InternalIP"), priority=1),
                PrinterColumn("External-IP", fn=lambda o: _node_address(o, "ExternalIP"), priority=1),
            ],
            status=True,
        ),
        merge_keys={**META_MERGE_KEYS, "status.addresses": "type"},
    ),
    ResourceDefinition(
        group="",
        kind="Service",
        plural="services",
        singular="service",
        namespaced=True,
        short_names=["svc"],
        categories=["all"],
        versions=_v1(
            OPEN,
            [
                PrinterColumn("Type", fn=lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
                PrinterColumn("Cluster-IP", fn=lambda o: (o.get("spec") or {}).get("clusterIP", "<none>")),
                PrinterColumn("External-IP", fn=lambda o: "<none>"),
                PrinterColumn("Port(s)", fn=_ports),
                age_column(),
                PrinterColumn("Selector", fn=lambda o: ",".join(f"{k}={v}" for k, v in ((o.get("spec") or {}).get("selector") or {}).items()) or "<none>", priority=1),
            ],
            status=True,
        ),
        defaulter=_service_default,
        # Created with an empty load balancer status, as kube-apiserver answers a create.
        initial_status=lambda obj: {"loadBalancer": {}},
        merge_keys={**META_MERGE_KEYS, "spec.ports": "port"},
    ),
    ResourceDefinition(
        group="",
        kind="Endpoints",
        plural="endpoints",
        singular="endpoints",
        namespaced=True,
        short_names=["ep"],
        versions=_v1(
            OPEN,
            [
                PrinterColumn(
                    "Endpoints",
                    fn=lambda o: ",".join(
                        f"{a.get('ip')}:{p.get('port')}"
                        for s in o.get("subsets") or []
                        for a in s.get("addresses") or []
                        for p in s.get("ports") or []
                    ) or "<none>",
                ),
                age_column(),
            ],
        ),
        merge_keys=META_MERGE_KEYS,
    ),
]
