"""The Kubernetes REST surface: maps /api and /apis paths onto the Api, with Kubernetes' conventions for
content types, query parameters, Tables, watch streams and Status errors."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ketch.kinds.definitions import ResourceDefinition
from ketch.machinery import bounds
from ketch.machinery.api import Api, Options
from ketch.machinery.errors import (
    StatusError,
    bad_request,
    method_not_allowed,
    no_resource,
    too_large,
    unsupported_media,
)
from ketch.machinery.params import query_bool
from ketch.machinery.selectors import field_labels, parse_field_selector, parse_label_selector
from ketch.server import discovery, openapi
from ketch.server.tables import to_table, wants_table

log = logging.getLogger(__name__)
MAX_BODY = 3 * 1024 * 1024
JSON_CT = "application/json"


def json_response(data: Any, status: int = 200, headers: dict | None = None, content_type: str = JSON_CT) -> Response:
    # A newline ends the body, as Go's json.Encoder writes it: clients comparing error text expect it.
    return Response(orjson.dumps(data) + b"\n", status_code=status, media_type=content_type, headers=headers)


def status_response(err: StatusError) -> Response:
    return json_response(err.status(), err.code)


@dataclass
class Target:
    group: str
    version: str
    rd: ResourceDefinition | None
    namespace: str | None
    name: str | None
    sub: str | None
    path: str


def parse_path(api: Api, path: str, method: str = "GET") -> Target | None:
    """Resolve /api/v1/... or /apis/g/v/... into (kind, namespace, name, subresource). An unknown
    resource is a 404 naming the request's verb and resource, as kubectl reports it ("post deployments.apps")."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[0] == "api":
        if len(parts) < 2:
            return None
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) < 3:
            return None
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return Target(group, version, None, None, None, None, path)
    ns: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and rest[2] in ("status", "finalize")):
        ns = rest[1]
        rest = rest[2:]
    plural = rest[0]
    rd = api.registry.lookup(group, version, plural)
    if rd is None:
        raise no_resource(f"{method.lower()} {plural}.{group}" if group else f"{method.lower()} {plural}")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3:
        raise no_resource(path)
    if ns is not None and not rd.namespaced:
        raise no_resource(path)
    return Target(group, version, rd, ns, name, sub, path)


def _flag(q: Any, name: str) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (the Python client sends "True")."""
    return query_bool(q, name)


def _int_param(q: Any, name: str, minimum: int | None = None) -> int | None:
    """An integer query parameter, or a 400 naming it (Kubernetes' query decoding refuses ``limit=abc``)."""
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise bad_request(f'{name}: Invalid value: "{v[:64]}": must be an integer') from None
    if minimum is not None and n < minimum:
        raise bad_request(f'{name}: Invalid value: {n}: must be greater than or equal to {minimum}')
    return n


def _check_reads(api: Api, rd: ResourceDefinition, q: Any) -> None:
    """Refuse bad list/watch parameters up front, before a watch stream is opened (a stream that starts
    200 and then breaks tells a client nothing)."""
    _int_param(q, "limit")
    _int_param(q, "timeoutSeconds", 0)
    rv = q.get("resourceVersion")
    if rv not in (None, "") and not rv.isdigit():
        raise bad_request(f'resourceVersion: Invalid value: "{rv[:64]}": must be a non-negative integer')
    parse_label_selector(q.get("labelSelector"))
    parse_field_selector(q.get("fieldSelector"), field_labels(rd.group, rd.kind))


def _options(q: Any) -> Options:
    fv = q.get("fieldValidation") or "Warn"
    if fv not in ("Ignore", "Warn", "Strict"):
        raise bad_request(f'fieldValidation: Unsupported value: "{fv}": supported values: "Ignore", "Warn", "Strict"')
    return Options(
        dry_run=q.get("dryRun") == "All",
        field_manager=q.get("fieldManager") or "",
        field_validation=fv,
        force=_flag(q, "force"),
    )


async def read_body(request: Request, allow_yaml: bool = True) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise too_large("the request is too large: limit is 3145728 bytes")
    if not raw.strip():
        return None
    ct = request.headers.get("content-type", "")
    base = ct.split(";", 1)[0].strip().lower()
    if base and not (base.endswith("json") or base.endswith("yaml") or "protobuf" in base or "cbor" in base):
        # What a cross-site form or no-cors fetch can send (text/plain, form-encoded, multipart) is never an
        # object here, as on kube-apiserver.
        raise unsupported_media(f'the body of the request was in an unknown format - accepted media types include: '
                                f'application/json, application/yaml, application/vnd.kubernetes.protobuf ({base} is not served)')
    if "protobuf" in ct:
        from ketch.server.protobuf import ProtobufError, decode

        try:
            return decode(raw)
        except ProtobufError as e:
            raise unsupported_media(f"the body of the request was in an unknown format: {e}") from e
    if "cbor" in ct:
        raise unsupported_media(
            f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({ct} is not served)'
        )
    if "yaml" in ct and allow_yaml:
        try:
            return bounds.load_yaml(raw)
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding YAML: {e}") from e
    try:
        return bounds.load_json(raw)
    except orjson.JSONDecodeError:
        if allow_yaml:
            try:
                return bounds.load_yaml(raw)
            except yaml.YAMLError:
                pass
        raise bad_request("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml") from None


def _warn_headers(opts: Options) -> dict | None:
    if not opts.warnings:
        return None
    # One Warning header per message; Starlette joins duplicates, so send them comma separated.
    # The text is an HTTP quoted-string: quotes and backslashes inside are escaped, or clients drop it.
    def quoted(w: str) -> str:
        return '"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return {"Warning": ", ".join(f"299 - {quoted(w)}" for w in opts.warnings[:20])}


WRITE_THREADS = 32  # writes in flight at once; more wait their turn for a thread


class K8sHandler:
    """One ASGI-friendly handler for every resource request."""

    def __init__(self, api: Api, subresource_handlers: dict[tuple[str, str], Callable],
                 creators: dict[str, Callable] | None = None) -> None:
        self.api = api
        self.subs = subresource_handlers
        # Create-only kinds answered by a handler and never stored (the review APIs), by storage key.
        self.creators = creators if creators is not None else {}
        # Writes run here, off the event loop: each waits for the store's group commit, so while some wait
        # the loop keeps reading requests, and concurrent writers share a commit.
        self._writers = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="ketch-write")

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the Api write ``fn(*args)`` on a writer thread (with this request's context: the user
        admission checks read) and await it without blocking the loop."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._writers, call)

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except StatusError as e:
            return status_response(e)
        except Exception as e:  # never a bare 500 page: always a Status
            log.exception("internal error on %s %s", request.method, request.url.path)
            return json_response(StatusError(500, "InternalError", f"an error on the server has prevented the request from succeeding: {e}").status(), 500)

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope["path"]  # not request.url: a URL object built per request
        accept = request.headers.get("accept", "")
        parts = path.strip("/").split("/")
        # Discovery
        if path.rstrip("/") == "/api":
            agg = discovery.wants_aggregated(accept)
            if agg:
                return json_response(discovery.aggregated(self.api.registry, True, self.subs, agg), content_type=agg)
            host = request.headers.get("host", "127.0.0.1")
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        if path.rstrip("/") == "/apis":
            agg = discovery.wants_aggregated(accept)
            if agg:
                return json_response(discovery.aggregated(self.api.registry, False, self.subs, agg), content_type=agg)
            return json_response(discovery.group_list(self.api.registry))
        if parts[0] == "apis" and len(parts) == 2:
            g = discovery.api_group(self.api.registry, parts[1])
            if g is None:
                raise no_resource(path)
            return json_response(g)
        t = parse_path(self.api, path, request.method)
        if t is None:
            raise no_resource(path)
        if t.rd is None:
            if request.method != "GET":
                raise method_not_allowed(f"the server does not allow this method on the requested resource ({path})")
            if not self.api.registry.in_group_version(t.group, t.version):
                raise no_resource(path)
            return json_response(discovery.resource_list(self.api.registry, t.group, t.version, self.subs))
        rd = t.rd
        q = request.query_params
        m = request.method
        creator = self.creators.get(rd.key)
        if creator is not None:
            if m != "POST" or t.name is not None:
                raise method_not_allowed(f"the server does not allow this method on the requested resource ({path})")
            return await creator(request, rd, t.namespace or "")
        if t.sub == "scale" and t.name:
            return await self._scale(request, rd, t)
        if t.sub and t.sub not in ("status",):
            h = self.subs.get((rd.key, t.sub))
            if h is None:
                raise no_resource(path)
            return await h(request, rd, t.namespace or "", t.name)
        ns = t.namespace or ""
        if rd.namespaced and t.name is not None and t.namespace is None:
            raise no_resource(path)
        verb = _verb(m, t.name is not None, _flag(q, "watch") if m == "GET" else False)
        if verb not in rd.verbs:
            raise method_not_allowed(f"the server does not allow this method on the requested resource ({path})")
        if t.name is None:
            if m == "GET":
                if _flag(q, "watch"):
                    return self._watch(request, rd, t)
                return self._list(request, rd, t)
            if m == "POST":
                opts = _options(q)
                body = await read_body(request)
                obj = await self.api.create_async(rd, ns, body, t.version, opts)
                return json_response(obj, 201, _warn_headers(opts))
            if m == "DELETE":
                body = _delete_options(await read_body(request))
                opts = _options(q)
                res = await self._write(
                    self.api.delete_collection, rd, ns or None, q.get("labelSelector"), q.get("fieldSelector"),
                    q.get("propagationPolicy") or body.get("propagationPolicy"), _grace(q, body), opts,
                )
                return json_response(res)
            raise method_not_allowed(f"the server does not allow this method on the requested resource ({path})")
        name = t.name
        if m == "GET":
            obj = self.api.get(rd, ns, name, t.version)
            if wants_table(accept):
                return json_response(to_table(rd, t.version, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, q.get("includeObject", "Metadata")))
            return json_response(obj)
        if m == "PUT":
            opts = _options(q)
            body = await read_body(request)
            obj = await self._write(self.api.update, rd, ns, name, body, t.version, t.sub, opts)
            return json_response(obj, 200, _warn_headers(opts))
        if m == "PATCH":
            opts = _options(q)
            ct = request.headers.get("content-type", "application/merge-patch+json")
            if "apply-patch" in ct:
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    raise too_large("the request is too large")
                try:
                    body: Any = raw.decode()
                except UnicodeDecodeError as e:
                    raise bad_request(f"error decoding YAML: the apply configuration is not UTF-8 text ({e.reason} at byte {e.start})") from None
            else:
                body = await read_body(request, allow_yaml=False)
            obj = await self._write(self.api.patch, rd, ns, name, ct, body, t.version, t.sub, opts)
            return json_response(obj, 200, _warn_headers(opts))
        if m == "DELETE":
            body = _delete_options(await read_body(request))
            opts = _options(q)
            if body.get("dryRun") == ["All"]:
                opts.dry_run = True
            prop = q.get("propagationPolicy") or body.get("propagationPolicy")
            if _flag(q, "orphanDependents") or body.get("orphanDependents") is True:
                prop = "Orphan"
            obj = await self._write(self.api.delete, rd, ns, name, prop, _grace(q, body), body.get("preconditions"), opts)
            return json_response(obj)
        raise method_not_allowed(f"the server does not allow this method on the requested resource ({path})")

    async def _scale(self, request: Request, rd: ResourceDefinition, t: Target) -> Response:
        from ketch.machinery import scale

        ns, name, m = t.namespace or "", t.name or "", request.method
        scale.scale_spec(rd, t.version)  # 404 for kinds without one
        if m == "GET":
            return json_response(scale.get_scale(self.api, rd, ns, name, t.version))
        opts = _options(request.query_params)
        if m == "PUT":
            out = scale.update_scale(self.api, rd, ns, name, await read_body(request), t.version, opts)
        elif m == "PATCH":
            ct = request.headers.get("content-type", "application/merge-patch+json")
            out = scale.patch_scale(self.api, rd, ns, name, ct, await read_body(request, allow_yaml=False), t.version, opts)
        else:
            raise method_not_allowed(f"the server does not allow this method on the requested resource ({t.path})")
        return json_response(out, 200, _warn_headers(opts))

    def _list(self, request: Request, rd: ResourceDefinition, t: Target) -> Response:
        q = request.query_params
        _check_reads(self.api, rd, q)
        limit = _int_param(q, "limit")
        lst = self.api.list(rd, t.namespace, t.version, q.get("labelSelector"), q.get("fieldSelector"), limit, q.get("continue"))
        if wants_table(request.headers.get("accept", "")):
            return json_response(to_table(rd, t.version, lst["items"], lst["metadata"], q.get("includeObject", "Metadata")))
        return json_response(lst)

    def _watch(self, request: Request, rd: ResourceDefinition, t: Target) -> Response:
        q = request.query_params
        _check_reads(self.api, rd, q)
        timeout = _int_param(q, "timeoutSeconds")
        table = wants_table(request.headers.get("accept", ""))
        bookmarks = _flag(q, "allowWatchBookmarks")
        send_initial = _flag(q, "sendInitialEvents")
        field_sel = q.get("fieldSelector")
        name_filter = None
        if t.name:
            name_filter = t.name
        gen = self.api.watch(rd, t.namespace, t.version, q.get("resourceVersion"), q.get("labelSelector"), field_sel, send_initial or None)
        api = self.api

        async def stream():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            it = gen.__aiter__()
            last_rv = q.get("resourceVersion") or str(api.current_rv())
            try:
                while True:
                    wait = 30.0
                    if deadline is not None:
                        wait = min(wait, deadline - loop.time())
                        if wait <= 0:
                            return
                    try:
                        typ, obj = await asyncio.wait_for(it.__anext__(), wait)
                    except TimeoutError:
                        if deadline is not None and loop.time() >= deadline:
                            return
                        if bookmarks:
                            bm = {"kind": rd.kind, "apiVersion": rd.api_version(t.version), "metadata": {"resourceVersion": last_rv}}
                            yield orjson.dumps({"type": "BOOKMARK", "object": bm}) + b"\n"
                        continue
                    except StopAsyncIteration:
                        return
                    if typ == "INITIAL_END":
                        # WatchList: a bookmark marks the end of the initial ADDED events.
                        last_rv = obj["resourceVersion"]
                        bm = {"kind": rd.kind, "apiVersion": rd.api_version(t.version), "metadata": {"resourceVersion": last_rv, "annotations": {"k8s.io/initial-events-end": "true"}}}
                        yield orjson.dumps({"type": "BOOKMARK", "object": bm}) + b"\n"
                        continue
                    if typ != "ERROR":
                        if name_filter and obj["metadata"]["name"] != name_filter:
                            continue
                        last_rv = obj["metadata"]["resourceVersion"]
                        if table:
                            obj = to_table(rd, t.version, [obj], {"resourceVersion": last_rv}, q.get("includeObject", "Metadata"))
                    yield orjson.dumps({"type": typ, "object": obj}) + b"\n"
            finally:
                await gen.aclose()

        return StreamingResponse(stream(), media_type="application/json", headers={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})


def _verb(method: str, named: bool, watch: bool) -> str:
    """The Kubernetes verb of a request (what a kind's ``verbs`` allow)."""
    if method == "GET":
        return "watch" if watch else ("get" if named else "list")
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
def _delete_options(body: Any) -> dict:
    """A DELETE body is a DeleteOptions object: its fields' types are checked before they are used."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request("the body of a delete request must be a DeleteOptions object")
    for k in ("propagationPolicy", "kind", "apiVersion"):
        if body.get(k) is not None and not isinstance(body[k], str):
            raise bad_request(f"DeleteOptions.{k}: Invalid value: must be a string")
    pre = body.get("preconditions")
    if pre is not None and not (isinstance(pre, dict) and all(isinstance(pre.get(k), str | type(None)) for k in ("uid", "resourceVersion"))):
        raise bad_request("DeleteOptions.preconditions: Invalid value: must be an object with string uid and resourceVersion")
    dr = body.get("dryRun")
    if dr is not None and not (isinstance(dr, list) and all(isinstance(x, str) for x in dr)):
        raise bad_request("DeleteOptions.dryRun: Invalid value: must be a list of strings")
    return body


def _grace(q: Any, body: dict) -> int | None:
    v = _int_param(q, "gracePeriodSeconds")
    if v is not None:
        return v
    b = body.get("gracePeriodSeconds")
    if b is not None and (isinstance(b, bool) or not isinstance(b, int)):
        raise bad_request("gracePeriodSeconds: Invalid value: must be an integer")
    return b


def openapi_handlers(api: Api) -> dict[str, Callable]:
    async def v2(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if "protobuf" in accept and "json" not in accept:
            # kubectl asks for v2 in protobuf only as a fallback for kinds the v3 documents lack (unknown
            # kinds): an empty but valid gnostic Document (swagger: "2.0") lets it report the real error.
            return Response(b"\x0a\x032.0", media_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        return json_response(openapi.v2_document(api.registry))

    async def v3root(request: Request) -> Response:
        return json_response(openapi.v3_root(api.registry))

    async def v3doc(request: Request) -> Response:
        rest = request.path_params["rest"].strip("/").split("/")
        if rest[0] == "api" and len(rest) == 2:
            g, v = "", rest[1]
        elif rest[0] == "apis" and len(rest) == 3:
            g, v = rest[1], rest[2]
        else:
            return status_response(no_resource(request.url.path))
        if not api.registry.in_group_version(g, v):
            return status_response(no_resource(request.url.path))
        return json_response(openapi.v3_document(api.registry, g, v))

    return {"v2": v2, "v3root": v3root, "v3doc": v3doc}
