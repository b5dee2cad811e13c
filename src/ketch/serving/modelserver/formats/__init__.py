"""Model formats: one module per framework, each registering the loader for a ``modelFormat.name``.

Frameworks are optional dependencies, imported only when a model of that format is loaded, so serving a
scikit-learn model never imports torch. Adding a format is adding a file here with ``FORMAT`` and ``load``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from ketch.serving.modelserver.model import Model

Loader = Callable[[str, str], Model]  # (model name, model dir) -> unloaded model


def formats() -> dict[str, str]:
    """``{format name: module}`` for every module in this package."""
    out = {}
    for m in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{m.name}")
        for name in getattr(mod, "FORMATS", ()):
            out[name] = mod.__name__
    return out


def create(format_name: str, name: str, model_dir: str) -> Model:
    mods = formats()
    mod = mods.get(format_name.lower())
    if mod is None:
        raise ValueError(f"unknown model format {format_name!r}; known: {', '.join(sorted(mods))}")
    return importlib.import_module(mod).create(name, model_dir)
