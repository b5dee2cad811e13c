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

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", {1: ("finalizers", "rep_str", None)})},
    ("v1", "ConfigMap"): {1: ("metadata", "msg", OBJECT_META), 2: ("data", "map_ss", None), 3: ("binaryData", "map_sb", None), 4: ("immutable", "bool", None)},
    ("v1", "Secret"): {1: ("metadata", "msg", OBJECT_META), 2: ("data", "map_sb", None), 3: ("type", "str", None), 4: ("stringData", "map_ss", None), 5: ("immutable", "bool", None)},
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
        elif typ == "bool":
            out[name] = bool(v)
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
