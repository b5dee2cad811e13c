"""discovery.k8s.io/v1 EndpointSlice: what current clients (and kube-proxy) read instead of Endpoints.

ketch's endpoints controller writes both for every Service with a selector (docs/services.md)."""

from __future__ import annotations

from ketch.kinds.builtin._common import META_MERGE_KEYS, OPEN, age_column
from ketch.kinds.definitions import FieldError, PrinterColumn, ResourceDefinition, VersionDef


def _validate(obj: dict, old: dict | None) -> list[FieldError]:
    at = obj.get("addressType")
    if at not in ("IPv4", "IPv6", "FQDN"):
        return [FieldError("addressType", "FieldValueNotSupported", 'supported values: "FQDN", "IPv4", "IPv6"', at)]
    if old is not None and old.get("addressType") != at:
        return [FieldError("addressType", "FieldValueInvalid", "field is immutable", at)]
    return []


def _endpoints(o: dict) -> str:
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "") if addrs else "<unset>"


DEFINITIONS = [
    ResourceDefinition(
        group="discovery.k8s.io",
        kind="EndpointSlice",
        plural="endpointslices",
        singular="endpointslice",
        namespaced=True,
        versions=[
            VersionDef(
                "v1",
                schema=OPEN,
                printer_columns=[
                    PrinterColumn("AddressType", fn=lambda o: o.get("addressType", "")),
                    PrinterColumn("Ports", fn=lambda o: ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>"),
                    PrinterColumn("Endpoints", fn=_endpoints),
                    age_column(),
                ],
            )
        ],
        merge_keys=META_MERGE_KEYS,
        validator=_validate,
    )
]
