"""``GET /ui/notebooks/config``: what the dashboard's notebook spawner form offers, as Kubeflow's Jupyter web
app reads its ``spawner_ui_config.yaml``. ``KETCH_HOME/spawner_ui_config.yaml`` (re-read on every request,
so editing it needs no restart) may set ``spawnerFormDefaults.image.value`` / ``.options`` (the image list),
``cpu.value``, ``memory.value`` and ``gpus.vendor``; what it leaves out keeps the defaults below (the
Kubeflow Notebooks working group's Jupyter images).
"""

from __future__ import annotations

import copy

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ketch.machinery.context import Context

IMAGES = [f"kubeflownotebookswg/{n}:v1.9.0" for n in (
    "jupyter-scipy", "jupyter-pytorch-full", "jupyter-pytorch-cuda-full", "jupyter-tensorflow-full",
    "jupyter-tensorflow-cuda-full")]
DEFAULTS = {
    "image": {"value": IMAGES[0], "options": IMAGES},
    "cpu": {"value": "0.5"},
    "memory": {"value": "1Gi"},
    "gpus": {"vendor": "nvidia.com/gpu"},
    "workspaceVolume": {"mountPath": "/home/jovyan", "size": "5Gi"},
}


def load(path) -> dict:
    """The defaults overlaid with the file's ``spawnerFormDefaults`` (a bad file is reported, not fatal)."""
    out = copy.deepcopy(DEFAULTS)
    if not path.is_file():
        return out
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        out["error"] = f"{path.name}: {e}"
        return out
    for key, val in ((doc.get("spawnerFormDefaults") or {}) if isinstance(doc, dict) else {}).items():
        if key in out and isinstance(val, dict):
            out[key].update(val)
    return out


def routes(ctx: Context) -> list[Route]:
    async def config(_request: Request) -> JSONResponse:
        return JSONResponse(load(ctx.settings.home / "spawner_ui_config.yaml"))

    return [Route("/ui/notebooks/config", config, methods=["GET"])]
