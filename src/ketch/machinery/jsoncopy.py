"""Deep copies of JSON-shaped objects, made on every read and write of the API."""

from __future__ import annotations

import copy
from typing import Any

import orjson


def clone(obj: Any) -> Any:
    """An orjson round trip: several times faster than copy.deepcopy on API objects. Anything orjson
    refuses (non-string keys from odd YAML) falls back to copy.deepcopy."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)
