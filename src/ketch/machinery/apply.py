"""Server-side apply and managedFields.

Field ownership is tracked per manager as a set of field paths (FieldsV1 in the API). An apply sets the
fields in the applied configuration, takes ownership of them, removes fields the manager applied before
but no longer applies (when no one else owns them), and reports a 409 Conflict when it would change a
field another manager owns, unless forced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from ketch.kinds.definitions import ResourceDefinition
from ketch.kinds.meta import now
from ketch.machinery import bounds, errors
from ketch.machinery.errors import StatusError, bad_request
from ketch.machinery.jsoncopy import clone

if TYPE_CHECKING:
    from ketch.machinery.api import Api, Options

Path = tuple[str, ...]
_SKIP_META = {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "name", "namespace", "deletionTimestamp", "selfLink"}


def _list_key(item: Any, merge_key: str | None) -> str | None:
    if merge_key and isinstance(item, dict) and merge_key in item:
        return f"k:{{\"{merge_key}\":{_json(item[merge_key])}}}"
    return None


def _json(v: Any) -> str:
    import orjson

    return orjson.dumps(v).decode()


_MERGE_KEYS: dict[tuple[str, str, str], str | None] = {}


def _merge_key(rd: ResourceDefinition, path: list[str]) -> str | None:
    """The merge key of the list at ``path``; asked for every field of every write, so remembered per kind."""
    from ketch.machinery.patch import _merge_key_for

    dotted = ".".join(p for p in path if not p.startswith("k:") and not p.startswith("v:"))
    ck = (rd.group, rd.kind, dotted)
    if ck not in _MERGE_KEYS:
        if len(_MERGE_KEYS) > 20_000:
            _MERGE_KEYS.clear()
        _MERGE_KEYS[ck] = _merge_key_for(dotted, rd.merge_keys) or None
    return _MERGE_KEYS[ck]


def field_set(rd: ResourceDefinition, obj: Any, path: list[str] | None = None) -> set[Path]:
    """Every leaf path an (applied) object sets; associative list items are keyed by their merge key."""
    path = path or []
    out: set[Path] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not path and k in ("apiVersion", "kind", "status"):
                continue
            if path == ["f:metadata"] and k in _SKIP_META:
                continue
            sub = [*path, f"f:{k}"]
            child = field_set(rd, v, sub)
            if not path and k == "metadata":
                out |= child  # metadata holding only system fields is no one's field
            else:
                out |= child or {tuple(sub)}
        return out
    if isinstance(obj, list):
        mk = _merge_key(rd, [p[2:] for p in path])
        keyed = mk and all(_list_key(x, mk) for x in obj)
        if not keyed:
            return {tuple(path)}
        for x in obj:
            sub = [*path, _list_key(x, mk)]
            out |= field_set(rd, x, sub) or {tuple(sub)}
            out.add(tuple(sub))
        return out
    return {tuple(path)}


def to_fields_v1(paths: set[Path]) -> dict:
    """FieldsV1: a tree of field names; "." marks a node that is itself owned and has children."""
    root: dict = {}
    for p in sorted(paths):
        cur = root
        for seg in p:
            cur = cur.setdefault(seg, {})
    _mark_self(root, paths, ())
    return root


def _mark_self(node: dict, paths: set[Path], prefix: Path) -> None:
    for k, v in node.items():
        if k == ".":
            continue
        p = (*prefix, k)
        if v:
            if p in paths:
                v["."] = {}
            _mark_self(v, paths, p)


def from_fields_v1(tree: dict, prefix: tuple[str, ...] = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in (tree or {}).items():
        if k == ".":
            out.add(prefix)
            continue
        p = (*prefix, k)
        if v:
            out |= from_fields_v1(v, p) or {p}
        else:
            out.add(p)
    return out


def _get(obj: Any, path: Path, rd: ResourceDefinition) -> tuple[bool, Any]:
    cur = obj
    for i, seg in enumerate(path):
        if seg.startswith("f:"):
            if not isinstance(cur, dict) or seg[2:] not in cur:
                return False, None
            cur = cur[seg[2:]]
        elif seg.startswith("k:"):
            if not isinstance(cur, list):
                return False, None
            mk = _merge_key(rd, [p[2:] for p in path[:i]])
            found = [x for x in cur if _list_key(x, mk) == seg]
            if not found:
                return False, None
            cur = found[0]
        else:
            return False, None
    return True, cur


def _delete(obj: Any, path: Path, rd: ResourceDefinition) -> None:
    if not path:
        return
    ok, parent = _get(obj, path[:-1], rd)
    if not ok:
        return
    seg = path[-1]
    if seg.startswith("f:") and isinstance(parent, dict):
        parent.pop(seg[2:], None)
    elif seg.startswith("k:") and isinstance(parent, list):
        mk = _merge_key(rd, [p[2:] for p in path[:-1]])
        parent[:] = [x for x in parent if _list_key(x, mk) != seg]


def _apply_merge(rd: ResourceDefinition, cur: Any, applied: Any, path: list[str]) -> Any:
    if isinstance(applied, dict) and isinstance(cur, dict):
        out = dict(cur)
        for k, v in applied.items():
            out[k] = _apply_merge(rd, cur.get(k), v, [*path, k])
        return out
    if isinstance(applied, list) and isinstance(cur, list):
        mk = _merge_key(rd, path)
        if mk and all(isinstance(x, dict) and mk in x for x in applied + cur):
            out = [clone(x) for x in cur]
            for item in applied:
                idx = next((i for i, x in enumerate(out) if x.get(mk) == item.get(mk)), None)
                if idx is None:
                    out.append(clone(item))
                else:
                    out[idx] = _apply_merge(rd, out[idx], item, path)
            return out
    return clone(applied)


def _managers(obj: dict) -> list[dict]:
    return list(obj.get("metadata", {}).get("managedFields") or [])


def _entry(manager: str, operation: str, api_version: str, fields: set[Path], prev: dict | None) -> dict:
    """A managedFields entry; its time moves only when what the manager owns changes, so repeating the
    same apply or update is a no-op rather than a write."""
    fv1 = to_fields_v1(fields)
    same = prev is not None and prev.get("fieldsV1") == fv1 and prev.get("apiVersion") == api_version
    t = prev.get("time") if same and prev is not None else now()
    return {"manager": manager, "operation": operation, "apiVersion": api_version, "time": t, "fieldsType": "FieldsV1", "fieldsV1": fv1}


def record_update(obj: dict, old: dict | None, manager: str, api_version: str) -> None:
    """Record an Update-operation manager's ownership of the fields it changed."""
    from ketch.machinery.registry import Registry  # noqa: F401  (typing only)

    rd = _rd_stub(obj)
    new_fs = field_set(rd, obj)
    old_fs = field_set(rd, old) if old is not None else set()
    changed = {p for p in new_fs if p not in old_fs or _get(obj, p, rd) != _get(old, p, rd)} if old else new_fs
    mfs = [m for m in _managers(old or obj) if not (m.get("manager") == manager and m.get("operation") == "Update")]
    prev = next((m for m in _managers(old or {}) if m.get("manager") == manager and m.get("operation") == "Update"), None)
    owned = (from_fields_v1(prev.get("fieldsV1", {})) if prev else set()) | changed
    owned &= new_fs
    # others lose the fields this manager changed
    for m in mfs:
        theirs = from_fields_v1(m.get("fieldsV1", {})) - changed
        m["fieldsV1"] = to_fields_v1(theirs)
    mfs = [m for m in mfs if m.get("fieldsV1")]
    if owned:
        mfs.append(_entry(manager, "Update", api_version, owned, prev))
    obj["metadata"]["managedFields"] = mfs
    if not mfs:
        obj["metadata"].pop("managedFields", None)


_RD_CACHE: dict[str, ResourceDefinition] = {}


def _rd_stub(obj: dict) -> ResourceDefinition:
    """Merge keys for field paths come from the built-in kind when there is one."""
    from ketch.kinds.builtin import all_definitions

    if not _RD_CACHE:
        for rd in all_definitions():
            _RD_CACHE[f"{rd.group}/{rd.kind}"] = rd
    av = obj.get("apiVersion", "")
    group = av.rpartition("/")[0]
    rd = _RD_CACHE.get(f"{group}/{obj.get('kind')}")
    if rd is None:
        rd = ResourceDefinition(group=group, kind=obj.get("kind", ""), plural="", singular="", namespaced=True, versions=[], merge_keys={})
    return rd


def server_side_apply(
    api: Api, rd: ResourceDefinition, ns: str, name: str, patch: Any, version: str, subresource: str | None, opts: Options
) -> dict:
    if isinstance(patch, str | bytes):
        try:
            patch = bounds.load_yaml(patch)
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding YAML: {e}") from e
    if not isinstance(patch, dict):
        raise bad_request("apply patch must be an object")
    bad = bounds.non_finite(patch)
    if bad:
        raise errors.invalid(rd, str((patch.get("metadata") or {}).get("name") or name), bad)
    manager = opts.field_manager
    if not manager:
        raise bad_request("PATCH requests with apply content type require a fieldManager query parameter")
    if not patch.get("apiVersion") or not patch.get("kind"):
        raise bad_request("invalid object type: apiVersion and kind must be set in an apply configuration")
    md = patch.setdefault("metadata", {})
    if md.get("name") and md["name"] != name:
        raise bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
    md["name"] = name
    applied_fs = field_set(rd, patch)
    if subresource == "status":
        applied_fs = {p for p in field_set(rd, {"status": patch.get("status")}, []) }
    old = api.store.get(rd.key, ns if rd.namespaced else "", name)
    av = rd.api_version(version)
    if old is None:
        obj = clone(patch)
        obj["metadata"].pop("managedFields", None)
        from ketch.machinery.api import Options as _O

        o2 = _O(dry_run=opts.dry_run, field_manager="", field_validation=opts.field_validation, warnings=opts.warnings)
        # create, then stamp ownership
        entry = {"manager": manager, "operation": "Apply", "apiVersion": av, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(applied_fs)}
        obj["metadata"]["managedFields"] = [entry]
        return api.create(rd, ns, obj, version, o2)
    cur = api._out(rd, version, clone(old))
    mfs = _managers(cur)
    conflicts: list[tuple[str, Path]] = []
    for m in mfs:
        if m.get("manager") == manager and m.get("operation") == "Apply":
            continue
        theirs = from_fields_v1(m.get("fieldsV1", {}))
        for p in applied_fs & theirs:
            if p[-1].startswith("k:"):
                continue  # a list item's existence is shared, not a value that can conflict
            ok_a, va = _get(patch, p, rd)
            ok_c, vc = _get(cur, p, rd)
            if ok_c and va != vc:
                conflicts.append((m.get("manager", ""), p))
    force = opts.force
    if conflicts and not force and _all_in_last_applied(rd, cur, conflicts):
        # Migrating from client-side apply: fields the last-applied annotation lists were the same
        # user's, so ownership moves without a conflict (as Kubernetes' lastAppliedManager does).
        force = True
    if conflicts and not force:
        raise _conflict_error(conflicts)
    mine = next((m for m in mfs if m.get("manager") == manager and m.get("operation") == "Apply"), None)
    previously = from_fields_v1(mine.get("fieldsV1", {})) if mine else set()
    others_all: set[Path] = set()
    new_mfs = []
    for m in mfs:
        if m is mine:
            continue
        theirs = from_fields_v1(m.get("fieldsV1", {}))
        if force:
            theirs -= applied_fs
        others_all |= theirs
        if theirs:
            m = dict(m)
            m["fieldsV1"] = to_fields_v1(theirs)
            new_mfs.append(m)
    merged = _apply_merge(rd, cur, {k: v for k, v in patch.items() if k != "metadata"}, [])
    mmd = merged["metadata"]
    for k in ("labels", "annotations"):
        if k in md:
            mmd[k] = {**(mmd.get(k) or {}), **(md.get(k) or {})}
    for k in ("finalizers", "ownerReferences"):
        if k in md:
            mmd[k] = md[k]
    # Whole list items first (their key fields would otherwise vanish before the item is found), then
    # the deepest fields first.
    gone = previously - applied_fs - others_all
    for p in sorted(gone, key=lambda p: (not p[-1].startswith("k:"), -len(p))):
        _delete(merged, p, rd)
    anns = mmd.get("annotations") or {}
    if LAST_APPLIED in anns and LAST_APPLIED not in (md.get("annotations") or {}):
        # Keep client-side apply's record in step, so a later `kubectl apply` computes the right diff.
        anns[LAST_APPLIED] = _json({k: v for k, v in patch.items() if k != "status"})
    new_mfs.append(_entry(manager, "Apply", av, applied_fs, mine))
    mmd["managedFields"] = new_mfs
    mmd["resourceVersion"] = old["metadata"]["resourceVersion"]
    from ketch.machinery.api import Options as _O

    o2 = _O(dry_run=opts.dry_run, field_manager="", field_validation=opts.field_validation, warnings=opts.warnings)
    return api._write_update(rd, version, old, merged, subresource, o2)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _all_in_last_applied(rd: ResourceDefinition, cur: dict, conflicts: list[tuple[str, Path]]) -> bool:
    raw = ((cur.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return False
    try:
        import orjson

        last = orjson.loads(raw)
    except ValueError:
        return False
    fs = field_set(rd, last) if isinstance(last, dict) else set()
    return all(p in fs for _, p in conflicts)


def _render(p: Path) -> str:
    """A field path as Kubernetes prints it: .spec.containers[name="c1"].image"""
    import orjson

    out = ""
    for seg in p:
        if seg.startswith("f:"):
            out += "." + seg[2:]
        elif seg.startswith("k:"):
            try:
                key = orjson.loads(seg[2:])
                out += "[" + ",".join(f"{k}={_json(v)}" for k, v in key.items()) + "]"
            except ValueError:
                out += f"[{seg[2:]}]"
        else:
            out += f"[{seg[2:]}]"
    return out


def _conflict_error(conflicts: list[tuple[str, Path]]) -> StatusError:
    """409 worded as Kubernetes words it; kubectl adds its advice on --force-conflicts below."""
    conflicts = sorted(set(conflicts))
    if len(conflicts) == 1:
        body = f'conflict with "{conflicts[0][0]}": {_render(conflicts[0][1])}'
    else:
        lines: list[str] = []
        for mgr in sorted({m for m, _ in conflicts}):
            lines.append(f'conflicts with "{mgr}":')
            lines.extend(f"- {_render(p)}" for m, p in conflicts if m == mgr)
        body = "\n".join(lines)
    n = len(conflicts)
    msg = f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {body}"
    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": _render(p)} for m, p in conflicts]
    return StatusError(409, "Conflict", msg, {"causes": causes})


__all__ = ["record_update", "server_side_apply", "errors"]
