"""ketch.serving plugged into ketch: the InferenceService controller and the gateway routes on ketch's port."""

from __future__ import annotations

import ketch.serving as pkg
from ketch.machinery.context import Context
from ketch.runtime import start_controllers
from ketch.serving.gateway import Gateway
from ketch.serving.router import Router


def setup(ctx: Context) -> None:
    router = ctx.services.setdefault("serving-router", Router())
    gateway = Gateway(router)
    ctx.add_routes(gateway.routes())
    ctx.on_shutdown(gateway.close)
    start_controllers(ctx, pkg.__name__, pkg.__path__)
