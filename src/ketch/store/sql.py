"""SQLAlchemy store: SQLite in WAL mode by default, PostgreSQL by URL.

Every write both changes ``objects`` and appends to ``changes`` (the log watches replay from) inside one
SAVEPOINT of a committed transaction, so a write is all-or-nothing; writes are group-committed by one
committer thread (many writers' changes in one transaction) and each is acknowledged only after that
commit, so nothing acknowledged is lost when the process is killed: SQLite's WAL with synchronous=NORMAL
survives a process crash (only an OS crash can drop the last commits). The resourceVersion is a single
global counter, as etcd's revision is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event

from ketch.store.base import Change, Gone, StoreConflict, StoreExists, StoreNotFound
from ketch.store.changefeed import ChangeFeed

log = logging.getLogger(__name__)

_md = sa.MetaData()


def _object_key() -> list[sa.Column]:
    """The columns naming one object, shared by the objects table and the indexes that point into it."""
    return [sa.Column(n, sa.String(255), primary_key=True) for n in ("key", "namespace", "name")]


objects = sa.Table(
    "objects",
    _md,
    *_object_key(),
    sa.Column("uid", sa.String(64), nullable=False, index=True),
    sa.Column("rv", sa.BigInteger, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
owners = sa.Table(
    "owners",
    _md,
    sa.Column("owner_uid", sa.String(64), primary_key=True),
    *_object_key(),
)
labels = sa.Table(
    "labels",
    _md,
    *_object_key(),
    sa.Column("label", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index("ix_labels_key_label_value", "key", "label", "value"),
)
changes = sa.Table(
    "changes",
    _md,
    sa.Column("rv", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("ix_changes_key_rv", "key", "rv"),
)
meta = sa.Table(
    "meta",
    _md,
    sa.Column("k", sa.String(64), primary_key=True),
    sa.Column("v", sa.String(255), nullable=False),
)


_B = sa.bindparam
# Statements built once: building SQLAlchemy expressions per call cost more than the SQL itself.
_WHERE_ONE = (objects.c.key == _B("k"), objects.c.namespace == _B("ns"), objects.c.name == _B("n"))
_GET = sa.select(objects.c.data).where(*_WHERE_ONE)
_GET_RV_DATA = sa.select(objects.c.rv, objects.c.data).where(*_WHERE_ONE)
_GET_RV = sa.select(objects.c.rv).where(*_WHERE_ONE)
_INSERT = objects.insert()
_UPDATE = objects.update().where(*_WHERE_ONE).values(rv=_B("new_rv"), data=_B("new_data"))
_UPDATE_IF = objects.update().where(*_WHERE_ONE, objects.c.rv == _B("want_rv")).values(rv=_B("new_rv"), data=_B("new_data"))
_DELETE = objects.delete().where(*_WHERE_ONE)
_LOG = changes.insert()
_OWNERS_DEL = owners.delete().where(owners.c.key == _B("k"), owners.c.namespace == _B("ns"), owners.c.name == _B("n"))
_LABELS_DEL = labels.delete().where(labels.c.key == _B("k"), labels.c.namespace == _B("ns"), labels.c.name == _B("n"))
_META_SET = meta.update().where(meta.c.k == _B("mk")).values(v=_B("mv"))
_COMPACT = changes.delete().where(changes.c.rv <= _B("upto"))
# The committer's statements, as (statement, the insert's columns): compiled once per database into SQL
# text with named parameters and run on the DB-API cursor, since SQLAlchemy's per-statement execution
# machinery cost more than SQLite itself (a create is five statements; see docs/benchmarks.md).
_WRITE_STATEMENTS: dict[str, tuple[sa.sql.ClauseElement, list[str] | None]] = {
    "insert": (_INSERT, ["key", "namespace", "name", "uid", "rv", "data"]),
    "update": (_UPDATE, None),
    "update_if": (_UPDATE_IF, None),
    "delete": (_DELETE, None),
    "get_rv": (_GET_RV, None),
    "get_rv_data": (_GET_RV_DATA, None),
    "log": (_LOG, ["rv", "key", "namespace", "name", "type", "data"]),
    "owners_del": (_OWNERS_DEL, None),
    "labels_del": (_LABELS_DEL, None),
    "labels_add": (labels.insert(), ["key", "namespace", "name", "label", "value"]),
    "owners_add": (owners.insert(), ["owner_uid", "key", "namespace", "name"]),
    "meta_set": (_META_SET, None),
    "meta_add": (meta.insert(), ["k", "v"]),
    "compact": (_COMPACT, None),
}


def _dumps(obj: dict) -> str:
    return orjson.dumps(obj).decode()


def _label_rows(key: str, obj: dict) -> list[dict]:
    md = obj.get("metadata", {})
    ns, name = md.get("namespace", ""), md["name"]
    return [{"key": key, "namespace": ns, "name": name, "label": k, "value": str(v)} for k, v in (md.get("labels") or {}).items()]


def _owner_uids(obj: dict) -> list[str]:
    return [o["uid"] for o in (obj.get("metadata", {}).get("ownerReferences") or []) if o.get("uid")]


SETUP_LOCK = 0x6B65746369  # the advisory lock a process holds while it sets a shared database up (setup_lock)
MAX_BATCH = 256  # writes per group commit: bounds one transaction's size (and a failed commit's blast radius)


class _Write:
    """One queued write: ``run(cursor, rv)`` does its statements inside its own SAVEPOINT, given the
    resourceVersion it would take, and returns (the Change it makes or None, the caller's result);
    ``on_commit`` runs once the batch holding it has committed. ``wake`` is set when the write is settled
    (``done``), or when its writer is asked to lead the next commit."""

    __slots__ = ("done", "error", "notify", "on_commit", "result", "run", "wake")

    def __init__(self, run: Callable[[Any, int], tuple[Change | None, Any]],
                 on_commit: Callable[[Any], None] | None = None) -> None:
        self.run = run
        self.on_commit = on_commit
        self.wake = threading.Event()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.notify: Callable[[], None] | None = None  # an async writer's: answer its event loop

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
        self.wake.set()
        if self.notify is not None:
            self.notify()


def _resolve(fut: asyncio.Future, w: _Write) -> None:
    if fut.cancelled():
        return
    if w.error is not None:
        fut.set_exception(w.error)
    else:
        fut.set_result(w.result)


class SQLStore:
    """The default store. Thread-safe, with group commit: every write joins one queue, and one writer at
    a time (the committer: whoever finds the commit free, or is handed it) takes every write waiting,
    runs each in its own SAVEPOINT inside one transaction (a write that fails, a 409 or a name taken,
    fails alone), commits once, publishes the batch's changes in resourceVersion order, and only then
    answers each writer. Under load many writers share one commit; alone, a write commits at once on its
    own thread (no batching timer, no hand-off). Reads use their own pooled connections and never wait
    for a commit (SQLite WAL readers see the last one)."""

    def __init__(self, url: str, history: int = 100_000) -> None:
        self.url = url
        self.history = history
        self.is_sqlite = is_sqlite = url.startswith("sqlite")
        kwargs: dict = {}
        wkwargs: dict = {"pool_size": 1, "max_overflow": 0}
        if is_sqlite:
            kwargs["connect_args"] = wkwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs.update(pool_size=8, max_overflow=32)  # readers run concurrently, each on its own connection
            kwargs["paramstyle"] = wkwargs["paramstyle"] = "named"  # hot paths pass dicts to DB-API cursors
        self.engine = sa.create_engine(url, **kwargs)
        # The committer's own engine: one connection, whose transactions it begins and ends itself.
        self._wengine = sa.create_engine(url, **wkwargs)
        if is_sqlite:
            for eng in (self.engine, self._wengine):
                event.listen(eng, "connect", _sqlite_pragmas)
            # pysqlite's implicit transactions break SAVEPOINT: the committer begins its own instead.
            event.listen(self._wengine, "connect", _sqlite_manual_transactions)
        d = self._wengine.dialect
        self._sql = {name: str(stmt.compile(dialect=d, column_keys=cols)) for name, (stmt, cols) in _WRITE_STATEMENTS.items()}
        self._integrity_error: type[Exception] = d.loaded_dbapi.IntegrityError
        self._get_sql = str(_GET.compile(dialect=self.engine.dialect))

        with self.setup_lock():  # another ketch starting on the same new database waits, then finds it made
            backfill = not sa.inspect(self.engine).has_table("labels")
            _md.create_all(self.engine)
            if backfill:
                self._index_labels()
        # Held by the committer while it commits and moves ``_rv``, and by ``list`` while it reads, so a
        # list's (items, resourceVersion) pair is consistent.
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[Change], None]] = []
        with self.engine.connect() as c:
            top = max(
                c.execute(sa.select(sa.func.max(changes.c.rv))).scalar() or 0,
                c.execute(sa.select(sa.func.max(objects.c.rv))).scalar() or 0,
            )
            row = c.execute(sa.select(meta.c.v).where(meta.c.k == "compacted")).first()
            self._compacted = int(row[0]) if row else 0
        self._rv = max(top, self._compacted)
        self._writes_since_compact = 0
        # Set by open_store on PostgreSQL (store/changefeed.py): other ketch processes may share the database.
        self.feed: ChangeFeed | None = None
        self.batches = 0  # group commits so far, and the writes they carried: what the benchmark reports
        self.batched_writes = 0
        self._wconn: Any = None  # the committer's DB-API connection (from its engine's pool)
        self._pending: collections.deque[_Write] = collections.deque()  # writes waiting for a commit
        self._commit_lock = threading.Lock()  # held by the committer of the moment
        self._committing = threading.local()  # set on the committer's thread while it commits
        self._closed = False
        # Commits for writers on an event loop (which must not block) are made by this thread; ``_kick``
        # wakes it.
        self._kick = threading.Event()
        self._async_inflight = 0  # async writes awaiting a commit (touched on event loop threads only)
        self._async_committer = threading.Thread(target=self._async_commit_loop, name="ketch-store-committer", daemon=True)
        self._async_committer.start()

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Held while a process makes what every process of the database needs once (the schema, then
        the default namespaces, CRDs and roles): on PostgreSQL a session advisory lock, so several ketch
        processes started together on a new database make them one after another, the later ones finding
        them there rather than failing on each other's half-made tables or objects. SQLite has one process."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as c:
            c.execute(sa.text(f"SELECT pg_advisory_lock({SETUP_LOCK})"))
            c.commit()
            try:
                yield
            finally:
                c.execute(sa.text(f"SELECT pg_advisory_unlock({SETUP_LOCK})"))
                c.commit()

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, key: str, namespace: str, name: str) -> dict | None:
        # The hottest read (every write checks its namespace): on the pooled DB-API connection directly,
        # as the committer writes, sparing SQLAlchemy's per-statement machinery.
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(self._get_sql, {"k": key, "ns": namespace, "n": name})
            row = cur.fetchone()
            cur.close()
        finally:
            conn.close()  # back to the pool
        return orjson.loads(row[0]) if row else None

    def _index_labels(self) -> None:
        """Fill the label index for objects written before it existed (a store from an older ketch)."""
        with self.engine.begin() as c:
            rows = [r for key, data in c.execute(sa.select(objects.c.key, objects.c.data)).all() for r in _label_rows(key, orjson.loads(data))]
            if rows:
                c.execute(labels.insert(), rows)

    def list(self, key: str, namespace: str | None = None, label_equals: dict[str, str] | None = None) -> tuple[list[dict], int]:
        """Objects of one kind, optionally in one namespace and carrying every ``label_equals`` label with
        that value (answered from the label index, so a selective list does not read the whole kind)."""
        q = sa.select(objects.c.data).where(objects.c.key == key)
        if namespace:
            q = q.where(objects.c.namespace == namespace)
        for lk, lv in (label_equals or {}).items():
            q = q.where(sa.exists().where(
                labels.c.key == objects.c.key, labels.c.namespace == objects.c.namespace, labels.c.name == objects.c.name,
                labels.c.label == lk, labels.c.value == lv,
            ))
        q = q.order_by(objects.c.namespace, objects.c.name)
        with self.engine.connect() as c:
            with self._lock:  # no commit between the rv and the read: a consistent (items, rv) pair; the rv
                rv = self._rv  # first, as other processes (changefeed.py) commit without this lock
                rows = c.execute(q).all()
        return [orjson.loads(r[0]) for r in rows], rv

    def current_rv(self) -> int:
        return self._rv

    def advance_rv(self, rv: int) -> None:
        """Changes up to ``rv`` that other processes committed have been published here (changefeed.py)."""
        with self._lock:
            self._rv = max(self._rv, rv)

    def find_by_uid(self, uid: str) -> tuple[str, dict] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(objects.c.key, objects.c.data).where(objects.c.uid == uid)).first()
        return (row[0], orjson.loads(row[1])) if row else None

    def dependents_of(self, uid: str) -> list[tuple[str, dict]]:
        q = sa.select(objects.c.key, objects.c.data).join(
            owners,
            sa.and_(
                owners.c.key == objects.c.key,
                owners.c.namespace == objects.c.namespace,
                owners.c.name == objects.c.name,
            ),
        ).where(owners.c.owner_uid == uid)
        with self.engine.connect() as c:
            return [(r[0], orjson.loads(r[1])) for r in c.execute(q).all()]

    def all_with_owners(self) -> list[tuple[str, dict]]:
        """Every object that names an owner: what the garbage collector checks after a restart."""
        q = sa.select(objects.c.key, objects.c.data).where(
            sa.exists().where(
                owners.c.key == objects.c.key,
                owners.c.namespace == objects.c.namespace,
                owners.c.name == objects.c.name,
            )
        )
        with self.engine.connect() as c:
            return [(r[0], orjson.loads(r[1])) for r in c.execute(q).all()]

    def changes_since(self, rv: int, key: str | None = None) -> list[Change]:
        if rv < self._compacted:
            raise Gone(self._compacted)
        q = sa.select(changes).where(changes.c.rv > rv)
        if key:
            q = q.where(changes.c.key == key)
        q = q.order_by(changes.c.rv)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [Change(r.rv, r.key, r.namespace, r.name, r.type, orjson.loads(r.data)) for r in rows]

    # -- writes ------------------------------------------------------------------------------------------

    def subscribe(self, fn: Callable[[Change], None]) -> None:
        """Call ``fn`` with every committed change, in resourceVersion order, from the committer thread
        (before the write is acknowledged). ``fn`` must not write to the store: the committer would wait
        on itself."""
        self._subscribers.append(fn)

    def _emit(self, ch: Change) -> None:
        if self.feed is not None:  # in resourceVersion order with other processes' changes
            self.feed.offer(ch)
        else:
            self._deliver(ch)

    def _deliver(self, ch: Change) -> None:
        for fn in self._subscribers:
            try:
                fn(ch)
            except Exception:  # a broken subscriber must never fail a committed write
                log.exception("store subscriber failed")

    def _submit(self, w: _Write) -> Any:
        """Queue a write and return once it has committed (its result), or raise its own error.

        Leader/follower group commit: a writer that finds the commit lock free commits everything queued,
        its own write included; one that finds it taken waits, and is woken either settled or, when the
        committer leaves writes queued behind it, to commit the next batch itself."""
        if self._closed:
            raise RuntimeError("the store is closed")
        if getattr(self._committing, "active", False):
            raise RuntimeError("a store subscriber may not write to the store (the commit would wait on itself)")
        self._pending.append(w)
        while not w.done:
            if self._commit_lock.acquire(blocking=False):
                try:
                    self._committing.active = True
                    if not w.done:
                        batch = []
                        while self._pending and len(batch) < MAX_BATCH:
                            batch.append(self._pending.popleft())
                        if batch:
                            self._commit(batch)
                finally:
                    self._committing.active = False
                    self._commit_lock.release()
                    self._hand_on()
            else:
                w.wake.wait()
                w.wake.clear()
        if w.error is not None:
            raise w.error
        return w.result

    def _hand_on(self) -> None:
        """Whoever queued while a batch committed is waiting: hand the next commit to the first of them
        (or to the async committer, for a write from an event loop). A writer queued after this check
        finds the lock free itself."""
        if self._pending:
            with contextlib.suppress(IndexError):
                self._pending[0].wake.set()
            self._kick.set()

    async def submit_async(self, w: _Write) -> Any:
        """Queue a write from an event loop and await its commit without blocking the loop: the async
        committer thread commits it (with whatever else is queued) and answers through the loop."""
        if self._closed:
            raise RuntimeError("the store is closed")
        if self.is_sqlite and not self._async_inflight and not self._pending and self._commit_lock.acquire(blocking=False):
            # Idle SQLite: commit right here, as a lone blocking writer would: handing one write to a thread
            # and back costs two thread wake-ups, more than a WAL commit. (Under load the commit is awaited;
            # a PostgreSQL commit, a round trip and an fsync, is always awaited off the loop.)
            try:
                self._committing.active = True
                with contextlib.suppress(Exception):  # settled with the error already
                    self._commit([w])
            finally:
                self._committing.active = False
                self._commit_lock.release()
                self._hand_on()
            if w.error is not None:
                raise w.error
            return w.result
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        w.notify = lambda: loop.call_soon_threadsafe(_resolve, fut, w)
        self._async_inflight += 1
        try:
            self._pending.append(w)
            self._kick.set()
            return await fut
        finally:
            self._async_inflight -= 1

    def _async_commit_loop(self) -> None:
        while not self._closed:
            self._kick.wait()
            self._kick.clear()
            while self._pending and not self._closed:
                with self._commit_lock:
                    self._committing.active = True
                    try:
                        batch = []
                        while self._pending and len(batch) < MAX_BATCH:
                            batch.append(self._pending.popleft())
                        if batch:
                            with contextlib.suppress(Exception):  # settled with the error already
                                self._commit(batch)
                    finally:
                        self._committing.active = False
                with contextlib.suppress(IndexError):
                    self._pending[0].wake.set()  # a sync writer queued meanwhile may lead the next one

    def _commit(self, batch: list[_Write]) -> None:
        try:
            self._run_batch(batch)
        except BaseException as e:  # never leave a writer waiting, whatever went wrong
            log.exception("store commit failed")
            for w in batch:
                if not w.done:
                    w.settle(error=e)
            raise

    def _run_batch(self, batch: list[_Write]) -> None:
        rv = self._rv
        done: list[tuple[_Write, Change | None, Any, BaseException | None]] = []
        try:
            if self._wconn is None:
                self._wconn = self._wengine.raw_connection()
            conn = self._wconn
            cur = conn.cursor()
            try:
                if self.is_sqlite:
                    cur.execute("BEGIN IMMEDIATE")  # the write lock now, not half-way through the batch
                elif self.feed is not None:  # the database's write lock, and its newest rv whoever wrote it
                    rv = max(rv, self.feed.begin_write(cur))
                first = rv
                for w in batch:
                    cur.execute("SAVEPOINT w")
                    try:
                        ch, res = w.run(cur, rv + 1)
                    except Exception as e:  # this write's own failure: undo its statements alone
                        cur.execute("ROLLBACK TO SAVEPOINT w")
                        cur.execute("RELEASE SAVEPOINT w")
                        done.append((w, None, None, e))
                        continue
                    cur.execute("RELEASE SAVEPOINT w")
                    if ch is not None:
                        rv = ch.rv
                    done.append((w, ch, res, None))
                announced = self.feed is not None and rv > first
                if announced:
                    self.feed.end_write(cur, first, rv)  # listeners are told on commit
                try:
                    with self._lock:
                        conn.commit()
                        self._rv = rv
                except BaseException:
                    if announced:
                        self.feed.write_failed(first, rv)
                    raise
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
        except Exception as e:  # the batch did not commit: no write in it happened
            log.warning("store commit failed: %s", e)
            if self._wconn is not None:  # start the next batch on a fresh connection
                with contextlib.suppress(Exception):
                    self._wconn.invalidate()
                self._wconn = None
            own = {id(w): err for w, _ch, _res, err in done if err is not None}
            for w in batch:
                w.settle(error=own.get(id(w)) or e)
            return
        self.batches += 1
        self.batched_writes += len(batch)
        n = 0
        for w, ch, res, err in done:
            if err is None:
                if ch is not None:
                    n += 1
                    self._emit(ch)
                if w.on_commit is not None:
                    try:
                        w.on_commit(res)
                    except Exception:
                        log.exception("store post-commit step failed")
        for w, _ch, res, err in done:
            w.settle(res, err)
        self._writes_since_compact += n
        if n and self._writes_since_compact >= min(1000, max(self.history, 1)):
            self._writes_since_compact = 0
            self._run_batch([self._compaction(self.history)])

    def _log(self, cur: Any, rv: int, key: str, obj: dict, typ: str, data: str) -> None:
        md = obj["metadata"]
        cur.execute(self._sql["log"], {"rv": rv, "key": key, "namespace": md.get("namespace", ""), "name": md["name"], "type": typ, "data": data})

    def _index(self, cur: Any, key: str, obj: dict, replace: bool) -> None:
        """Keep the owner and label indexes of one object in step with it, in the write's transaction."""
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        if replace:
            cur.execute(self._sql["labels_del"], {"k": key, "ns": ns, "n": name})
            cur.execute(self._sql["owners_del"], {"k": key, "ns": ns, "n": name})
        rows = _label_rows(key, obj)
        if rows:
            cur.executemany(self._sql["labels_add"], rows)
        uids = _owner_uids(obj)
        if uids:
            cur.executemany(
                self._sql["owners_add"],
                [{"owner_uid": u, "key": key, "namespace": ns, "name": name} for u in dict.fromkeys(uids)],
            )

    def create(self, key: str, obj: dict) -> dict:
        return self._submit(self._create_write(key, obj))

    async def create_async(self, key: str, obj: dict) -> dict:
        """``create`` for a caller on an event loop: awaits the commit without blocking the loop."""
        return await self.submit_async(self._create_write(key, obj))

    def _create_write(self, key: str, obj: dict) -> _Write:
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]

        def run(cur: Any, rv: int) -> tuple[Change, dict]:
            md["resourceVersion"] = str(rv)
            data = _dumps(obj)
            try:
                cur.execute(self._sql["insert"], {"key": key, "namespace": ns, "name": name, "uid": md["uid"], "rv": rv, "data": data})
            except self._integrity_error as e:
                raise StoreExists(f"{key} {ns}/{name}") from e
            self._index(cur, key, obj, replace=False)
            self._log(cur, rv, key, obj, "ADDED", data)
            return Change(rv, key, ns, name, "ADDED", obj), obj

        return _Write(run)

    def update(self, key: str, obj: dict, expected_rv: int | None = None, reindex: bool = True) -> dict:
        """Replace an object; ``reindex=False`` when the caller knows its labels and owners did not change
        (a status write), which spares rewriting the label and owner index rows."""
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]

        def run(cur: Any, rv: int) -> tuple[Change, dict]:
            md["resourceVersion"] = str(rv)
            data = _dumps(obj)
            where = {"k": key, "ns": ns, "n": name}
            if expected_rv is not None:
                cur.execute(self._sql["update_if"], {**where, "want_rv": expected_rv, "new_rv": rv, "new_data": data})
            else:
                cur.execute(self._sql["update"], {**where, "new_rv": rv, "new_data": data})
            if cur.rowcount != 1:
                cur.execute(self._sql["get_rv"], where)
                if cur.fetchone() is None:
                    raise StoreNotFound(f"{key} {ns}/{name}")
                raise StoreConflict(f"{key} {ns}/{name}")
            if reindex:
                self._index(cur, key, obj, replace=True)
            self._log(cur, rv, key, obj, "MODIFIED", data)
            return Change(rv, key, ns, name, "MODIFIED", obj), obj

        return self._submit(_Write(run))

    def delete(self, key: str, namespace: str, name: str, expected_rv: int | None = None) -> dict:
        def run(cur: Any, rv: int) -> tuple[Change, dict]:
            where = {"k": key, "ns": namespace, "n": name}
            cur.execute(self._sql["get_rv_data"], where)
            row = cur.fetchone()
            if row is None:
                raise StoreNotFound(f"{key} {namespace}/{name}")
            if expected_rv is not None and row[0] != expected_rv:
                raise StoreConflict(f"{key} {namespace}/{name}")
            obj = orjson.loads(row[1])
            obj["metadata"]["resourceVersion"] = str(rv)
            cur.execute(self._sql["delete"], where)
            cur.execute(self._sql["owners_del"], where)
            cur.execute(self._sql["labels_del"], where)
            self._log(cur, rv, key, obj, "DELETED", _dumps(obj))
            return Change(rv, key, namespace, name, "DELETED", obj), obj

        return self._submit(_Write(run))

    def probe_write(self) -> None:
        """Commit one tiny write (a heartbeat row in ``meta``) through the committer: raises if the store
        cannot be written, and hangs (the caller's timeout) if the committer is stuck."""

        def run(cur: Any, rv: int) -> tuple[None, None]:
            self._set_meta(cur, "probe", str(time.time()))
            return None, None

        self._submit(_Write(run))

    def _set_meta(self, cur: Any, k: str, v: str) -> None:
        cur.execute(self._sql["meta_set"], {"mk": k, "mv": v})
        if cur.rowcount == 0:
            cur.execute(self._sql["meta_add"], {"k": k, "v": v})

    def _compaction(self, keep: int) -> _Write:
        def run(cur: Any, rv: int) -> tuple[None, int | None]:
            upto = (rv - 1) - keep  # rv - 1: the newest change written before this step in its batch
            if upto <= self._compacted:
                return None, None
            cur.execute(self._sql["compact"], {"upto": upto})
            self._set_meta(cur, "compacted", str(upto))
            return None, upto

        def committed(upto: int | None) -> None:
            if upto is not None:
                self._compacted = upto

        return _Write(run, committed)

    def compact(self, keep: int | None = None) -> None:
        """Drop change-log entries older than the retained history; watches from before then get 410."""
        self._submit(self._compaction(self.history if keep is None else keep))

    def close(self) -> None:
        """Commit what is queued, stop the committer, and close every connection."""
        if self.feed is not None:
            self.feed.stop()
        self._closed = True
        self._kick.set()
        with self._commit_lock:  # let the commit in progress finish; refuse what is still queued
            while self._pending:
                self._pending.popleft().settle(error=RuntimeError("the store is closed"))
        if self._wconn is not None:
            with contextlib.suppress(Exception):
                self._wconn.close()
            self._wconn = None
        self._wengine.dispose()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.close()


def _sqlite_manual_transactions(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the writer's BEGIN comes from its "begin" event


def open_store(url_or_path: str | Path, history: int = 100_000) -> SQLStore:
    """Open the store named by a database URL, or a SQLite file path."""
    s = str(url_or_path)
    if "://" not in s:
        Path(s).parent.mkdir(parents=True, exist_ok=True)
        s = f"sqlite:///{s}"
    elif s.startswith("postgresql://"):
        s = "postgresql+psycopg://" + s[len("postgresql://") :]
    store = SQLStore(s, history=history)
    if store.engine.dialect.name == "postgresql":  # other ketch processes may share it: changefeed.py
        dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        store.feed = ChangeFeed(store, store._deliver, dsn)
    return store
