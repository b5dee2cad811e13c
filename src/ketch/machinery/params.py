"""Query parameters read as kube-apiserver reads them.

Kubernetes converts boolean query parameters with Go's ``strconv.ParseBool``, so ``follow=True`` (what the
kubernetes Python client sends), ``follow=1`` and ``follow=t`` all mean true; anything outside its set is a
400, not a silent false.
"""

from __future__ import annotations

from typing import Any

from ketch.machinery.errors import bad_request

TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool: ValueError for anything it does not accept."""
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def query_bool(q: Any, name: str, default: bool = False) -> bool:
    """The boolean query parameter ``name`` (absent or empty: ``default``); a 400 naming it when malformed."""
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        return parse_bool(v)
    except ValueError as e:
        raise bad_request(f"{name}: Invalid value: {v!r}: {e}") from None
