"""ketch.notebooks plugged into ketch: the Notebook controller and the /notebook/ proxy on ketch's port."""

from __future__ import annotations

import ketch.notebooks as pkg
from ketch.machinery.context import Context
from ketch.notebooks.proxy import NotebookProxy
from ketch.runtime import start_controllers


def setup(ctx: Context) -> None:
    proxy = NotebookProxy(ctx)
    ctx.add_routes(proxy.routes())
    ctx.on_shutdown(proxy.close)
    start_controllers(ctx, pkg.__name__, pkg.__path__)
