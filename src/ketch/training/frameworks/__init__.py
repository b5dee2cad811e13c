"""One module per training framework: how its replicas are named, wired together and judged.

Each module exports ``FRAMEWORK`` (a :class:`~ketch.training.frameworks.base.Framework`); adding a
framework is adding a file here. The shared replica-job engine (``ketch.training.jobs``) does the rest.
"""

from __future__ import annotations

import importlib
import pkgutil

from ketch.training.frameworks.base import Framework


def all_frameworks() -> list[Framework]:
    out = []
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name == "base" or m.name.startswith("_"):
            continue
        fw = getattr(importlib.import_module(f"{__name__}.{m.name}"), "FRAMEWORK", None)
        if fw is not None:
            out.append(fw)
    return out
