"""Suggestion algorithms, by Katib's ``algorithmName``. Each module of this package exports ``ALGORITHMS``
(name -> Algorithm); adding an algorithm is adding a file. ``EARLY_STOPPING`` maps early-stopping algorithm
names to their settings' validators."""

from __future__ import annotations

import importlib
import pkgutil

from ketch.tuning.algorithms.base import Algorithm, Entry

ALGORITHMS: dict[str, Algorithm] = {}
for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name != "base":
        ALGORITHMS.update(getattr(importlib.import_module(f"{__name__}.{_m.name}"), "ALGORITHMS", {}))


def _positive_int(v: str | None) -> str | None:
    try:
        return None if int(v or "") > 0 else "must be > 0"
    except ValueError:
        return "must be an integer"


def _at_least_one(v: str | None) -> str | None:
    try:
        return None if int(v or "") >= 1 else "must be >= 1"
    except ValueError:
        return "must be an integer"


# medianstop: Katib's settings and defaults (min_trials_required 3, start_step 4).
EARLY_STOPPING = {"medianstop": {"min_trials_required": _positive_int, "start_step": _at_least_one}}

__all__ = ["ALGORITHMS", "EARLY_STOPPING", "Algorithm", "Entry"]
