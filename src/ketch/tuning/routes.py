"""HTTP routes on ketch's port for metrics: the push endpoint (Katib's ``Push`` collector without gRPC) and
the observation-log query.

POST /katib/v1/namespaces/{ns}/trials/{trial}/metrics  ``{"metrics": {"loss": 0.25}, "timestamp": optional}``
GET  /katib/v1/namespaces/{ns}/trials/{trial}/observations[?metricName=loss]
"""

from __future__ import annotations

import datetime as dt
import math

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ketch.machinery.context import Context
from ketch.runtime import Key
from ketch.tuning.names import TRIAL


def _error(code: int, msg: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code}, status_code=code)


def routes(ctx: Context) -> list[Route]:
    store = ctx.services["katib-observations"]

    async def push(request: Request) -> JSONResponse:
        ns, name = request.path_params["ns"], request.path_params["trial"]
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body must be JSON")
        metrics = body.get("metrics") if isinstance(body, dict) else None
        if not isinstance(metrics, dict) or not metrics:
            return _error(400, 'body must be {"metrics": {"<name>": <number>, ...}}')
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, int | float | str):
                return _error(400, f"metric {k!r}: value must be a number")
            try:
                if not math.isfinite(float(v)):
                    raise ValueError
            except ValueError:
                return _error(400, f"metric {k!r}: value {v!r} is not a finite number")
        if ctx.api.try_get(ctx.api.rd(*TRIAL), ns, name) is None:
            return _error(404, f'trials.kubeflow.org "{name}" not found')
        ts = body.get("timestamp") or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        store.append(ns, name, [{"time": ts, "name": k, "value": str(v)} for k, v in metrics.items()])
        c = ctx.services.get("controllers", {}).get("katib-trial")
        if c is not None:
            c.queue.add(Key(ns, name))
        return JSONResponse({"status": "ok", "recorded": len(metrics)})

    async def observations(request: Request) -> JSONResponse:
        ns, name = request.path_params["ns"], request.path_params["trial"]
        logs = store.read(ns, name, request.query_params.get("metricName"))
        return JSONResponse({"trialName": name, "observationLog": {"metricLogs": [
            {"timeStamp": r["time"], "metric": {"name": r["name"], "value": r["value"]}} for r in logs]}})

    return [
        Route("/katib/v1/namespaces/{ns}/trials/{trial}/metrics", push, methods=["POST"]),
        Route("/katib/v1/namespaces/{ns}/trials/{trial}/observations", observations, methods=["GET"]),
    ]
