"""SQLAlchemy store: SQLite in WAL mode by default, PostgreSQL by URL.

Every write is one transaction that both changes ``objects`` and appends to ``changes`` (the log watches
replay from), so a write is all-or-nothing and nothing acknowledged is lost when the process is killed:
SQLite's WAL with synchronous=NORMAL survives a process crash (only an OS crash can drop the last commits).
The resourceVersion is a single global counter, as etcd's revision is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy import event

from ketch.store.base import Change, Gone, StoreConflict, StoreExists, StoreNotFound

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


def _dumps(obj: dict) -> str:
    return orjson.dumps(obj).decode()


def _label_rows(key: str, obj: dict) -> list[dict]:
    md = obj.get("metadata", {})
    ns, name = md.get("namespace", ""), md["name"]
    return [{"key": key, "namespace": ns, "name": name, "label": k, "value": str(v)} for k, v in (md.get("labels") or {}).items()]


def _owner_uids(obj: dict) -> list[str]:
    return [o["uid"] for o in (obj.get("metadata", {}).get("ownerReferences") or []) if o.get("uid")]


class SQLStore:
    """The default store. Thread-safe: writes are serialised by one lock (one writer, as SQLite wants)."""

    def __init__(self, url: str, history: int = 100_000) -> None:
        self.url = url
        self.history = history
        is_sqlite = url.startswith("sqlite")
        kwargs: dict = {}
        if is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = sa.create_engine(url, **kwargs)
        if is_sqlite:

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):  # noqa: ANN001
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=OFF")
                cur.close()

        backfill = not sa.inspect(self.engine).has_table("labels")
        _md.create_all(self.engine)
        if backfill:
            self._index_labels()
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

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, key: str, namespace: str, name: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(_GET, {"k": key, "ns": namespace, "n": name}).first()
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
        with self._lock:  # a consistent (items, rv) pair
            with self.engine.connect() as c:
                rows = c.execute(q).all()
            rv = self._rv
        return [orjson.loads(r[0]) for r in rows], rv

    def current_rv(self) -> int:
        return self._rv

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
        self._subscribers.append(fn)

    def _emit(self, ch: Change) -> None:
        for fn in self._subscribers:
            try:
                fn(ch)
            except Exception:  # a broken subscriber must never fail a committed write
                log.exception("store subscriber failed")

    def _log(self, c: sa.Connection, rv: int, key: str, obj: dict, typ: str, data: str) -> None:
        md = obj["metadata"]
        c.execute(_LOG, {"rv": rv, "key": key, "namespace": md.get("namespace", ""), "name": md["name"], "type": typ, "data": data})

    def _index(self, c: sa.Connection, key: str, obj: dict, replace: bool) -> None:
        """Keep the owner and label indexes of one object in step with it, in the write's transaction."""
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        if replace:
            c.execute(_LABELS_DEL, {"k": key, "ns": ns, "n": name})
            c.execute(_OWNERS_DEL, {"k": key, "ns": ns, "n": name})
        rows = _label_rows(key, obj)
        if rows:
            c.execute(labels.insert(), rows)
        uids = _owner_uids(obj)
        if uids:
            c.execute(
                owners.insert(),
                [{"owner_uid": u, "key": key, "namespace": ns, "name": name} for u in dict.fromkeys(uids)],
            )

    def create(self, key: str, obj: dict) -> dict:
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        with self._lock:
            rv = self._rv + 1
            md["resourceVersion"] = str(rv)
            data = _dumps(obj)
            try:
                with self.engine.begin() as c:
                    c.execute(_INSERT, {"key": key, "namespace": ns, "name": name, "uid": md["uid"], "rv": rv, "data": data})
                    self._index(c, key, obj, replace=False)
                    self._log(c, rv, key, obj, "ADDED", data)
            except sa.exc.IntegrityError as e:
                raise StoreExists(f"{key} {ns}/{name}") from e
            self._rv = rv
            self._emit(Change(rv, key, ns, name, "ADDED", obj))
            self._after_write()
        return obj

    def update(self, key: str, obj: dict, expected_rv: int | None = None, reindex: bool = True) -> dict:
        """Replace an object; ``reindex=False`` when the caller knows its labels and owners did not change
        (a status write), which spares rewriting the label and owner index rows."""
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        with self._lock:
            rv = self._rv + 1
            md["resourceVersion"] = str(rv)
            data = _dumps(obj)
            with self.engine.begin() as c:
                where = {"k": key, "ns": ns, "n": name}
                if expected_rv is not None:
                    res = c.execute(_UPDATE_IF, {**where, "want_rv": expected_rv, "new_rv": rv, "new_data": data})
                else:
                    res = c.execute(_UPDATE, {**where, "new_rv": rv, "new_data": data})
                if res.rowcount != 1:
                    exists = c.execute(_GET_RV, where).first()
                    if exists is None:
                        raise StoreNotFound(f"{key} {ns}/{name}")
                    raise StoreConflict(f"{key} {ns}/{name}")
                if reindex:
                    self._index(c, key, obj, replace=True)
                self._log(c, rv, key, obj, "MODIFIED", data)
            self._rv = rv
            self._emit(Change(rv, key, ns, name, "MODIFIED", obj))
            self._after_write()
        return obj

    def delete(self, key: str, namespace: str, name: str, expected_rv: int | None = None) -> dict:
        with self._lock:
            with self.engine.begin() as c:
                where = {"k": key, "ns": namespace, "n": name}
                row = c.execute(_GET_RV_DATA, where).first()
                if row is None:
                    raise StoreNotFound(f"{key} {namespace}/{name}")
                if expected_rv is not None and row[0] != expected_rv:
                    raise StoreConflict(f"{key} {namespace}/{name}")
                obj = orjson.loads(row[1])
                rv = self._rv + 1
                obj["metadata"]["resourceVersion"] = str(rv)
                c.execute(_DELETE, where)
                c.execute(_OWNERS_DEL, where)
                c.execute(_LABELS_DEL, where)
                self._log(c, rv, key, obj, "DELETED", _dumps(obj))
            self._rv = rv
            self._emit(Change(rv, key, namespace, name, "DELETED", obj))
            self._after_write()
        return obj

    def _after_write(self) -> None:
        self._writes_since_compact += 1
        if self._writes_since_compact >= min(1000, max(self.history, 1)):
            self._writes_since_compact = 0
            self.compact()

    def probe_write(self) -> None:
        """Commit one tiny write (a heartbeat row in ``meta``): raises if the store cannot be written."""
        with self._lock, self.engine.begin() as c:
            v = str(time.time())
            if c.execute(meta.update().where(meta.c.k == "probe").values(v=v)).rowcount == 0:
                c.execute(meta.insert().values(k="probe", v=v))

    def compact(self, keep: int | None = None) -> None:
        """Drop change-log entries older than the retained history; watches from before then get 410."""
        keep = self.history if keep is None else keep
        upto = self._rv - keep
        if upto <= self._compacted:
            return
        with self._lock, self.engine.begin() as c:
            c.execute(changes.delete().where(changes.c.rv <= upto))
            if c.execute(sa.select(meta.c.k).where(meta.c.k == "compacted")).first():
                c.execute(meta.update().where(meta.c.k == "compacted").values(v=str(upto)))
            else:
                c.execute(meta.insert().values(k="compacted", v=str(upto)))
            self._compacted = upto

    def close(self) -> None:
        self.engine.dispose()


def open_store(url_or_path: str | Path, history: int = 100_000) -> SQLStore:
    """Open the store named by a database URL, or a SQLite file path."""
    s = str(url_or_path)
    if "://" not in s:
        Path(s).parent.mkdir(parents=True, exist_ok=True)
        s = f"sqlite:///{s}"
    elif s.startswith("postgresql://"):
        s = "postgresql+psycopg://" + s[len("postgresql://") :]
    return SQLStore(s, history=history)
