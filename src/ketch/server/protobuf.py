"""Decoding the Kubernetes protobuf wire format that kubectl uses for built-in kinds (``kubectl create
namespace|configmap|secret|...`` send ``application/vnd.kubernetes.protobuf``).

The envelope is the magic ``k8s\\0`` followed by a runtime.Unknown message (typeMeta, raw). ``raw`` is the
kind's own message; each kind is described here by a table of field numbers, names and types, which is all
a decoder needs. Kinds without a table are refused with 415 and a message saying to send JSON.
"""

from __future__ import annotations

import base64
import datetime as _dt
from typing import Any

# A field spec: (json name, type, sub-schema). Types: str, bytes, int, bool, msg, map_ss, map_sb,
# rep_str, rep_msg, time, quantity_map, intstr.
Schema = dict[int, tuple[str, str, Any]]

TIME: Schema = {1: ("seconds", "int", None), 2: ("nanos", "int", None)}
OWNER_REF: Schema = {
    1: ("kind", "str", None), 3: ("name", "str", None), 4: ("uid", "str", None), 5: ("apiVersion", "str", None),
    6: ("controller", "bool", None), 7: ("blockOwnerDeletion", "bool", None),
}
OBJECT_META: Schema = {
    1: ("name", "str", None), 2: ("generateName", "str", None), 3: ("namespace", "str", None),
    5: ("uid", "str", None), 6: ("resourceVersion", "str", None), 7: ("generation", "int", None),
    8: ("creationTimestamp", "time", None), 11: ("labels", "map_ss", None), 12: ("annotations", "map_ss", None),
    13: ("ownerReferences", "rep_msg", OWNER_REF), 14: ("finalizers", "rep_str", None),
}
LOCAL_REF: Schema = {1: ("name", "str", None)}
OBJECT_REF: Schema = {1: ("kind", "str", None), 2: ("namespace", "str", None), 3: ("name", "str", None), 4: ("uid", "str", None), 5: ("apiVersion", "str", None)}

LABEL_SELECTOR: Schema = {
    1: ("matchLabels", "map_ss", None),
    2: ("matchExpressions", "rep_msg", {1: ("key", "str", None), 2: ("operator", "str", None), 3: ("values", "rep_str", None)}),
}
INT_OR_STRING: Schema = {1: ("type", "int", None), 2: ("intVal", "int", None), 3: ("strVal", "str", None)}
KEY_SELECTOR: Schema = {1: ("", "inline", LOCAL_REF), 2: ("key", "str", None), 3: ("optional", "bool", None)}
ENV_VAR: Schema = {
    1: ("name", "str", None), 2: ("value", "str", None),
    3: ("valueFrom", "msg", {
        1: ("fieldRef", "msg", {1: ("apiVersion", "str", None), 2: ("fieldPath", "str", None)}),
        2: ("resourceFieldRef", "msg", {1: ("containerName", "str", None), 2: ("resource", "str", None)}),
        3: ("configMapKeyRef", "msg", KEY_SELECTOR),
        4: ("secretKeyRef", "msg", KEY_SELECTOR),
    }),
}
ENV_FROM: Schema = {
    1: ("prefix", "str", None),
    2: ("configMapRef", "msg", {1: ("", "inline", LOCAL_REF), 2: ("optional", "bool", None)}),
    3: ("secretRef", "msg", {1: ("", "inline", LOCAL_REF), 2: ("optional", "bool", None)}),
}
CONTAINER: Schema = {
    1: ("name", "str", None), 2: ("image", "str", None), 3: ("command", "rep_str", None), 4: ("args", "rep_str", None),
    5: ("workingDir", "str", None),
    6: ("ports", "rep_msg", {1: ("name", "str", None), 2: ("hostPort", "int", None), 3: ("containerPort", "int", None), 4: ("protocol", "str", None), 5: ("hostIP", "str", None)}),
    7: ("env", "rep_msg", ENV_VAR), 19: ("envFrom", "rep_msg", ENV_FROM),
    8: ("resources", "msg", {1: ("limits", "quantity_map", None), 2: ("requests", "quantity_map", None)}),
    9: ("volumeMounts", "rep_msg", {1: ("name", "str", None), 2: ("readOnly", "flag", None), 3: ("mountPath", "str", None), 4: ("subPath", "str", None)}),
    13: ("terminationMessagePath", "str", None), 20: ("terminationMessagePolicy", "str", None),
    14: ("imagePullPolicy", "str", None), 16: ("stdin", "flag", None), 17: ("stdinOnce", "flag", None), 18: ("tty", "flag", None),
}
KEY_TO_PATH: Schema = {1: ("key", "str", None), 2: ("path", "str", None), 3: ("mode", "int", None)}
VOLUME: Schema = {
    1: ("name", "str", None),
    2: ("", "inline", {
        1: ("hostPath", "msg", {1: ("path", "str", None), 2: ("type", "str", None)}),
        2: ("emptyDir", "msg", {1: ("medium", "str", None), 2: ("sizeLimit", "quantity", None)}),
        6: ("secret", "msg", {1: ("secretName", "str", None), 2: ("items", "rep_msg", KEY_TO_PATH), 3: ("defaultMode", "int", None), 4: ("optional", "bool", None)}),
        10: ("persistentVolumeClaim", "msg", {1: ("claimName", "str", None), 2: ("readOnly", "flag", None)}),
        19: ("configMap", "msg", {1: ("", "inline", LOCAL_REF), 2: ("items", "rep_msg", KEY_TO_PATH), 3: ("defaultMode", "int", None), 4: ("optional", "bool", None)}),
    }),
}
POD_SPEC: Schema = {
    1: ("volumes", "rep_msg", VOLUME), 2: ("containers", "rep_msg", CONTAINER), 20: ("initContainers", "rep_msg", CONTAINER),
    3: ("restartPolicy", "str", None), 4: ("terminationGracePeriodSeconds", "int", None),
    5: ("activeDeadlineSeconds", "int", None), 6: ("dnsPolicy", "str", None), 7: ("nodeSelector", "map_ss", None),
    8: ("serviceAccountName", "str", None), 10: ("nodeName", "str", None), 11: ("hostNetwork", "flag", None),
    15: ("imagePullSecrets", "rep_msg", LOCAL_REF), 16: ("hostname", "str", None), 17: ("subdomain", "str", None),
    19: ("schedulerName", "str", None), 21: ("automountServiceAccountToken", "bool", None),
    22: ("tolerations", "rep_msg", {1: ("key", "str", None), 2: ("operator", "str", None), 3: ("value", "str", None), 4: ("effect", "str", None), 5: ("tolerationSeconds", "int", None)}),
    24: ("priorityClassName", "str", None),
}
POD_TEMPLATE: Schema = {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", POD_SPEC)}
SERVICE_SPEC: Schema = {
    1: ("ports", "rep_msg", {1: ("name", "str", None), 2: ("protocol", "str", None), 3: ("port", "int", None), 4: ("targetPort", "intstr", None), 5: ("nodePort", "int", None), 6: ("appProtocol", "str", None)}),
    2: ("selector", "map_ss", None), 3: ("clusterIP", "str", None), 18: ("clusterIPs", "rep_str", None), 4: ("type", "str", None),
    5: ("externalIPs", "rep_str", None), 7: ("sessionAffinity", "str", None), 10: ("externalName", "str", None),
    11: ("externalTrafficPolicy", "str", None), 13: ("publishNotReadyAddresses", "flag", None),
    17: ("ipFamilyPolicy", "str", None), 19: ("ipFamilies", "rep_str", None), 22: ("internalTrafficPolicy", "str", None),
}
JOB_SPEC: Schema = {
    1: ("parallelism", "int", None), 2: ("completions", "int", None), 3: ("activeDeadlineSeconds", "int", None),
    4: ("selector", "msg", LABEL_SELECTOR), 5: ("manualSelector", "bool", None), 6: ("template", "msg", POD_TEMPLATE),
    7: ("backoffLimit", "int", None), 8: ("ttlSecondsAfterFinished", "int", None), 9: ("completionMode", "str", None),
    10: ("suspend", "bool", None), 15: ("managedBy", "str", None),
}

RESOURCE_ATTRIBUTES: Schema = {1: ("namespace", "str", None), 2: ("verb", "str", None), 3: ("group", "str", None), 4: ("version", "str", None),
                               5: ("resource", "str", None), 6: ("subresource", "str", None), 7: ("name", "str", None)}
NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", "str", None), 2: ("verb", "str", None)}
SAR_SPEC: Schema = {1: ("resourceAttributes", "msg", RESOURCE_ATTRIBUTES), 2: ("nonResourceAttributes", "msg", NON_RESOURCE_ATTRIBUTES),
                    3: ("user", "str", None), 4: ("groups", "rep_str", None), 6: ("uid", "str", None)}
POLICY_RULE: Schema = {1: ("verbs", "rep_str", None), 2: ("apiGroups", "rep_str", None), 3: ("resources", "rep_str", None),
                       4: ("resourceNames", "rep_str", None), 5: ("nonResourceURLs", "rep_str", None)}
BINDING: Schema = {1: ("metadata", "msg", OBJECT_META),
                   2: ("subjects", "rep_msg", {1: ("kind", "str", None), 2: ("apiGroup", "str", None), 3: ("name", "str", None), 4: ("namespace", "str", None)}),
                   3: ("roleRef", "msg", {1: ("apiGroup", "str", None), 2: ("kind", "str", None), 3: ("name", "str", None)})}
SCHEMAS: dict[tuple[str, str], Schema] = {
    ("v1", "Pod"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", POD_SPEC)},
    ("v1", "Service"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", SERVICE_SPEC)},
    ("batch/v1", "Job"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", JOB_SPEC)},
    ("v1", "Namespace"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", {1: ("finalizers", "rep_str", None)})},
    ("v1", "ConfigMap"): {1: ("metadata", "msg", OBJECT_META), 2: ("data", "map_ss", None), 3: ("binaryData", "map_sb", None), 4: ("immutable", "bool", None)},
    ("v1", "Secret"): {1: ("metadata", "msg", OBJECT_META), 2: ("data", "map_sb", None), 3: ("type", "str", None), 4: ("stringData", "map_ss", None), 5: ("immutable", "bool", None)},
    ("authentication.k8s.io/v1", "TokenRequest"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", {
        1: ("audiences", "rep_str", None), 4: ("expirationSeconds", "int", None),
        3: ("boundObjectRef", "msg", {1: ("kind", "str", None), 2: ("apiVersion", "str", None), 3: ("name", "str", None), 4: ("uid", "str", None)})})},
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", SAR_SPEC)},
    ("authorization.k8s.io/v1", "SubjectAccessReview"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", SAR_SPEC)},
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", SAR_SPEC)},
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", {1: ("namespace", "str", None)})},
    ("authentication.k8s.io/v1", "SelfSubjectReview"): {1: ("metadata", "msg", OBJECT_META)},
    ("rbac.authorization.k8s.io/v1", "Role"): {1: ("metadata", "msg", OBJECT_META), 2: ("rules", "rep_msg", POLICY_RULE)},
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {1: ("metadata", "msg", OBJECT_META), 2: ("rules", "rep_msg", POLICY_RULE),
                                                      3: ("aggregationRule", "msg", {1: ("clusterRoleSelectors", "rep_msg", LABEL_SELECTOR)})},
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): BINDING,
    ("v1", "ServiceAccount"): {1: ("metadata", "msg", OBJECT_META), 2: ("secrets", "rep_msg", OBJECT_REF), 3: ("imagePullSecrets", "rep_msg", LOCAL_REF), 4: ("automountServiceAccountToken", "bool", None)},
}


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Split a message into (field number, wire type, value) triples."""
    out = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            v = buf[i : i + n]
            i += n
        elif wt == 1:
            v = int.from_bytes(buf[i : i + 8], "little")
            i += 8
        elif wt == 5:
            v = int.from_bytes(buf[i : i + 4], "little")
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")
        out.append((num, wt, v))
    return out


def decode_message(buf: bytes, schema: Schema) -> dict:
    out: dict[str, Any] = {}
    for num, _wt, v in fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        name, typ, sub = spec
        if typ == "str":
            if v:  # gogo-protobuf writes empty strings; JSON would omit them
                out[name] = v.decode()
        elif typ == "bytes":
            out[name] = base64.b64encode(v).decode()
        elif typ == "int":
            if v:
                out[name] = v - (1 << 64) if v >= 1 << 63 else v
        elif typ == "bool":  # a pointer in Go: present means set, false included
            out[name] = bool(v)
        elif typ == "flag":  # a plain Go bool: always written, false is the default JSON would omit
            if v:
                out[name] = True
        elif typ == "inline":  # an embedded struct: its fields belong to the parent
            out.update(decode_message(v, sub))
        elif typ == "intstr":
            d = decode_message(v, INT_OR_STRING)
            out[name] = d.get("strVal", "") if d.get("type") == 1 else d.get("intVal", 0)
        elif typ == "quantity":
            out[name] = _quantity(v)
        elif typ == "quantity_map":
            entry = {n: val for n, _w, val in fields(v)}
            out.setdefault(name, {})[entry.get(1, b"").decode()] = _quantity(entry.get(2, b""))
        elif typ == "msg":
            out[name] = decode_message(v, sub)
        elif typ == "rep_str":
            out.setdefault(name, []).append(v.decode())
        elif typ == "rep_msg":
            out.setdefault(name, []).append(decode_message(v, sub))
        elif typ in ("map_ss", "map_sb"):
            entry = {n: val for n, _w, val in fields(v)}
            key = entry.get(1, b"").decode()
            raw = entry.get(2, b"")
            out.setdefault(name, {})[key] = raw.decode() if typ == "map_ss" else base64.b64encode(raw).decode()
        elif typ == "time":
            t = decode_message(v, TIME)
            if t.get("seconds"):
                out[name] = _dt.datetime.fromtimestamp(t["seconds"], _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def _quantity(buf: bytes) -> str:
    return next((v.decode() for n, _w, v in fields(buf) if n == 1), "")


def decode(body: bytes) -> dict:
    """Decode a k8s protobuf request body into the JSON-shaped object."""
    if not body.startswith(b"k8s\x00"):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unknown = {n: v for n, _w, v in fields(body[4:])}
    tm = {n: v for n, _w, v in fields(unknown.get(1, b""))}
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    schema = SCHEMAS.get((api_version, kind))
    if schema is None:
        raise ProtobufError(f"{api_version} {kind} is not decodable from protobuf here; send JSON")
    obj = decode_message(unknown.get(2, b""), schema)
    return {"apiVersion": api_version, "kind": kind, **obj}
