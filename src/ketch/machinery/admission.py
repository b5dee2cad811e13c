"""Validating admission for custom kinds: components register per-(group, kind) checks.

A CRD's OpenAPI schema cannot say "a PyTorchJob needs exactly one Master" or "these two settings conflict";
Kubernetes operators answer that with validating webhooks. Here a component calls ``register`` in its
``setup(ctx)`` and ``Api._admit`` consults ``validators_for`` on every create and update, so bad input is
refused with a Kubernetes ``Invalid`` Status naming the field, before anything is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from ketch.kinds.definitions import FieldError

Validator = Callable[[dict, dict | None], list[FieldError]]  # (new object, old object or None) -> errors

_VALIDATORS: dict[tuple[str, str], list[Validator]] = {}


def register(group: str, kind: str, fn: Validator) -> None:
    """Add ``fn`` as a validator of ``group``/``kind`` (idempotent for the same function)."""
    fns = _VALIDATORS.setdefault((group, kind), [])
    if fn not in fns:
        fns.append(fn)


def validators_for(group: str, kind: str) -> list[Validator]:
    return list(_VALIDATORS.get((group, kind), ()))
