"""Rate limiting of identical log records, so one failing thing cannot flood the log.

A store that refuses every write, or a reconcile that fails the same way on each retry, would otherwise
print the same traceback many times a second. The first record of each kind (logger, level, message and
exception) passes; identical ones within the window are counted and dropped, and the next one after the
window says how many were suppressed. Distinct messages are never held back.
"""

from __future__ import annotations

import logging
import time

WINDOW_S = 30.0
_MAX_KEYS = 2048


class RepeatFilter(logging.Filter):
    def __init__(self, window: float = WINDOW_S) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple, list[float]] = {}  # key -> [window start, suppressed count]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        # an exception is known by its type and first line (SQLAlchemy appends the statement and parameters)
        first = str(exc).splitlines()[0][:200] if exc is not None and str(exc) else ""
        key = (record.name, record.levelno, record.getMessage(), type(exc).__name__ if exc else None, first)
        now = time.monotonic()
        ent = self._seen.get(key)
        if ent is None or now - ent[0] >= self.window:
            if ent is not None and ent[1]:
                record.msg = f"{record.getMessage()} (repeated {int(ent[1])} more times in the last {now - ent[0]:.0f}s)"
                record.args = None
            if len(self._seen) >= _MAX_KEYS:
                self._seen.clear()
            self._seen[key] = [now, 0]
            return True
        ent[1] += 1
        return False


def install(window: float = WINDOW_S) -> None:
    """Attach the filter to every handler of the root logger (where ``ketch up`` logs go)."""
    f = RepeatFilter(window)
    for h in logging.getLogger().handlers:
        if not any(isinstance(x, RepeatFilter) for x in h.filters):
            h.addFilter(f)
