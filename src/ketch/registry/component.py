"""ketch.registry plugged into ketch: Kubeflow Model Registry's REST API on ketch's port."""

from __future__ import annotations

from ketch.machinery.context import Context
from ketch.registry.api import RegistryApi


def setup(ctx: Context) -> None:
    ctx.add_routes(RegistryApi(ctx).routes())
