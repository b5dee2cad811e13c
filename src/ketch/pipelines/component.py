"""Kubeflow Pipelines in ketch: the KFP v2beta1 REST API on ketch's port, the PipelineRun controller (one
Pod per task) and the RecurringRun scheduler."""

from __future__ import annotations

import logging

from ketch.machinery.context import Context
from ketch.runtime import start_controllers

log = logging.getLogger(__name__)


def setup(ctx: Context) -> None:
    import ketch.pipelines as pkg
    from ketch.pipelines.api import KfpApi
    from ketch.pipelines.kfp_objects import NS

    rd = ctx.api.rd("v1", "Namespace")
    if ctx.api.try_get(rd, "", NS) is None:
        ctx.api.create(rd, "", {"metadata": {"name": NS}})
    ctx.add_routes(KfpApi(ctx).routes())
    # a task's directory (its task file, the result written back) may be shipped to a Ray node that does not
    # share the home, and brought back (kubelet/ray_files.py): these are the only directories a Pod's argv
    # may name for that
    ctx.services.setdefault("pod_file_roots", []).append(str(ctx.settings.home / "pipelines" / "runs"))
    start_controllers(ctx, pkg.__name__, pkg.__path__)
