"""Starts the core controllers: every module in this package that exports ``CONTROLLERS`` (classes) or
``TASKS`` (factories of background coroutines taking the Context)."""

from __future__ import annotations

import importlib
import pkgutil

from ketch.machinery.context import Context


def start_controllers(ctx: Context, package: str, path: list[str]) -> None:
    """Instantiate and schedule every controller a package's modules export (shared by all components)."""
    for m in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if m.name in ("component", "runtime") or m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{m.name}")
        for cls in getattr(mod, "CONTROLLERS", []):
            c = cls(ctx.api) if not getattr(cls, "needs_context", False) else cls(ctx)
            ctx.services.setdefault("controllers", {})[c.name] = c
            ctx.add_task(c.run)
        for factory in getattr(mod, "TASKS", []):
            ctx.add_task(factory(ctx))


def setup(ctx: Context) -> None:
    import ketch.controllers as pkg

    start_controllers(ctx, pkg.__name__, pkg.__path__)
