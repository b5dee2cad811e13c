"""Plumbing shared by components: start every controller and task a package's modules export."""

from __future__ import annotations

import importlib
import pkgutil

from ketch.machinery.context import Context


def start_controllers(ctx: Context, package: str, path: list[str]) -> None:
    """Instantiate and schedule what each module of ``package`` exports: ``CONTROLLERS`` (classes taking
    the Api, or the Context when the class sets ``needs_context``) and ``TASKS`` (factories taking the
    Context and returning a coroutine function)."""
    for m in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if m.name == "component" or m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{m.name}")
        for cls in getattr(mod, "CONTROLLERS", []):
            c = cls(ctx) if getattr(cls, "needs_context", False) else cls(ctx.api)
            ctx.services.setdefault("controllers", {})[c.name] = c
            ctx.add_task(c.run)
        for factory in getattr(mod, "TASKS", []):
            ctx.add_task(factory(ctx))
