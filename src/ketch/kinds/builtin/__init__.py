"""Built-in kinds. Each module here exports ``DEFINITIONS: list[ResourceDefinition]``; adding a kind is
adding a file. Kubeflow's kinds are not here: they ship as CRD manifests in ``ketch/kinds/crds``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ketch.kinds.definitions import ResourceDefinition


def all_definitions() -> list[ResourceDefinition]:
    out: list[ResourceDefinition] = []
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{m.name}")
        out.extend(getattr(mod, "DEFINITIONS", []))
    return out
