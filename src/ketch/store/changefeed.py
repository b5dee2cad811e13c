"""The change feed: several ketch processes sharing one PostgreSQL database serve one cluster.

Each process's store tells its subscribers (the WatchHub that feeds every watch and informer, the RBAC
cache, CRD registration) about the writes it commits itself. With more than one process on the database
that is not enough: a watch on ketch B must see what was written through ketch A. This module closes the
gap with the change log every write already appends to (``changes``, one row per resourceVersion):

- **One resourceVersion sequence across processes.** Inside each write transaction the writer takes a
  transaction-level advisory lock (``pg_advisory_xact_lock``, held until commit) and reads the newest
  resourceVersion from the database, so resourceVersions stay one gapless counter however many processes
  write, and they become visible in resourceVersion order (no row with a lower one can commit later).
- **A nudge on commit.** The same transaction runs ``pg_notify('ketch_changes', '<rv>')``; PostgreSQL
  delivers it to every listener when, and only if, the transaction commits.
- **One ordered path to the subscribers.** Every change reaches this process's subscribers through
  ``offer`` (its own writes, right after their commit) or ``poll`` (the listener thread, woken by the
  notification or, as a safety net, once a second), and both publish strictly in resourceVersion order
  past a high-water mark: whatever is missing before a change is read from the change log first, and
  nothing at or below the mark is published again, so this process's own writes are never published twice
  whichever path sees them first.

SQLite stays single-process and has no feed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ketch.store.base import Change, Gone

log = logging.getLogger(__name__)

CHANNEL = "ketch_changes"
# The advisory lock every writer of a ketch database takes (any constant: it names the lock, "ketch" in hex).
WRITE_LOCK = 0x6B65746368
POLL_SECONDS = 1.0  # how often the listener looks for changes without a notification (lost connection, ...)


class FedStore(Protocol):
    """What the feed needs of the store it serves (SQLStore)."""

    def changes_since(self, rv: int, key: str | None = None) -> list[Change]: ...
    def current_rv(self) -> int: ...
    def advance_rv(self, rv: int) -> None: ...


class ChangeFeed:
    """Publishes every committed change of a shared PostgreSQL database to one process's subscribers, in
    resourceVersion order, once each. ``deliver`` is the store's fan-out to its subscribers."""

    def __init__(self, store: FedStore, deliver: Callable[[Change], None], dsn: str) -> None:
        self.store = store
        self.deliver = deliver
        self.dsn = dsn  # a libpq connection string, for the listener's own connection
        self.published = store.current_rv()  # every change up to here has been delivered
        self.remote = 0  # changes delivered that another process wrote
        # The resourceVersions of this process's own writes that are committed, or being committed, and not
        # yet published, as (first, last] ranges: the listener leaves them to the writer's offer, and a row
        # the log shows in one of them is this process's own, not another's.
        self._own: list[tuple[int, int]] = []
        self._polled = 0.0  # when the listener last read the log (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- inside each write transaction (called by the store with a DB-API cursor of that transaction) --------

    @staticmethod
    def begin_write(cur: Any) -> int:
        """Serialise this transaction with every other writer of the database, then return the newest
        resourceVersion committed so far (this write's is one more)."""
        cur.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        cur.execute(
            "SELECT GREATEST(COALESCE((SELECT max(rv) FROM changes), 0),"
            " COALESCE((SELECT CAST(v AS BIGINT) FROM meta WHERE k = 'compacted'), 0))"
        )
        return int(cur.fetchone()[0])

    def end_write(self, cur: Any, first: int, rv: int) -> None:
        """Tell every listener, once this transaction commits, that the log has grown to ``rv``; the
        resourceVersions ``(first, rv]`` are this process's own."""
        cur.execute(f"SELECT pg_notify('{CHANNEL}', '{int(rv)}')")
        with self._lock:
            self._own.append((first, rv))

    def write_failed(self, first: int, rv: int) -> None:
        """The transaction that ``end_write`` announced did not commit: its resourceVersions are nobody's,
        and a notification past them is another process's again (not left to an offer that never comes)."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._own.remove((first, rv))

    def _is_own(self, rv: int) -> bool:
        return any(a < rv <= b for a, b in self._own)

    def _local_top(self) -> int:
        return max((b for _a, b in self._own), default=0)

    # -- publishing, in order ---------------------------------------------------------------------------------

    def offer(self, ch: Change) -> None:
        """A change this process just committed: publish what precedes it (other processes' writes not
        yet seen), then it, unless the listener already has."""
        with self._lock:
            if ch.rv <= self.published:
                return
            if ch.rv > self.published + 1:
                self._catch_up()
                if ch.rv <= self.published:
                    return
            self._deliver(ch)

    def poll(self) -> int:
        """Publish every change in the log past the high-water mark; returns how many."""
        self._polled = time.monotonic()
        with self._lock:
            n = self._catch_up()
            top = self.published
        if n:
            self.store.advance_rv(top)  # lists and current_rv() answer with what this process has seen
        return n

    def _catch_up(self) -> int:
        try:
            rows = self.store.changes_since(self.published)
        except Gone as g:
            # Compacted past what this process has published: those changes are gone for good. Watchers
            # that missed them would have to re-list (as after a 410); say so and go on from the oldest.
            log.error("change feed fell behind the change log (published %d, compacted to %d); some watch events were lost",
                      self.published, g.oldest)
            self.published = g.oldest
            rows = self.store.changes_since(self.published)
        n = 0
        for ch in rows:
            if ch.rv > self.published:
                if not self._is_own(ch.rv):
                    self.remote += 1
                self._deliver(ch)
                n += 1
        return n

    def _deliver(self, ch: Change) -> None:
        self.published = ch.rv
        if self._own and self._own[0][1] <= ch.rv:
            self._own = [r for r in self._own if r[1] > ch.rv]
        self.deliver(ch)

    # -- the listener ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen for other processes' commits on a thread of its own (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="ketch-changefeed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(POLL_SECONDS + 2)

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.poll()  # what was committed before LISTEN took effect
                    while not self._stop.is_set():
                        got = None
                        for n in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
                            got = _rv_of(n.payload)
                        # Read the log for a commit past what this process has seen or is committing
                        # itself (its own writer offers that one, reading whatever precedes it first),
                        # and at least once a second whatever comes (the safety net: a lost notification,
                        # a commit of this process's that failed after telling).
                        if got is None or got > max(self.published, self._local_top()) or time.monotonic() - self._polled > POLL_SECONDS:
                            self.poll()
            except Exception:  # the database restarted or the connection dropped: connect again
                if self._stop.is_set():
                    return
                log.warning("change feed: listening on PostgreSQL failed; retrying", exc_info=True)
                self._stop.wait(1.0)


def _rv_of(payload: str | None) -> int:
    try:
        return int(payload or 0)
    except ValueError:
        return 0
