"""ketch.notebooks plugged into ketch: the Notebook controller, the /notebook/ proxy on ketch's port, the
PodDefault admission hook and the spawner's configuration (/ui/notebooks/config)."""

from __future__ import annotations

import ketch.notebooks as pkg
from ketch.machinery.context import Context
from ketch.notebooks.poddefaults import PodDefaultCache, admitter
from ketch.notebooks.proxy import NotebookProxy
from ketch.notebooks.spawner import routes as spawner_routes
from ketch.runtime import start_controllers


def setup(ctx: Context) -> None:
    cache = PodDefaultCache(ctx.api)
    ctx.services.setdefault("controllers", {})[cache.name] = cache
    ctx.add_task(cache.run, every_server=True)  # admission reads it, in every API server
    ctx.api.add_validator("", "Pod", admitter(ctx.api, cache))  # Kubeflow's PodDefault webhook
    proxy = NotebookProxy(ctx)
    ctx.add_routes(proxy.routes() + spawner_routes(ctx))
    ctx.on_shutdown(proxy.close)
    start_controllers(ctx, pkg.__name__, pkg.__path__)
