"""Kubeflow Model Registry's REST API (``/api/model_registry/v1``) on ketch's port, what the
``model-registry`` Python client (``ModelRegistry(server_address=..., port=...)``) calls.

Registered models, model versions and artifacts are objects in the store (``modelregistry.kubeflow.org``
kinds in namespace ``kubeflow``, the object's name being the registry id), linked by labels: a version
carries its registered model's id, an artifact its model version's. Bodies use the registry's JSON field
names (``customProperties`` with typed values, ``createTimeSinceEpoch`` as millisecond strings, ``state``);
lists page with ``pageSize``/``orderBy``/``sortOrder``/``nextPageToken``. Errors are ``{code, message}``
with the HTTP status the client maps (400, 404, 409).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ketch.machinery.client import Client
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError

log = logging.getLogger(__name__)
P = "/api/model_registry/v1"
NS = "kubeflow"
GROUP = "modelregistry.kubeflow.org/v1alpha1"
RM_LABEL = "modelregistry.kubeflow.org/registered-model-id"
MV_LABEL = "modelregistry.kubeflow.org/model-version-id"
SERVER_FIELDS = ("id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch")
ARTIFACT_TYPES = {"model-artifact", "doc-artifact", "dataset-artifact", "metric", "parameter"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Resource:
    """One kind of registry resource: its object kind, what its id looks like, its default state."""

    kind: tuple[str, str]
    prefix: str
    what: str
    default_state: str


RM = Resource((GROUP, "RegisteredModel"), "model-", "registered model", "LIVE")
MV = Resource((GROUP, "ModelVersion"), "version-", "model version", "LIVE")
ART = Resource((GROUP, "ModelArtifact"), "artifact-", "artifact", "UNKNOWN")


def _ms() -> str:
    return str(int(time.time() * 1000))


def _out(o: dict) -> dict:
    s = dict(o.get("spec") or {})
    s["id"] = o["metadata"]["name"].rsplit("-", 1)[-1]  # the registry's ids are numbers; the name carries one
    return s


class RegistryApi:
    def __init__(self, ctx: Context) -> None:
        self.client = Client(ctx.api, manager="ketch-model-registry")

    # -- storage --------------------------------------------------------------------------------------

    def _all(self, r: Resource, labels: dict[str, str] | None = None) -> list[dict]:
        return [_out(o) for o in self.client.list(r.kind, NS, labels)]

    def _get(self, r: Resource, ident: str) -> dict:
        if not ident.isdigit():
            raise ApiError(400, f"{r.what} id must be a number, not {ident!r}")
        o = self.client.get(r.kind, NS, r.prefix + ident)
        if o is None:
            raise ApiError(404, f"{r.what} with id {ident} not found")
        return o

    def _create(self, r: Resource, body: dict, labels: dict[str, str] | None = None) -> dict:
        spec = {k: v for k, v in body.items() if k not in SERVER_FIELDS}
        spec.setdefault("state", r.default_state)
        spec.setdefault("customProperties", {})
        spec["createTimeSinceEpoch"] = spec["lastUpdateTimeSinceEpoch"] = _ms()
        # ids count up per kind, as the registry's do: the next after the highest; a concurrent create that
        # took it makes this one try the next
        n = 1 + max((int(o["metadata"]["name"].rsplit("-", 1)[-1]) for o in self.client.list(r.kind, NS)), default=0)
        while True:
            obj = {"apiVersion": r.kind[0], "kind": r.kind[1],
                   "metadata": {"name": f"{r.prefix}{n}", "namespace": NS, "labels": labels or {}}, "spec": spec}
            try:
                return _out(self.client.create(obj, NS))
            except StatusError as e:
                if e.code != 409:
                    raise
                n += 1

    def _update(self, r: Resource, ident: str, body: dict) -> dict:
        o = self._get(r, ident)
        spec = dict(o.get("spec") or {})
        for k, v in body.items():
            if k in SERVER_FIELDS or k in ("name", "registeredModelId"):
                continue  # identity and server fields are not changed by an update
            spec[k] = v
        spec["lastUpdateTimeSinceEpoch"] = _ms()
        o["spec"] = spec
        return _out(self.client.update(o))

    @staticmethod
    def _page(items: list[dict], q: Any) -> dict:
        order = (q.get("orderBy") or "ID").upper()
        key = {"CREATE_TIME": "createTimeSinceEpoch", "LAST_UPDATE_TIME": "lastUpdateTimeSinceEpoch", "NAME": "name"}.get(order, "id")
        items = sorted(items, key=lambda x: (int(x[key]) if key.endswith("Epoch") else str(x.get(key) or ""), x["id"]),
                       reverse=(q.get("sortOrder") or "ASC").upper() == "DESC")
        try:
            size = int(q.get("pageSize") or 100)
            start = int(base64.urlsafe_b64decode((q.get("nextPageToken") or "").encode() or b"MA==").decode() or 0)
        except ValueError as e:
            raise ApiError(400, f"invalid paging parameters: {e}") from e
        page = items[start:start + size]
        more = start + size < len(items)
        return {"items": page, "size": len(page), "pageSize": size,
                "nextPageToken": base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else ""}

    @staticmethod
    def _find(items: list[dict], q: Any, what: str) -> dict:
        name, ext = q.get("name"), q.get("externalId")
        if not name and not ext:
            raise ApiError(400, "one of name or externalId is required")
        for x in items:
            if (ext and x.get("externalId") == ext) or (name and not ext and x.get("name") == name):
                return x
        raise ApiError(404, f"no {what} found for {'externalId ' + ext if ext else 'name ' + str(name)}")

    # -- registered models ------------------------------------------------------------------------------

    def create_model(self, body: dict) -> dict:
        if not body.get("name"):
            raise ApiError(400, "registered model: name is required")
        if any(m.get("name") == body["name"] for m in self._all(RM)):
            raise ApiError(409, f"registered model with name {body['name']!r} already exists")
        return self._create(RM, body)

    def create_version(self, model_id: str, body: dict) -> dict:
        self._get(RM, model_id)
        if not body.get("name"):
            raise ApiError(400, "model version: name is required")
        if any(v.get("name") == body["name"] for v in self._all(MV, {RM_LABEL: model_id})):
            raise ApiError(409, f"model version {body['name']!r} already exists in registered model {model_id}")
        return self._create(MV, {**body, "registeredModelId": model_id}, {RM_LABEL: model_id})

    def upsert_version_artifact(self, version_id: str, body: dict) -> tuple[dict, int]:
        self._get(MV, version_id)
        if body.get("id"):  # an existing artifact: link it to this version (and apply the body)
            o = self._get(ART, body["id"])
            o["metadata"].setdefault("labels", {})[MV_LABEL] = version_id
            self.client.update(o)
            return self._update(ART, body["id"], body), 200
        t = body.get("artifactType") or "model-artifact"
        if t not in ARTIFACT_TYPES:
            raise ApiError(400, f"artifactType: unsupported value {t!r} (one of {', '.join(sorted(ARTIFACT_TYPES))})")
        return self._create(ART, {**body, "artifactType": t}, {MV_LABEL: version_id}), 201

    # -- routes -------------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        def h(fn):  # noqa: ANN001, ANN202
            async def handler(request: Request) -> Response:
                try:
                    body = await request.json() if request.method in ("POST", "PATCH") else {}
                    if not isinstance(body, dict):
                        raise ApiError(400, "the body must be a JSON object")
                    out = fn(request, body)
                    data, status = out if isinstance(out, tuple) else (out, 200)
                    return JSONResponse(data, status_code=status)
                except ApiError as e:
                    return JSONResponse({"code": str(e.status), "message": e.message}, status_code=e.status)
                except StatusError as e:
                    return JSONResponse({"code": str(e.code), "message": e.message}, status_code=e.code)
                except ValueError as e:  # a body that is not JSON
                    return JSONResponse({"code": "400", "message": f"invalid JSON body: {e}"}, status_code=400)
                except (TypeError, AttributeError, KeyError, IndexError) as e:
                    # a field with a type or shape the handler did not expect: the client's error; logged,
                    # so a handler that should have named the field is found
                    log.warning("model registry %s %s: malformed request (%s: %s)", request.method, request.url.path, type(e).__name__, e, exc_info=True)
                    return JSONResponse({"code": "400", "message": f"invalid request: a field has a value of the wrong type or shape ({type(e).__name__}: {e})"}, status_code=400)

            return handler

        pp = lambda r: r.path_params  # noqa: E731
        q = lambda r: r.query_params  # noqa: E731
        arts = lambda r, t=None: [a for a in self._all(ART) if t is None or a.get("artifactType") == t]  # noqa: E731
        return [
            Route(f"{P}/registered_models", h(lambda r, b: self._page(self._all(RM), q(r))), methods=["GET"]),
            Route(f"{P}/registered_models", h(lambda r, b: (self.create_model(b), 201)), methods=["POST"]),
            Route(f"{P}/registered_model", h(lambda r, b: self._find(self._all(RM), q(r), "registered model")), methods=["GET"]),
            Route(f"{P}/registered_models/{{id}}", h(lambda r, b: _out(self._get(RM, pp(r)["id"]))), methods=["GET"]),
            Route(f"{P}/registered_models/{{id}}", h(lambda r, b: self._update(RM, pp(r)["id"], b)), methods=["PATCH"]),
            Route(f"{P}/registered_models/{{id}}/versions",
                  h(lambda r, b: self._page(self._all(MV, {RM_LABEL: _out(self._get(RM, pp(r)["id"]))["id"]}), q(r))), methods=["GET"]),
            Route(f"{P}/registered_models/{{id}}/versions", h(lambda r, b: (self.create_version(pp(r)["id"], b), 201)), methods=["POST"]),
            Route(f"{P}/model_versions", h(lambda r, b: self._page(self._all(MV), q(r))), methods=["GET"]),
            Route(f"{P}/model_versions", h(lambda r, b: (self.create_version(str(b.get("registeredModelId") or ""), b), 201)), methods=["POST"]),
            Route(f"{P}/model_version", h(lambda r, b: self._find(
                self._all(MV, {RM_LABEL: q(r)["parentResourceId"]} if q(r).get("parentResourceId") else None), q(r), "model version")), methods=["GET"]),
            Route(f"{P}/model_versions/{{id}}", h(lambda r, b: _out(self._get(MV, pp(r)["id"]))), methods=["GET"]),
            Route(f"{P}/model_versions/{{id}}", h(lambda r, b: self._update(MV, pp(r)["id"], b)), methods=["PATCH"]),
            Route(f"{P}/model_versions/{{id}}/artifacts",
                  h(lambda r, b: self._page(self._all(ART, {MV_LABEL: _out(self._get(MV, pp(r)["id"]))["id"]}), q(r))), methods=["GET"]),
            Route(f"{P}/model_versions/{{id}}/artifacts", h(lambda r, b: self.upsert_version_artifact(pp(r)["id"], b)), methods=["POST"]),
            Route(f"{P}/model_artifacts", h(lambda r, b: self._page(arts(r, "model-artifact"), q(r))), methods=["GET"]),
            Route(f"{P}/model_artifacts", h(lambda r, b: (self._create(ART, {**b, "artifactType": "model-artifact"}), 201)), methods=["POST"]),
            Route(f"{P}/model_artifact", h(lambda r, b: self._find(
                [a for a in (self._all(ART, {MV_LABEL: q(r)["parentResourceId"]}) if q(r).get("parentResourceId") else self._all(ART))
                 if a.get("artifactType") == "model-artifact"], q(r), "model artifact")), methods=["GET"]),
            Route(f"{P}/model_artifacts/{{id}}", h(lambda r, b: _out(self._get(ART, pp(r)["id"]))), methods=["GET"]),
            Route(f"{P}/model_artifacts/{{id}}", h(lambda r, b: self._update(ART, pp(r)["id"], b)), methods=["PATCH"]),
            Route(f"{P}/artifacts", h(lambda r, b: self._page(arts(r, q(r).get("artifactType")), q(r))), methods=["GET"]),
            Route(f"{P}/artifacts/{{id}}", h(lambda r, b: _out(self._get(ART, pp(r)["id"]))), methods=["GET"]),
            Route(f"{P}/artifacts/{{id}}", h(lambda r, b: self._update(ART, pp(r)["id"], b)), methods=["PATCH"]),
        ]
