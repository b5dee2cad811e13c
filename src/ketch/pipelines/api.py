"""The KFP v2beta1 REST API on ketch's port (``/apis/v2beta1/...``): what ``kfp.Client`` calls, with KFP's
JSON field names. Handlers translate to objects in the store; the controllers do the work.

Errors follow KFP's GoogleRpcStatus shape ``{code, message, details}`` with an HTTP status that
kfp_server_api turns into an ApiException carrying the message.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ketch.machinery.client import Client
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.machinery.params import parse_bool
from ketch.pipelines import compile_py, ir, lineage
from ketch.pipelines import kfp_objects as K

log = logging.getLogger(__name__)
P = "/apis/v2beta1"



def _cascade(request: Request) -> bool:
    """``cascade`` as the KFP API server's gateway reads it (Go's strconv.ParseBool; malformed: false)."""
    try:
        return parse_bool(request.query_params.get("cascade") or "false")
    except ValueError:
        return False

class ApiError(Exception):
    def __init__(self, status: int, message: str, code: int = 3) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def bad(msg: str) -> ApiError:
    return ApiError(400, msg, 3)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident!r} not found", 5)


def ok(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status)


DEFAULT_EDITOR = "default-editor"  # the ServiceAccount KFP multi-user runs a namespace's tasks under


class KfpApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.client = Client(ctx.api, manager="ketch-kfp-api")

    # -- helpers ---------------------------------------------------------------------------------------------

    def _get(self, ref: tuple[str, str], ident: str, what: str) -> dict:
        for ns in [K.NS] + [n["metadata"]["name"] for n in self.client.list(("v1", "Namespace")) if n["metadata"]["name"] != K.NS]:
            o = self.client.get(ref, ns, ident)
            if o is not None:
                return o
            if ref not in (K.RUN, K.RECURRING):  # runs and recurring runs may live in a Profile's namespace
                break
        raise not_found(what, ident)

    def _list(self, ref: tuple[str, str], request: Request, conv, extra: list | None = None) -> tuple[list[dict], str, int]:
        q = request.query_params
        ns = q.get("namespace") or None
        if not ns and q.get("resource_reference_key.type") == "NAMESPACE":
            ns = q.get("resource_reference_key.id") or None
        try:
            preds = K.parse_filter(q.get("filter"))
        except K.FilterError as e:
            raise bad(str(e)) from e
        # Multi-user: a namespace in the request lists what belongs to that namespace (an experiment's
        # spec.namespace, a run's through its experiment); the authorization layer has checked the caller may.
        objs = self.client.list(ref, None)
        if ns:
            exps: dict[str, str] = {}
            objs = [o for o in objs if self.owner_namespace(o, exps) == ns]
        items = [conv(o) for o in objs]
        items = [d for d in items if K.matches(d, preds) and all(f(d) for f in extra or [])]
        return K.page(items, q.get("sort_by"), q.get("page_size"), q.get("page_token"))

    def owner_namespace(self, o: dict, cache: dict[str, str] | None = None) -> str:
        """The user namespace an object belongs to: its own ``spec.namespace``, else its experiment's, else
        the namespace it is stored in when that is not KFP's own ("" = shared)."""
        spec = o.get("spec") or {}
        if spec.get("namespace"):
            return spec["namespace"]
        eid = spec.get("experimentId") or (o["metadata"].get("labels") or {}).get(K.LABEL_EXPERIMENT)
        if eid:
            if cache is not None and eid in cache:
                return cache[eid]
            exp = self.client.get(K.EXPERIMENT, K.NS, eid)
            ns = ((exp or {}).get("spec") or {}).get("namespace") or ""
            if cache is not None:
                cache[eid] = ns
            if ns:
                return ns
        md_ns = o["metadata"].get("namespace") or ""
        return md_ns if md_ns != K.NS else ""

    async def _body(self, request: Request) -> dict:
        raw = await request.body()
        if not raw:
            return {}
        try:
            b = json.loads(raw)
        except ValueError as e:
            raise bad(f"request body is not valid JSON: {e}") from e
        if not isinstance(b, dict):
            raise bad("request body must be a JSON object")
        for k in _STRING_FIELDS:  # KFP's proto fields that are strings: anything else is the client's error
            if b.get(k) is not None and not isinstance(b[k], str):
                raise bad(f"{k}: must be a string, not {type(b[k]).__name__}")
        return b

    def _default_experiment(self) -> str:
        for o in self.client.list(K.EXPERIMENT, K.NS):
            if (o.get("spec") or {}).get("displayName") == "Default":
                return o["metadata"]["name"]
        return self._create_experiment({"display_name": "Default", "description": "All runs created without specifying an experiment"})["experiment_id"]

    # -- healthz ---------------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return ok({"multi_user": False, "pipeline_store": "kubernetes", "commit_sha": "ketch", "tag_name": "ketch"})

    # -- experiments -----------------------------------------------------------------------------------------

    def _create_experiment(self, b: dict) -> dict:
        name = K.g(b, "display_name")
        if not name:
            raise bad("experiment.display_name: required")
        ns = K.g(b, "namespace", "") or ""
        # display names are unique within a namespace (KFP's multi-user mode), not across them
        if any((o.get("spec") or {}).get("displayName") == name and ((o.get("spec") or {}).get("namespace") or "") == ns
               for o in self.client.list(K.EXPERIMENT, K.NS)):
            raise ApiError(409, f"experiment with display_name {name!r} already exists", 6)
        o = self.client.create({
            "apiVersion": K.GROUP, "kind": "PipelineExperiment",
            "metadata": {"name": K.new_id(), "namespace": K.NS},
            "spec": {"displayName": name, "description": K.g(b, "description", ""), "namespace": ns, "storageState": "AVAILABLE"},
        })
        return K.experiment_json(o)

    async def experiments(self, request: Request) -> Response:
        if request.method == "POST":
            return ok(self._create_experiment(await self._body(request)))
        items, nxt, total = self._list(K.EXPERIMENT, request, K.experiment_json)
        return ok({"experiments": items, "total_size": total, "next_page_token": nxt})

    async def experiment(self, request: Request) -> Response:
        ident, _, verb = request.path_params["eid"].partition(":")
        o = self._get(K.EXPERIMENT, ident, "experiment")
        if request.method == "GET":
            return ok(K.experiment_json(o))
        if request.method == "DELETE":
            self.client.delete(K.EXPERIMENT, K.NS, ident)
            return ok({})
        if verb in ("archive", "unarchive"):
            state = "ARCHIVED" if verb == "archive" else "AVAILABLE"
            self.client.patch(K.EXPERIMENT, K.NS, ident, {"spec": {"storageState": state}})
            for r in self.client.list(K.RUN, None, labels={K.LABEL_EXPERIMENT: ident}):
                self.client.patch(K.RUN, r["metadata"]["namespace"], r["metadata"]["name"], {"spec": {"storageState": state}})
            return ok({})
        raise bad(f"unknown experiment verb {verb!r}")

    # -- pipelines and versions ------------------------------------------------------------------------------

    def _new_pipeline(self, name: str, description: str = "", namespace: str = "") -> dict:
        if any((o.get("spec") or {}).get("displayName") == name for o in self.client.list(K.PIPELINE, K.NS)):
            raise ApiError(409, f"pipeline with name {name!r} already exists", 6)
        return self.client.create({
            "apiVersion": K.GROUP, "kind": "Pipeline", "metadata": {"name": K.new_id(), "namespace": K.NS},
            "spec": {"displayName": name, "name": name, "description": description or "", "namespace": namespace or ""},
        })

    def _new_version(self, pid: str, name: str, spec: Any, description: str = "", extra: dict | None = None) -> dict:
        try:
            p = ir.load(spec)
        except ir.IRError as e:
            raise bad(f"invalid pipeline spec: {e}") from e
        return self.client.create({
            "apiVersion": K.GROUP, "kind": "PipelineVersion",
            "metadata": {"name": K.new_id(), "namespace": K.NS, "labels": {K.LABEL_PIPELINE: pid}},
            "spec": {"pipelineId": pid, "displayName": name, "name": name, "description": description or "", "pipelineSpec": p.spec, "platformSpec": p.platform, **(extra or {})},
        })

    async def _upload_file(self, request: Request) -> tuple[Any, str]:
        form = await request.form()
        f = form.get("uploadfile")
        if f is None or isinstance(f, str):
            raise bad("multipart form field 'uploadfile' is required")
        data = await f.read()
        fname = getattr(f, "filename", "") or "pipeline.yaml"
        if fname.endswith((".zip", ".tar.gz", ".tgz")):
            data = _unpack(data, fname)
        elif fname.endswith(".py"):
            try:
                data = (await compile_py.compile_source(data, fname)).encode()
            except compile_py.CompileError as e:
                raise bad(f"uploadfile: {e}") from e
        try:
            # off the event loop: a package of several MiB takes seconds to parse
            return await asyncio.to_thread(ir.parse_text, data), fname
        except ir.IRError as e:
            raise bad(str(e)) from e

    async def upload(self, request: Request) -> Response:
        spec, fname = await self._upload_file(request)
        q = request.query_params
        name = q.get("name") or q.get("display_name") or ir.split(spec).name or fname
        try:
            ir.load(spec)
        except ir.IRError as e:
            raise bad(f"invalid pipeline spec: {e}") from e
        pl = self._new_pipeline(name, q.get("description", ""), q.get("namespace", ""))
        self._new_version(pl["metadata"]["name"], name, spec, q.get("description", ""))
        return ok(K.pipeline_json(pl))

    async def upload_version(self, request: Request) -> Response:
        spec, fname = await self._upload_file(request)
        q = request.query_params
        pid = q.get("pipelineid") or q.get("pipeline_id")
        if not pid:
            raise bad("pipelineid: required")
        self._get(K.PIPELINE, pid, "pipeline")
        v = self._new_version(pid, q.get("name") or fname, spec, q.get("description", ""))
        return ok(K.version_json(v))

    async def pipelines(self, request: Request) -> Response:
        if request.method == "POST":
            b = await self._body(request)
            pb = b.get("pipeline") if "pipeline" in b else b
            name = K.g(pb, "display_name") or K.g(pb, "name")
            if not name:
                raise bad("pipeline.display_name: required")
            pl = self._new_pipeline(name, K.g(pb, "description", ""), K.g(pb, "namespace", ""))
            vb = K.g(b, "pipeline_version")
            if vb:
                spec = K.g(vb, "pipeline_spec")
                if not spec:
                    raise bad("pipeline_version.pipeline_spec: required (package_url is not fetched by ketch)")
                self._new_version(pl["metadata"]["name"], K.g(vb, "display_name") or name, spec, K.g(vb, "description", ""))
            return ok(K.pipeline_json(pl))
        items, nxt, total = self._list(K.PIPELINE, request, K.pipeline_json)
        return ok({"pipelines": items, "total_size": total, "next_page_token": nxt})

    async def pipeline_by_name(self, request: Request) -> Response:
        name = request.path_params["name"]
        for o in self.client.list(K.PIPELINE, K.NS):
            if (o.get("spec") or {}).get("displayName") == name:
                return ok(K.pipeline_json(o))
        raise not_found("pipeline", name)

    async def pipeline(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        o = self._get(K.PIPELINE, pid, "pipeline")
        if request.method == "GET":
            return ok(K.pipeline_json(o))
        versions = self.client.list(K.VERSION, K.NS, labels={K.LABEL_PIPELINE: pid})
        if versions and not _cascade(request):
            raise ApiError(400, f"pipeline {pid!r} has {len(versions)} version(s); delete them first or pass cascade=true", 9)
        for v in versions:
            self.client.delete(K.VERSION, K.NS, v["metadata"]["name"])
        self.client.delete(K.PIPELINE, K.NS, pid)
        return ok({})

    async def versions(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        self._get(K.PIPELINE, pid, "pipeline")
        if request.method == "POST":
            b = await self._body(request)
            spec = K.g(b, "pipeline_spec")
            if not spec:
                raise bad("pipeline_version.pipeline_spec: required (package_url is not fetched by ketch)")
            v = self._new_version(pid, K.g(b, "display_name") or K.g(b, "name") or "version", spec, K.g(b, "description", ""))
            return ok(K.version_json(v))
        items, nxt, total = self._list(K.VERSION, request, K.version_json, [lambda d: d["pipeline_id"] == pid])
        return ok({"pipeline_versions": items, "total_size": total, "next_page_token": nxt})

    async def version(self, request: Request) -> Response:
        v = self._get(K.VERSION, request.path_params["vid"], "pipeline version")
        if (v.get("spec") or {}).get("pipelineId") != request.path_params["pid"]:
            raise not_found("pipeline version", request.path_params["vid"])
        if request.method == "DELETE":
            self.client.delete(K.VERSION, K.NS, v["metadata"]["name"])
            return ok({})
        return ok(K.version_json(v))

    # -- runs ------------------------------------------------------------------------------------------------

    def run_object(self, b: dict, kind: str = "PipelineRun") -> dict:
        """Validate a KFP run (or recurring run) body and make the spec of its object."""
        ref = K.g(b, "pipeline_version_reference")
        spec_in = K.g(b, "pipeline_spec")
        pvr = None
        if spec_in:
            try:
                p = ir.load(spec_in)
            except ir.IRError as e:
                raise bad(f"invalid pipeline spec: {e}") from e
        elif ref:
            pid, vid = K.g(ref, "pipeline_id"), K.g(ref, "pipeline_version_id")
            if not vid:
                vs = sorted(self.client.list(K.VERSION, K.NS, labels={K.LABEL_PIPELINE: pid or ""}), key=K.ts)
                if not vs:
                    raise bad(f"pipeline_version_reference: pipeline {pid!r} has no versions")
                vid = vs[-1]["metadata"]["name"]
            v = self._get(K.VERSION, vid, "pipeline version")
            p = ir.Pipeline(v["spec"]["pipelineSpec"], v["spec"].get("platformSpec") or {})
            pvr = {"pipelineId": pid or v["spec"]["pipelineId"], "pipelineVersionId": vid}
        else:
            raise bad("one of pipeline_spec or pipeline_version_reference is required")
        rc = K.g(b, "runtime_config") or {}
        params = dict(K.g(rc, "parameters") or {})
        params = {k: _unwrap_value(v) for k, v in params.items()}
        check_params(p, params)
        exp = K.g(b, "experiment_id") or self._default_experiment()
        self._get(K.EXPERIMENT, exp, "experiment")
        spec: dict[str, Any] = {
            "displayName": K.g(b, "display_name") or p.name, "description": K.g(b, "description", ""), "experimentId": exp,
            "pipelineSpec": p.spec, "runtimeConfig": {"parameters": params},
            "serviceAccount": K.g(b, "service_account", "") or "", "storageState": "AVAILABLE",
        }
        if p.platform:
            spec["platformSpec"] = p.platform
        if K.g(rc, "pipeline_root"):
            spec["runtimeConfig"]["pipelineRoot"] = K.g(rc, "pipeline_root")
        if pvr:
            spec["pipelineVersionReference"] = pvr
        return spec

    def run_namespace(self, spec: dict) -> str:
        """Where a run executes, as KFP multi-user: the namespace of its experiment when that namespace has a
        ``default-editor`` ServiceAccount (a Profile's), the task Pods then running under that account
        (unless the run names one). Otherwise KFP's own namespace, as single-user KFP."""
        exp = self.client.get(K.EXPERIMENT, K.NS, spec.get("experimentId", "")) or {}
        ns = (exp.get("spec") or {}).get("namespace") or ""
        if not ns or ns == K.NS or self.client.get(("v1", "ServiceAccount"), ns, DEFAULT_EDITOR) is None:
            return K.NS
        if not spec.get("serviceAccount"):
            spec["serviceAccount"] = DEFAULT_EDITOR
        return ns

    def create_run_object(self, spec: dict, labels: dict | None = None, ns: str = K.NS) -> dict:
        rid = K.new_id()
        return self.client.create({
            "apiVersion": K.GROUP, "kind": "PipelineRun",
            "metadata": {"name": rid, "namespace": ns, "labels": {K.LABEL_EXPERIMENT: spec.get("experimentId", ""), **(labels or {})}},
            "spec": spec, "status": {"state": "PENDING", "stateHistory": [{"update_time": K.rfc3339(), "state": "PENDING"}]},
        })

    async def runs(self, request: Request) -> Response:
        if request.method == "POST":
            b = await self._body(request)
            spec = self.run_object(b)
            o = self.create_run_object(spec, ns=self.run_namespace(spec))
            self.client.patch(K.EXPERIMENT, K.NS, spec["experimentId"], {"status": {"lastRunCreatedAt": K.ts(o)}}, status=True)
            return ok(K.run_json(o))
        q = request.query_params
        extra = []
        exp = q.get("experiment_id") or q.get("resource_reference_key.id")
        if exp:
            extra.append(lambda d: d["experiment_id"] == exp)
        items, nxt, total = self._list(K.RUN, request, lambda o: K.run_json(o, details=q.get("view") == "FULL"), extra)
        return ok({"runs": items, "total_size": total, "next_page_token": nxt})

    async def run(self, request: Request) -> Response:
        ident, _, verb = request.path_params["rid"].partition(":")
        o = self._get(K.RUN, ident, "run")
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        if request.method == "GET":
            return ok(K.run_json(o))
        if request.method == "DELETE":
            self.client.delete(K.RUN, ns, name, propagation="Background")
            return ok({})
        st = (o.get("status") or {}).get("state")
        if verb in ("archive", "unarchive"):
            self.client.patch(K.RUN, ns, name, {"spec": {"storageState": "ARCHIVED" if verb == "archive" else "AVAILABLE"}})
            return ok({})
        if verb == "terminate":
            if st in ("SUCCEEDED", "FAILED", "CANCELED"):
                return ok({})
            self.client.patch(K.RUN, ns, name, {"spec": {"cancel": True}})
            o = self.client.get(K.RUN, ns, name)
            s = o.get("status") or {}
            if s.get("state") not in ("SUCCEEDED", "FAILED", "CANCELED"):
                s["state"] = "CANCELING"
                s.setdefault("stateHistory", []).append({"update_time": K.rfc3339(), "state": "CANCELING"})
                o["status"] = s
                self.client.update_status(o)
            return ok({})
        if verb == "retry":
            if st not in ("FAILED", "CANCELED"):
                raise ApiError(400, f"run {ident!r} is {st}; only FAILED or CANCELED runs can be retried", 9)
            retry_run(self.client, o)
            return ok({})
        raise bad(f"unknown run verb {verb!r}")

    # -- recurring runs --------------------------------------------------------------------------------------

    async def recurring_runs(self, request: Request) -> Response:
        if request.method == "POST":
            b = await self._body(request)
            spec = self.run_object(b)
            trig = K.g(b, "trigger") or {}
            cron = K.g(trig, "cron_schedule")
            per = K.g(trig, "periodic_schedule")
            if not cron and not per:
                raise bad("trigger: one of cron_schedule or periodic_schedule is required")
            if cron:
                from ketch.pipelines.schedules import parse_cron

                try:
                    parse_cron(K.g(cron, "cron") or "")
                except ValueError as e:
                    raise bad(f"trigger.cron_schedule.cron: {e}") from e
                trig = {"cron_schedule": {k: v for k, v in (("cron", K.g(cron, "cron")), ("start_time", K.g(cron, "start_time")), ("end_time", K.g(cron, "end_time"))) if v}}
            else:
                iv = int(K.g(per, "interval_second") or 0)
                if iv <= 0:
                    raise bad("trigger.periodic_schedule.interval_second: must be a positive number of seconds")
                trig = {"periodic_schedule": {k: v for k, v in (("interval_second", str(iv)), ("start_time", K.g(per, "start_time")), ("end_time", K.g(per, "end_time"))) if v}}
            mode = K.g(b, "mode") or "ENABLE"
            if mode not in ("ENABLE", "DISABLE", "MODE_UNSPECIFIED"):
                raise bad(f"mode: unsupported value {mode!r}")
            spec.update(trigger=trig, mode="DISABLE" if mode == "DISABLE" else "ENABLE", maxConcurrency=int(K.g(b, "max_concurrency") or 1), noCatchup=bool(K.g(b, "no_catchup")))
            o = self.client.create({"apiVersion": K.GROUP, "kind": "RecurringRun", "metadata": {"name": K.new_id(), "namespace": self.run_namespace(spec), "labels": {K.LABEL_EXPERIMENT: spec["experimentId"]}}, "spec": spec})
            return ok(K.recurring_json(o))
        q = request.query_params
        extra = []
        if q.get("experiment_id"):
            extra.append(lambda d: d["experiment_id"] == q.get("experiment_id"))
        items, nxt, total = self._list(K.RECURRING, request, K.recurring_json, extra)
        return ok({"recurringRuns": items, "total_size": total, "next_page_token": nxt})

    async def recurring_run(self, request: Request) -> Response:
        ident, _, verb = request.path_params["rrid"].partition(":")
        o = self._get(K.RECURRING, ident, "recurring run")
        if request.method == "GET":
            return ok(K.recurring_json(o))
        if request.method == "DELETE":
            self.client.delete(K.RECURRING, o["metadata"]["namespace"], ident)
            return ok({})
        if verb in ("enable", "disable"):
            self.client.patch(K.RECURRING, o["metadata"]["namespace"], ident, {"spec": {"mode": "ENABLE" if verb == "enable" else "DISABLE"}})
            return ok({})
        raise bad(f"unknown recurring run verb {verb!r}")

    # -- lineage (ketch extension in the spirit of ML Metadata) ----------------------------------------------

    async def artifacts(self, request: Request) -> Response:
        q = request.query_params
        arts = lineage.artifacts(self.client.list(K.RUN, None), run_id=q.get("run_id"), uri=q.get("uri"))
        return ok({"artifacts": arts, "total_size": len(arts)})

    async def artifact(self, request: Request) -> Response:
        aid = request.path_params["aid"]
        info = lineage.lineage(self.client.list(K.RUN, None), aid)
        if info is None:
            raise not_found("artifact", aid)
        return ok(info)

    async def executions(self, request: Request) -> Response:
        q = request.query_params
        ex = lineage.executions(self.client.list(K.RUN, None), run_id=q.get("run_id"))
        return ok({"executions": ex, "total_size": len(ex)})

    async def contexts(self, request: Request) -> Response:
        return ok({"contexts": lineage.contexts(self.client.list(K.RUN, None), self.client.list(K.EXPERIMENT, None))})

    def routes(self) -> list[Route]:
        w = _wrap
        return [
            Route(f"{P}/healthz", w(self.healthz), methods=["GET"]),
            Route(f"{P}/experiments", w(self.experiments), methods=["GET", "POST"]),
            Route(f"{P}/experiments/{{eid}}", w(self.experiment), methods=["GET", "POST", "DELETE"]),
            Route(f"{P}/pipelines/upload", w(self.upload), methods=["POST"]),
            Route(f"{P}/pipelines/upload_version", w(self.upload_version), methods=["POST"]),
            Route(f"{P}/pipelines/create", w(self.pipelines), methods=["POST"]),
            Route(f"{P}/pipelines/names/{{name}}", w(self.pipeline_by_name), methods=["GET"]),
            Route(f"{P}/pipelines", w(self.pipelines), methods=["GET", "POST"]),
            Route(f"{P}/pipelines/{{pid}}", w(self.pipeline), methods=["GET", "DELETE"]),
            Route(f"{P}/pipelines/{{pid}}/versions", w(self.versions), methods=["GET", "POST"]),
            Route(f"{P}/pipelines/{{pid}}/versions/{{vid}}", w(self.version), methods=["GET", "DELETE"]),
            Route(f"{P}/runs", w(self.runs), methods=["GET", "POST"]),
            Route(f"{P}/runs/{{rid}}", w(self.run), methods=["GET", "POST", "DELETE"]),
            Route(f"{P}/recurringruns", w(self.recurring_runs), methods=["GET", "POST"]),
            Route(f"{P}/recurringruns/{{rrid}}", w(self.recurring_run), methods=["GET", "POST", "DELETE"]),
            Route(f"{P}/artifacts", w(self.artifacts), methods=["GET"]),
            Route(f"{P}/artifacts/{{aid}}", w(self.artifact), methods=["GET"]),
            Route(f"{P}/executions", w(self.executions), methods=["GET"]),
            Route(f"{P}/contexts", w(self.contexts), methods=["GET"]),
        ]


def retry_run(client: Client, o: dict) -> None:
    """Forget the failed and canceled task records (and the groups holding them) so the controller runs
    them again; what succeeded is kept, as KFP's retry does."""
    st = copy.deepcopy(o.get("status") or {})
    tasks = st.get("tasks") or {}
    bad_ids = {tid for tid, r in tasks.items() if r["state"] in ("FAILED", "CANCELED") or r.get("upstreamFailed")}
    for tid in list(bad_ids):  # enclosing groups are re-evaluated too
        parts = tid.split("/")
        for i in range(1, len(parts)):
            bad_ids.add("/".join(parts[:i]))
        base = tid.split("[")[0]
        if "[" in tid:
            bad_ids.add(base)
    for tid in bad_ids:
        r = tasks.get(tid)
        if r is None:
            continue
        if r["kind"] in ("loop", "iteration", "dag"):
            r["state"] = "RUNNING"
            r.pop("endTime", None)
            r.pop("error", None)
        else:
            tasks.pop(tid)
    st.update(tasks=tasks, state="RUNNING", retryCount=int(st.get("retryCount") or 0) + 1)
    st.pop("error", None)
    st.pop("finishedAt", None)
    st.setdefault("stateHistory", []).append({"update_time": K.rfc3339(), "state": "RUNNING"})
    if (o.get("spec") or {}).get("cancel"):
        o = client.patch(K.RUN, o["metadata"]["namespace"], o["metadata"]["name"], {"spec": {"cancel": None}})
    o["status"] = st
    client.update_status(o)


def check_params(p: ir.Pipeline, params: dict) -> None:
    """Unknown and missing pipeline parameters are refused at submission, naming the parameter."""
    defs = (p.root.get("inputDefinitions") or {}).get("parameters") or {}
    adefs = (p.root.get("inputDefinitions") or {}).get("artifacts") or {}
    for k in params:
        if k not in defs and k not in adefs:
            raise bad(f"runtime_config.parameters.{k}: the pipeline has no parameter {k!r} (it has: {', '.join(sorted([*defs, *adefs])) or 'none'})")
    try:
        ir.root_artifacts(p, params)
    except ir.IRError as e:
        raise bad(str(e)) from e
    for k, d in defs.items():
        if k not in params and "defaultValue" not in d and not d.get("isOptional"):
            raise bad(f"runtime_config.parameters.{k}: required (no default value)")
        if k in params:
            try:
                params[k] = ir.cast_param(params[k], d.get("parameterType"))
            except (TypeError, ValueError) as e:
                raise bad(f"runtime_config.parameters.{k}: not a valid {d.get('parameterType')}: {e}") from e


def _unwrap_value(v: Any) -> Any:
    """runtime_config.parameters are protobuf Values; some clients send them wrapped ({"string_value": ..})."""
    if isinstance(v, dict) and len(v) == 1:
        k = next(iter(v))
        if k in ("string_value", "stringValue", "number_value", "numberValue", "bool_value", "boolValue"):
            return v[k]
        if k in ("struct_value", "structValue", "list_value", "listValue"):
            return v[k]
    return v


def _unpack(data: bytes, fname: str) -> bytes:
    import io
    import tarfile
    import zipfile
    import zlib

    try:
        if fname.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = [n for n in z.namelist() if n.endswith((".yaml", ".yml", ".json"))]
                if not names:
                    raise bad("uploadfile: the archive holds no .yaml or .json pipeline")
                if z.getinfo(names[0]).file_size > _MAX_UNPACKED:
                    raise bad(f"uploadfile: {names[0]} unpacks to more than {_MAX_UNPACKED} bytes")
                return z.read(names[0])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith((".yaml", ".yml", ".json")):
                    if m.size > _MAX_UNPACKED:
                        raise bad(f"uploadfile: {m.name} unpacks to more than {_MAX_UNPACKED} bytes")
                    f = t.extractfile(m)
                    if f is not None:
                        return f.read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise bad(f"uploadfile: {fname} is not a readable {'zip' if fname.endswith('.zip') else 'tar.gz'} archive: {e}") from None
    raise bad("uploadfile: the archive holds no .yaml or .json pipeline")


_MAX_UNPACKED = 16 * 1024 * 1024  # a pipeline inside an archive: as big as an upload may be, no zip bomb


_STRING_FIELDS = ("display_name", "displayName", "description", "namespace", "experiment_id", "experimentId", "pipeline_id",
                  "pipelineId", "pipeline_version_id", "pipelineVersionId", "name", "service_account", "serviceAccount")


def _wrap(fn):
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as e:
            return JSONResponse({"error": e.message, "code": e.code, "message": e.message, "details": []}, status_code=e.status)
        except StatusError as e:
            return JSONResponse({"error": e.message, "code": 13, "message": e.message, "details": []}, status_code=e.code)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as e:
            # a field of the request with a type or shape the handler did not expect: the client's error
            # (3 = INVALID_ARGUMENT); logged, so a handler that should have said which field is found
            log.warning("KFP %s %s: malformed request (%s: %s)", request.method, request.url.path, type(e).__name__, e, exc_info=True)
            msg = f"invalid request: a field has a value of the wrong type or shape ({type(e).__name__}: {e})"
            return JSONResponse({"error": msg, "code": 3, "message": msg, "details": []}, status_code=400)

    handler.__name__ = fn.__name__
    return handler
