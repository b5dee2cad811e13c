"""The API's semantics, HTTP-free: create, read, list, update, patch, delete and watch any registered kind.

The HTTP server and every in-process controller go through this one class, so admission (defaulting,
schema validation, pruning, name rules), optimistic concurrency, generation, finalizers and the status
subresource behave the same whoever calls.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ketch.kinds import builtin_types
from ketch.kinds.definitions import FieldError, ResourceDefinition
from ketch.kinds.meta import (
    generate_suffix,
    new_uid,
    now,
    validate_dns_subdomain,
)
from ketch.machinery import errors
from ketch.machinery.bounds import non_finite
from ketch.machinery.errors import StatusError, bad_request
from ketch.machinery.jsoncopy import clone
from ketch.machinery.metatypes import meta_type_errors
from ketch.machinery.patch import (
    APPLY,
    APPLY_CBOR,
    JSON,
    MERGE,
    STRATEGIC,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from ketch.machinery.registry import Registry
from ketch.machinery.selectors import (
    equality_requirements,
    field_labels,
    parse_field_selector,
    parse_label_selector,
)
from ketch.machinery.validation import validate
from ketch.machinery.watch import WatchHub
from ketch.store.base import Change, Gone, Store, StoreConflict, StoreExists, StoreNotFound

log = logging.getLogger(__name__)

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SYSTEM_FIELDS = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp", "selfLink")


@dataclass
class Options:
    """Per-request options, as the query string of a Kubernetes request carries them."""

    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # Ignore | Warn | Strict
    force: bool = False
    warnings: list[str] = field(default_factory=list)


DEFAULT = Options()

# Hooks run after a committed write: (api, rd, change_type, obj). Used for CRD registration and the like.
PostWriteHook = Callable[["Api", ResourceDefinition, str, dict], None]


def _encode_continue(rv: int, ns: str, name: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": rv, "start": [ns, name]})).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        pad = "=" * (-len(token) % 4)
        d = orjson.loads(base64.urlsafe_b64decode(token + pad))
        return int(d["rv"]), (d["start"][0], d["start"][1])
    except Exception as e:
        raise bad_request("continue key is not valid: illegal base64 data or malformed token") from e


def _drop(obj: dict, path: str) -> None:
    """Remove the field at a dotted path with [i] / [key] steps, as reported by builtin_types.check."""
    steps = re.findall(r"([^.\[\]]+)|\[([^\]]*)\]", path)
    cur: Any = obj
    for i, (name, idx) in enumerate(steps):
        key: Any = name or (int(idx) if idx.isdigit() and isinstance(cur, list) else idx)
        last = i == len(steps) - 1
        try:
            if last:
                if isinstance(cur, dict):
                    cur.pop(key, None)
                return
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            return


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _refuse_non_finite(rd: ResourceDefinition, body: Any) -> None:
    """inf and nan (YAML's .inf/.nan) have no JSON form: refused with their field named, before a copy
    would quietly turn them into null."""
    bad = non_finite(body)
    if bad:
        md = body.get("metadata") if isinstance(body, dict) else None
        name = md.get("name") if isinstance(md, dict) and isinstance(md.get("name"), str) else ""
        raise errors.invalid(rd, name, bad)


NAMESPACE_CACHE_SECONDS = 2.0  # how long a namespace read for admission is trusted without a change seen
GUARANTEED_SECONDS = 30.0  # how long a write whose object keeps moving re-reads it before giving up with a 409


def _moved(rd: ResourceDefinition, name: str) -> StatusError:
    """The 409 of a write whose object changed between its read and its commit (another writer won).
    Marked, so a write that did not ask for a resourceVersion can re-read and try again."""
    e = errors.conflict(rd, name)
    e.moved = True  # type: ignore[attr-defined]
    return e


def _guaranteed(fn: Callable[[], dict]) -> dict:
    """Run a read-modify-write until it commits on an unmoved object, as kube-apiserver's
    GuaranteedUpdate does: writes run concurrently on writer threads (and on the loop), and a group commit
    widens the window between a write's read and its commit, so a hot object moves under its writers often.
    Each round one of them commits, so all make progress; the caller decides whether the write may be
    retried at all (not when the client named the resourceVersion it wrote against)."""
    deadline = time.monotonic() + GUARANTEED_SECONDS
    while True:
        try:
            return fn()
        except StatusError as e:
            if not getattr(e, "moved", False) or time.monotonic() > deadline:
                raise


def _guarded(rd: ResourceDefinition, fn: Callable[[dict, dict | None], list[FieldError]], obj: dict, old: dict | None) -> list[FieldError]:
    """Run a kind's validator; one that trips over a value of an unexpected shape (its schema leaves the
    field open) is a 400 about the object, never a 500."""
    try:
        return fn(obj, old)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError, OverflowError) as e:
        log.debug("validator of %s failed on malformed input", rd.kind, exc_info=True)
        raise bad_request(f"{rd.kind} {obj['metadata'].get('name', '')!r} is malformed: a field has a value of the wrong type or shape ({type(e).__name__}: {e})") from e


class Api:
    def __init__(self, store: Store, registry: Registry | None = None, hub: WatchHub | None = None) -> None:
        self.store = store
        self.registry = registry or Registry()
        self.hub = hub or WatchHub()
        self.hooks: dict[str, list[PostWriteHook]] = {}
        # Admission validators for kinds whose definition comes from YAML (CRDs), keyed by (group, kind):
        # a component registers ``fn(obj, old) -> list[FieldError]`` in its setup(), like a validating webhook.
        self.validators: dict[tuple[str, str], list[Callable[[dict, dict | None], list[FieldError]]]] = {}
        # Namespaces by name: (when read, whether terminating), for the lifecycle check every namespaced
        # create makes (a store read was ~8 % of a create). Kept by the store's own change feed, which
        # runs inside each commit, so this process's namespace writes are seen at once; the age bound
        # covers writes by another ketch over the same database (as Kubernetes' NamespaceLifecycle admission
        # reads an informer, which lags too).
        self._namespaces: dict[str, tuple[float, bool]] = {}
        store.subscribe(self._namespace_changed)
        store.subscribe(self.hub.publish)
        # Server-side apply lives in its own module; imported lazily to keep start-up light.
        from ketch.machinery import crds

        crds.install(self)

    # -- lookups -------------------------------------------------------------------------------------------

    def rd(self, api_version: str, kind: str) -> ResourceDefinition:
        rd = self.registry.by_kind(api_version, kind)
        if rd is None:
            raise StatusError(
                404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"'
            )
        return rd

    def add_validator(self, group: str, kind: str, fn: Callable[[dict, dict | None], list[FieldError]]) -> None:
        """Validate every create and update of ``group``/``kind`` with ``fn`` (an in-process admission webhook)."""
        self.validators.setdefault((group, kind), []).append(fn)

    def add_hook(self, key: str, fn: PostWriteHook) -> None:
        self.hooks.setdefault(key, []).append(fn)

    def _run_hooks(self, rd: ResourceDefinition, typ: str, obj: dict) -> None:
        for fn in self.hooks.get(rd.key, []):
            try:
                fn(self, rd, typ, obj)
            except Exception:
                log.exception("post-write hook failed for %s", rd.key)

    def _out(self, rd: ResourceDefinition, version: str | None, obj: dict) -> dict:
        v = version or rd.storage_version
        obj["apiVersion"] = rd.api_version(v)
        obj["kind"] = rd.kind
        return obj

    # -- admission -------------------------------------------------------------------------------------------

    def _check_namespace(self, rd: ResourceDefinition, ns: str, creating: bool) -> None:
        if not rd.namespaced:
            return
        if not ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        seen = self._namespaces.get(ns)
        if seen is not None and time.monotonic() - seen[0] < NAMESPACE_CACHE_SECONDS:
            terminating = seen[1]
        else:
            nsobj = self.store.get("/namespaces", "", ns)
            if nsobj is None:
                self._namespaces.pop(ns, None)
                raise StatusError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
            terminating = (nsobj.get("status") or {}).get("phase") == "Terminating"
            if len(self._namespaces) > 10_000:
                self._namespaces.clear()
            self._namespaces[ns] = (time.monotonic(), terminating)
        if creating and terminating:
            raise StatusError(
                403,
                "Forbidden",
                f'{rd.plural} "" is forbidden: unable to create new content in namespace {ns} because it is being terminated',
                {"name": "", "kind": rd.plural, "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {ns} is being terminated", "field": "metadata.namespace"}]},
            )

    def _namespace_changed(self, ch: Change) -> None:
        if ch.key == "/namespaces":
            if ch.type == "DELETED":
                self._namespaces.pop(ch.name, None)
            else:
                self._namespaces[ch.name] = (time.monotonic(), (ch.obj.get("status") or {}).get("phase") == "Terminating")

    def _admit(
        self, rd: ResourceDefinition, version: str, obj: dict, old: dict | None, opts: Options
    ) -> dict:
        """Default, prune, validate. Returns the object to store, or raises a 4xx StatusError."""
        name = obj["metadata"].get("name", "")
        early = meta_type_errors(obj)
        typed = rd.builtin and builtin_types.root(rd.group, version, rd.kind)
        unknown: list[str] = []
        if typed:
            # Types first, as Kubernetes' decoder does: defaulters and validators may then rely on them.
            unknown, type_errs = builtin_types.check(rd.group, version, rd.kind, obj)
            early.extend(type_errs)
        if early:
            raise errors.invalid(rd, name, early)
        if rd.defaulter:
            defaulter = rd.defaulter
            _guarded(rd, lambda o, _old: defaulter(o) or [], obj, old)
        vdef = rd.version(version)
        schema = vdef.schema if vdef else None
        errs: list[FieldError] = []
        if schema:
            obj, res = validate(schema, obj)
            errs.extend(res.errors)
            if res.unknown:
                if opts.field_validation == "Strict":
                    msg = ", ".join(f'unknown field "{p}"' for p in res.unknown)
                    raise bad_request(f"strict decoding error: {msg}")
                if opts.field_validation == "Warn":
                    opts.warnings.extend(f'unknown field "{p}"' for p in res.unknown)
        if typed:
            if unknown:
                if opts.field_validation == "Strict":
                    msg = ", ".join(f'unknown field "{p}"' for p in unknown)
                    raise bad_request(f"strict decoding error: {msg}")
                if opts.field_validation == "Warn":
                    opts.warnings.extend(f'unknown field "{p}"' for p in unknown)
                for p in unknown:  # dropped, as Kubernetes' decoder drops them
                    _drop(obj, p)
        errs.extend(self._validate_meta(rd, obj["metadata"], old is None))
        if rd.validator:
            errs.extend(_guarded(rd, rd.validator, obj, old))
        if not errs:
            for fn in self.validators.get((rd.group, rd.kind), ()):
                errs.extend(_guarded(rd, fn, obj, old))
        if old is not None:
            for path in rd.immutable_fields:
                from ketch.kinds.meta import get_path

                if get_path(obj, path) != get_path(old, path):
                    errs.append(FieldError(path, "FieldValueInvalid", "field is immutable", get_path(obj, path)))
        if errs:
            raise errors.invalid(rd, name, errs)
        return obj

    def _validate_meta(self, rd: ResourceDefinition, md: dict, creating: bool) -> list[FieldError]:
        errs: list[FieldError] = []
        name = md.get("name")
        if not name:
            if creating and md.get("generateName"):
                pass
            else:
                errs.append(FieldError("metadata.name", "FieldValueRequired", "name or generateName is required"))
        else:
            why = (rd.name_validator or validate_dns_subdomain)(name)
            if why:
                errs.append(FieldError("metadata.name", "FieldValueInvalid", why, name))
        for k, v in (md.get("labels") or {}).items():
            if not isinstance(k, str) or not _LABEL_KEY.match(k):
                errs.append(FieldError("metadata.labels", "FieldValueInvalid", "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", k))
            if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
                errs.append(FieldError("metadata.labels", "FieldValueInvalid", "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", v))
        for k, v in (md.get("annotations") or {}).items():
            if not isinstance(v, str):
                errs.append(FieldError(f"metadata.annotations[{k}]", "FieldValueInvalid", "must be a string", v))
        total = sum(len(k) + len(v) for k, v in (md.get("annotations") or {}).items() if isinstance(v, str))
        if total > 256 * 1024:
            errs.append(FieldError("metadata.annotations", "FieldValueTooLong", "may not be more than 262144 bytes", total))
        return errs

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, rd: ResourceDefinition, ns: str, name: str, version: str | None = None) -> dict:
        obj = self.store.get(rd.key, ns if rd.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rd, name)
        return self._out(rd, version, obj)

    def try_get(self, rd: ResourceDefinition, ns: str, name: str) -> dict | None:
        obj = self.store.get(rd.key, ns if rd.namespaced else "", name)
        return self._out(rd, None, obj) if obj is not None else None

    def list(
        self,
        rd: ResourceDefinition,
        ns: str | None = None,
        version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> dict:
        lpred = parse_label_selector(label_selector)
        fpred = parse_field_selector(field_selector, field_labels(rd.group, rd.kind))
        items, rv = self.store.list(rd.key, ns if rd.namespaced else None, equality_requirements(label_selector) or None)
        start: tuple[str, str] | None = None
        if continue_:
            crv, start = _decode_continue(continue_)
            rv = crv
        out = []
        for o in items:
            md = o["metadata"]
            if start is not None and (md.get("namespace", ""), md["name"]) <= start:
                continue
            if not lpred(md.get("labels") or {}) or not fpred(o):
                continue
            out.append(self._out(rd, version, o))
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and limit > 0 and len(out) > limit:
            last = out[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(rv, last.get("namespace", ""), last["name"])
            meta["remainingItemCount"] = len(out) - limit
            out = out[:limit]
        return {
            "kind": rd.list_kind,
            "apiVersion": rd.api_version(version or rd.storage_version),
            "metadata": meta,
            "items": out,
        }

    # -- writes ----------------------------------------------------------------------------------------------

    def create(
        self, rd: ResourceDefinition, ns: str, body: dict, version: str | None = None, opts: Options = DEFAULT
    ) -> dict:
        obj, version, done = self._prepare_create(rd, ns, body, version, opts)
        if done:
            return obj
        try:
            self.store.create(rd.key, obj)
        except StoreExists as e:
            raise errors.already_exists(rd, obj["metadata"]["name"]) from e
        return self._created(rd, version, obj)

    async def create_async(
        self, rd: ResourceDefinition, ns: str, body: dict, version: str | None = None, opts: Options = DEFAULT
    ) -> dict:
        """``create`` for a request handler: admission runs on the event loop, and the loop awaits the
        store's group commit instead of blocking on it, so other requests proceed and share the commit."""
        obj, version, done = self._prepare_create(rd, ns, body, version, opts)
        if done:
            return obj
        try:
            await self.store.create_async(rd.key, obj)
        except StoreExists as e:
            raise errors.already_exists(rd, obj["metadata"]["name"]) from e
        return self._created(rd, version, obj)

    def _created(self, rd: ResourceDefinition, version: str, obj: dict) -> dict:
        self._run_hooks(rd, "ADDED", obj)
        return self._out(rd, version, clone(obj))

    def _prepare_create(
        self, rd: ResourceDefinition, ns: str, body: dict, version: str | None, opts: Options
    ) -> tuple[dict, str, bool]:
        """Everything a create does before the store: (the object to store, its version, whether the
        answer is already final: a dry run)."""
        version = version or rd.storage_version
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        _refuse_non_finite(rd, body)
        obj = clone(body)
        self._check_type(rd, version, obj)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if rd.namespaced:
            ns = ns or md.get("namespace") or "default"
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + generate_suffix()
        for f in SYSTEM_FIELDS:
            md.pop(f, None)
        md.pop("deletionGracePeriodSeconds", None)
        md["uid"] = new_uid()
        md["creationTimestamp"] = now()
        md["generation"] = 1
        if rd.has_status(version):
            obj.pop("status", None)
            if rd.initial_status:
                obj["status"] = rd.initial_status(obj)
        self._check_namespace(rd, md.get("namespace", ""), creating=True)
        obj = self._admit(rd, version, obj, None, opts)
        if opts.field_manager:
            from ketch.machinery import apply as ssa

            ssa.record_update(obj, None, opts.field_manager, rd.api_version(version))
        obj["apiVersion"] = rd.api_version(rd.storage_version)
        if opts.dry_run:
            return self._out(rd, version, obj), version, True
        return obj, version, False

    def _check_type(self, rd: ResourceDefinition, version: str, obj: dict) -> None:
        if "metadata" in obj and obj["metadata"] is None:
            obj["metadata"] = {}  # null metadata is no metadata, as Kubernetes' decoder reads it
        shape = meta_type_errors(obj)
        if shape:  # before anything reads metadata: a list of labels or an int name is a 422, not a crash
            md = obj.get("metadata")
            name = md.get("name") if isinstance(md, dict) and isinstance(md.get("name"), str) else ""
            raise errors.invalid(rd, name, shape)
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if av and av != rd.api_version(version):
            raise bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({rd.api_version(version)})"
            )
        if kind and kind != rd.kind:
            raise bad_request(f'Object \'Kind\' is "{kind}", expected "{rd.kind}"')
        obj["apiVersion"] = rd.api_version(version)
        obj["kind"] = rd.kind

    def update(
        self,
        rd: ResourceDefinition,
        ns: str,
        name: str,
        body: dict,
        version: str | None = None,
        subresource: str | None = None,
        opts: Options = DEFAULT,
    ) -> dict:
        version = version or rd.storage_version
        ns = ns if rd.namespaced else ""
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        _refuse_non_finite(rd, body)
        if subresource == "status":  # only the status and identity of the body are read: copy just those
            obj = {k: clone(v) for k, v in body.items() if k in ("apiVersion", "kind", "metadata", "status")}
        else:
            obj = clone(body)
        self._check_type(rd, version, obj)
        md = obj.setdefault("metadata", {})
        if md.get("name") and md["name"] != name:
            raise bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        if rd.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        want_rv = md.get("resourceVersion")
        retrying = not want_rv

        def attempt() -> dict:
            old = self.store.get(rd.key, ns, name)
            if old is None:
                raise errors.not_found(rd, name)
            if want_rv and str(want_rv) != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rd, name)
            # _write_update fills in fields of the body it is given (not a status body's): a retry starts
            # again from the request's
            body = obj if subresource == "status" or not retrying else clone(obj)
            return self._write_update(rd, version, old, body, subresource, opts)

        if want_rv:
            return attempt()
        return _guaranteed(attempt)

    def _write_update(
        self,
        rd: ResourceDefinition,
        version: str,
        old: dict,
        obj: dict,
        subresource: str | None,
        opts: Options,
    ) -> dict:
        name = old["metadata"]["name"]
        if subresource == "status":
            # old was just read from the store and is not used after the write: a shallow copy will do
            new = {**old, "metadata": dict(old["metadata"])}
            new["status"] = obj.get("status")
            if new["status"] is None:
                new.pop("status")
            obj = new
        else:
            md = obj["metadata"]
            omd = old["metadata"]
            for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if f in omd:
                    md[f] = omd[f]
                else:
                    md.pop(f, None)
            md["name"] = omd["name"]
            if rd.namespaced:
                md["namespace"] = omd["namespace"]
            if omd.get("deletionTimestamp"):
                # Once deleting, finalizers may only be removed.
                added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise errors.forbidden(rd, name, "no new finalizers can be added if the object is being deleted")
            if rd.has_status(version):
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
            obj["apiVersion"] = rd.api_version(version)
            obj = self._admit(rd, version, obj, old, opts)
            if _spec_part(obj) != _spec_part(old) or (not rd.has_status(version) and obj.get("status") != old.get("status")):
                md = obj["metadata"]
                md["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if opts.field_manager and subresource != "status":
            from ketch.machinery import apply as ssa

            ssa.record_update(obj, old, opts.field_manager, rd.api_version(version))
        obj["apiVersion"] = rd.api_version(rd.storage_version)
        obj["kind"] = rd.kind
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if obj == old:
            return self._out(rd, version, obj)  # a no-op write is not a write
        if opts.dry_run:
            return self._out(rd, version, obj)
        md = obj["metadata"]
        if md.get("deletionTimestamp") and not md.get("finalizers") and not rd.graceful_deletion:
            try:
                gone = self.store.delete(rd.key, md.get("namespace", ""), md["name"], int(old["metadata"]["resourceVersion"]))
            except StoreConflict as e:
                raise _moved(rd, name) from e
            except StoreNotFound as e:
                raise errors.not_found(rd, name) from e
            self._run_hooks(rd, "DELETED", gone)
            return self._out(rd, version, gone)
        try:
            same = all(obj["metadata"].get(f) == old["metadata"].get(f) for f in ("labels", "ownerReferences"))
            self.store.update(rd.key, obj, int(old["metadata"]["resourceVersion"]), reindex=not same)
        except StoreConflict as e:
            raise _moved(rd, name) from e
        except StoreNotFound as e:
            raise errors.not_found(rd, name) from e
        self._run_hooks(rd, "MODIFIED", obj)
        return self._out(rd, version, clone(obj))

    def patch(
        self,
        rd: ResourceDefinition,
        ns: str,
        name: str,
        patch_type: str,
        patch: Any,
        version: str | None = None,
        subresource: str | None = None,
        opts: Options = DEFAULT,
    ) -> dict:
        version = version or rd.storage_version
        ns = ns if rd.namespaced else ""
        ctype = patch_type.split(";")[0].strip()
        if isinstance(patch, dict | list):
            _refuse_non_finite(rd, patch)
        # A patch that names a resourceVersion is written against it or not at all; any other re-reads the
        # object when it moved under it, and applies again.
        prv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
        if ctype in (APPLY, APPLY_CBOR):
            from ketch.machinery import apply as ssa

            def apply() -> dict:
                return ssa.server_side_apply(self, rd, ns, name, clone(patch), version, subresource, opts)

            return apply() if prv else _guaranteed(apply)

        def attempt() -> dict:
            old = self.store.get(rd.key, ns, name)
            if old is None:
                raise errors.not_found(rd, name)
            cur = self._out(rd, version, clone(old))
            if ctype == MERGE:
                if not isinstance(patch, dict):
                    raise bad_request("merge patch must be a JSON object")
                new = merge_patch(cur, patch)
            elif ctype == JSON:
                new = json_patch(cur, patch)
            elif ctype == STRATEGIC:
                # Custom kinds have no merge keys: their lists are replaced, as with a merge patch.
                if not isinstance(patch, dict):
                    raise bad_request("strategic merge patch must be a JSON object")
                new = strategic_merge_patch(cur, patch, rd.merge_keys)
            else:
                raise errors.unsupported_media(f"the body of the request was in an unknown format - accepted media types include: {JSON}, {MERGE}, {STRATEGIC}, {APPLY}")
            if not isinstance(new, dict):
                raise bad_request("the patch did not produce an object")
            if new.get("metadata") is None:
                new["metadata"] = {}
            if not isinstance(new["metadata"], dict):
                raise errors.invalid(rd, name, meta_type_errors(new))
            md = new["metadata"]
            if prv and str(prv) != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rd, name)
            md["resourceVersion"] = old["metadata"]["resourceVersion"]
            self._check_type(rd, version, new)
            if md.get("name") != name:
                raise bad_request("metadata.name: Invalid value: the name cannot be changed by a patch")
            return self._write_update(rd, version, old, new, subresource, opts)

        return attempt() if prv else _guaranteed(attempt)

    def delete(
        self,
        rd: ResourceDefinition,
        ns: str,
        name: str,
        propagation: str | None = None,
        grace_seconds: int | None = None,
        preconditions: dict | None = None,
        opts: Options = DEFAULT,
    ) -> dict:
        ns = ns if rd.namespaced else ""
        # Preconditions are checked again on each attempt, so retrying a moved object is always safe.
        return _guaranteed(lambda: self._delete_once(rd, ns, name, propagation, grace_seconds, preconditions, opts))

    def _delete_once(
        self,
        rd: ResourceDefinition,
        ns: str,
        name: str,
        propagation: str | None,
        grace_seconds: int | None,
        preconditions: dict | None,
        opts: Options,
    ) -> dict:
        old = self.store.get(rd.key, ns, name)
        if old is None:
            raise errors.not_found(rd, name)
        md = old["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise errors.conflict(rd, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}")
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != md["resourceVersion"]:
            raise errors.conflict(rd, name, f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {md['resourceVersion']}")
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise bad_request(f'propagationPolicy: Unsupported value: "{propagation}": supported values: "Orphan", "Background", "Foreground"')
        if name in rd.protected_names:
            raise errors.forbidden(rd, name, f"this {rd.singular} may not be deleted")
        finalizers = list(md.get("finalizers") or [])
        if not md.get("deletionTimestamp"):
            finalizers += [f for f in rd.delete_finalizers if f not in finalizers]
        if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if propagation == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        graceful = rd.graceful_deletion and grace_seconds != 0 and self._needs_graceful(rd, old)
        if opts.dry_run:
            return self._out(rd, None, clone(old))
        if finalizers or graceful:
            new = clone(old)
            nmd = new["metadata"]
            changed = False
            if not nmd.get("deletionTimestamp"):
                nmd["deletionTimestamp"] = now()
                grace = grace_seconds
                if grace is None:
                    grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30) if rd.graceful_deletion else 0
                nmd["deletionGracePeriodSeconds"] = int(grace)
                changed = True
            elif grace_seconds is not None and rd.graceful_deletion and grace_seconds < int(nmd.get("deletionGracePeriodSeconds") or 0):
                nmd["deletionGracePeriodSeconds"] = int(grace_seconds)
                changed = True
            if finalizers != (nmd.get("finalizers") or []):
                nmd["finalizers"] = finalizers
                changed = True
            if not changed:
                return self._out(rd, None, new)
            try:
                self.store.update(rd.key, new, int(md["resourceVersion"]))
            except StoreConflict as e:
                raise _moved(rd, name) from e
            self._run_hooks(rd, "MODIFIED", new)
            return self._out(rd, None, clone(new))
        try:
            gone = self.store.delete(rd.key, ns, name)
        except StoreNotFound as e:
            raise errors.not_found(rd, name) from e
        self._run_hooks(rd, "DELETED", gone)
        return self._out(rd, None, gone)

    def _needs_graceful(self, rd: ResourceDefinition, obj: dict) -> bool:
        """A Pod that a kubelet may be running is removed by that kubelet once its processes stop."""
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        return bool(spec.get("nodeName")) and st.get("phase") not in ("Succeeded", "Failed")

    def delete_collection(
        self,
        rd: ResourceDefinition,
        ns: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation: str | None = None,
        grace_seconds: int | None = None,
        opts: Options = DEFAULT,
    ) -> dict:
        lst = self.list(rd, ns, label_selector=label_selector, field_selector=field_selector)
        out = []
        for o in lst["items"]:
            md = o["metadata"]
            try:
                out.append(self.delete(rd, md.get("namespace", ""), md["name"], propagation, grace_seconds, opts=opts))
            except StatusError as e:
                if e.code != 404:
                    raise
        return {"kind": rd.list_kind, "apiVersion": lst["apiVersion"], "metadata": {"resourceVersion": str(self.store.current_rv())}, "items": out}

    # -- watch -----------------------------------------------------------------------------------------------

    async def watch(
        self,
        rd: ResourceDefinition,
        ns: str | None = None,
        version: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        send_initial: bool | None = None,
    ) -> AsyncIterator[tuple[str, dict]]:
        """Yield (type, object) pairs: ADDED/MODIFIED/DELETED, plus ERROR with a Status if too old, and
        ("INITIAL_END", {"resourceVersion"}) after the initial events when ``send_initial`` (WatchList).

        With no resourceVersion (or "0") the current objects come first as ADDED, then changes; with one,
        every change after it is replayed from the change log, or 410 Gone if it was compacted away.
        """
        lpred = parse_label_selector(label_selector)
        fpred = parse_field_selector(field_selector, field_labels(rd.group, rd.kind))
        nsf = ns if rd.namespaced and ns else None
        sub = self.hub.subscribe(rd.key, nsf)

        def match(o: dict) -> bool:
            return lpred(o["metadata"].get("labels") or {}) and fpred(o)

        try:
            if resource_version in (None, "", "0") or send_initial:
                items, last = self.store.list(rd.key, nsf)
                if resource_version not in (None, "", "0"):
                    last = int(resource_version)
                for o in items:
                    if match(o):
                        yield "ADDED", self._out(rd, version, o)
                if send_initial:
                    yield "INITIAL_END", {"resourceVersion": str(last)}
            else:
                try:
                    last = int(resource_version)
                except ValueError as e:
                    raise bad_request(f'invalid resource version "{resource_version}"') from e
                try:
                    backlog = self.store.changes_since(last, rd.key)
                except Gone as g:
                    yield "ERROR", errors.gone(f"too old resource version: {last} ({g.oldest})").status()
                    return
                for ch in backlog:
                    if nsf and ch.namespace != nsf:
                        continue
                    last = ch.rv
                    if match(ch.obj):
                        yield ch.type, self._out(rd, version, clone(ch.obj))
            while True:
                ch: Change | None = await sub.queue.get()
                if ch is None:  # overflowed: the client must re-list
                    yield "ERROR", errors.gone("watch channel overflowed; re-list").status()
                    return
                if ch.rv <= last:
                    continue
                last = ch.rv
                if match(ch.obj):
                    yield ch.type, self._out(rd, version, clone(ch.obj))
        finally:
            self.hub.unsubscribe(sub)

    def current_rv(self) -> int:
        return self.store.current_rv()

