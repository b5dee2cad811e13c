"""The regular-expression engine for CRD schema ``pattern``s: RE2, as kube-apiserver uses.

A backtracking engine (Python's ``re``) takes exponential time on patterns such as ``^(a+)+$``: one
request with a 31-character value would stall the whole server for half a minute. RE2 (``google-re2``,
a core dependency) matches in time linear in the value, and refuses what it cannot do in linear time
(backreferences, lookaround), which Kubernetes refuses too. Where the wheel is missing, patterns fall back
to ``re``, the values they are matched against are capped, and the log says so once at start-up.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

try:
    import re2 as _re2

    _OPTIONS = _re2.Options()
    _OPTIONS.log_errors = False
    ENGINE = "re2"
except ImportError:  # pragma: no cover - google-re2 ships wheels for the platforms ketch supports
    _re2 = None
    ENGINE = "re"
    log.warning("google-re2 is not installed: CRD patterns use Python's backtracking re (pip install google-re2)")

# Without RE2, values longer than this are not matched against a pattern at all (refused instead).
FALLBACK_MAX_VALUE = 256


class PatternError(ValueError):
    """A pattern the engine cannot compile (bad syntax, or a feature that needs backtracking)."""


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    if _re2 is not None:
        try:
            return _re2.compile(pattern, options=_OPTIONS)
        except _re2.error as e:
            msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            raise PatternError(msg) from None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise PatternError(str(e)) from None


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` anywhere (OpenAPI's ``pattern`` is not anchored)."""
    if _re2 is None and len(value) > FALLBACK_MAX_VALUE:
        return False
    return compile_pattern(pattern).search(value) is not None
