"""Starts the core controllers: every module in this package exporting ``CONTROLLERS`` or ``TASKS``."""

from __future__ import annotations

from ketch.machinery.context import Context
from ketch.runtime import start_controllers


def setup(ctx: Context) -> None:
    import ketch.controllers as pkg
    from ketch.controllers import disruption

    start_controllers(ctx, pkg.__name__, pkg.__path__)
    disruption.register(ctx)  # pods/eviction, honouring PodDisruptionBudgets
