"""The store: one source of truth for every object, with a resourceVersion per write and a change log
that watches replay from. ``open_store`` is the one seam for databases (SQLite by default, PostgreSQL by URL).
"""

from ketch.store.base import Change, Gone, Store, StoreConflict, StoreExists, StoreNotFound
from ketch.store.sql import SQLStore, open_store

__all__ = [
    "Change",
    "Gone",
    "SQLStore",
    "Store",
    "StoreConflict",
    "StoreExists",
    "StoreNotFound",
    "open_store",
]
