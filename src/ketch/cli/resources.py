"""`ketch apply|get|delete`: thin conveniences over ketch's Kubernetes API, for when kubectl is not at hand.

They speak plain HTTP to a running server (``--server`` / ``KETCH_SERVER``, default http://127.0.0.1:8080),
find kinds through discovery as kubectl does, apply with server-side apply (field manager ``ketch``), and
print Kubernetes' own Status messages on errors.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


class CliError(Exception):
    pass


@dataclass
class Resource:
    group_version: str
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base + (f"/{name}" if name else "")


class Api:
    def __init__(self, server: str | None) -> None:
        from ketch.machinery.connect import resolve

        self.http = resolve(server).client()
        self._resources: list[tuple[Resource, list[str]]] | None = None

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                msg = r.json().get("message") or r.text
            except ValueError:
                msg = r.text
            raise CliError(f"Error from server ({r.reason_phrase}): {msg}")
        return r.json()

    def resources(self) -> list[tuple[Resource, list[str]]]:
        """Every served resource with the names it answers to (plural, singular, kind, short names)."""
        if self._resources is None:
            gvs = ["v1"] + [v["groupVersion"] for g in self._check(self.http.get("/apis"))["groups"] for v in g["versions"][:1]]
            out = []
            for gv in gvs:
                lst = self._check(self.http.get(f"/api/{gv}" if gv == "v1" else f"/apis/{gv}"))
                for r in lst["resources"]:
                    if "/" in r["name"]:
                        continue
                    names = [r["name"], r.get("singularName", ""), r["kind"].lower(), *r.get("shortNames", [])]
                    out.append((Resource(gv, r["name"], r["kind"], r["namespaced"]), [n for n in names if n]))
            self._resources = out
        return self._resources

    def by_name(self, what: str) -> Resource:
        w = what.lower()
        plain, _, group = w.partition(".")
        for res, names in self.resources():
            if plain in names and (not group or res.group_version.split("/")[0] == group or res.group_version.startswith(group)):
                return res
        raise CliError(f'error: the server doesn\'t have a resource type "{what}"')

    def by_kind(self, api_version: str, kind: str) -> Resource:
        for res, _ in self.resources():
            if res.group_version == api_version and res.kind == kind:
                return res
        raise CliError(f'error: resource mapping not found: no matches for kind "{kind}" in version "{api_version}"')


def load_documents(path: str) -> list[dict]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise CliError(f"error: error parsing {path}: {e}") from e
    out = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind", "").endswith("List") and isinstance(d.get("items"), list):
            out.extend(d["items"])
        else:
            out.append(d)
    return out


def apply(api: Api, path: str, namespace: str | None, force: bool) -> list[str]:
    lines = []
    for doc in load_documents(path):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise CliError(f"error: {path}: every document needs apiVersion and kind")
        res = api.by_kind(doc["apiVersion"], doc["kind"])
        md = doc.setdefault("metadata", {})
        ns = (md.get("namespace") or namespace or "default") if res.namespaced else None
        if ns and res.namespaced:
            md["namespace"] = ns
        params = {"fieldManager": "ketch", "fieldValidation": "Strict", "force": "true" if force else "false"}
        r = api.http.patch(res.path(ns, md.get("name")), params=params, content=json.dumps(doc),
                           headers={"Content-Type": "application/apply-patch+yaml"})
        api._check(r)
        lines.append(f"{res.plural}/{md.get('name')} serverside-applied")
    return lines


def get(api: Api, what: str, name: str | None, namespace: str | None, all_namespaces: bool, output: str | None) -> str:
    res = api.by_name(what)
    ns = None if all_namespaces else (namespace or "default")
    if output in ("json", "yaml"):
        data = api._check(api.http.get(res.path(ns, name)))
        return json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False)
    table = api._check(api.http.get(res.path(ns, name), headers={"Accept": TABLE}))
    cols = [c for c in table["columnDefinitions"] if c.get("priority", 0) == 0]
    idx = [i for i, c in enumerate(table["columnDefinitions"]) if c.get("priority", 0) == 0]
    rows = [[str(r["cells"][i]) for i in idx] for r in table.get("rows", [])]
    if all_namespaces and res.namespaced:
        cols = [{"name": "Namespace"}, *cols]
        rows = [[(r.get("object") or {}).get("metadata", {}).get("namespace", ""), *row] for r, row in zip(table.get("rows", []), rows, strict=True)]
    if not rows:
        return f"No resources found in {ns} namespace." if ns and res.namespaced else "No resources found"
    header = [c["name"].upper() for c in cols]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows])


def delete(api: Api, what: str, names: list[str], namespace: str | None) -> list[str]:
    res = api.by_name(what)
    ns = namespace or "default"
    out = []
    for n in names:
        api._check(api.http.delete(res.path(ns, n), params={"propagationPolicy": "Background"}))
        out.append(f'{res.kind.lower()} "{n}" deleted')
    return out
