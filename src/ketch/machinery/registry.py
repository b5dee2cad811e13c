"""The resource registry: which kinds the server serves, found by path, kind, short name or plural."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ketch.kinds.builtin import all_definitions
from ketch.kinds.definitions import ResourceDefinition


class Registry:
    def __init__(self) -> None:
        self._by_key: dict[str, ResourceDefinition] = {}
        self._lock = threading.RLock()
        self.generation = 0  # bumped on every change so discovery caches know to refresh
        self._listeners: list[Callable[[], None]] = []
        for rd in all_definitions():
            self.add(rd)

    def on_change(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    # Copy on write: readers on other threads (API writes run on writer threads) iterate ``_by_key``
    # without the lock, so a CRD registered meanwhile must not change the dict under them.
    def add(self, rd: ResourceDefinition) -> None:
        with self._lock:
            self._by_key = {**self._by_key, rd.key: rd}
            self.generation += 1
        for fn in self._listeners:
            fn()

    def remove(self, key: str) -> None:
        with self._lock:
            if key in self._by_key:
                self._by_key = {k: v for k, v in self._by_key.items() if k != key}
                self.generation += 1
        for fn in self._listeners:
            fn()

    def all(self) -> list[ResourceDefinition]:
        return list(self._by_key.values())

    def by_key(self, key: str) -> ResourceDefinition | None:
        return self._by_key.get(key)

    def lookup(self, group: str, version: str, plural: str) -> ResourceDefinition | None:
        rd = self._by_key.get(f"{group}/{plural}")
        if rd is None or rd.version(version) is None:
            return None
        return rd

    def by_kind(self, api_version: str, kind: str) -> ResourceDefinition | None:
        group, _, version = api_version.rpartition("/")
        for rd in self._by_key.values():
            if rd.group == group and rd.kind == kind and rd.version(version):
                return rd
        return None

    def kind_of(self, group: str, kind: str) -> ResourceDefinition | None:
        for rd in self._by_key.values():
            if rd.group == group and rd.kind == kind:
                return rd
        return None

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first."""
        out: dict[str, list[str]] = {}
        for rd in self._by_key.values():
            vs = out.setdefault(rd.group, [])
            for v in rd.versions:
                if v.served and v.name not in vs:
                    if v.storage:
                        vs.insert(0, v.name)
                    else:
                        vs.append(v.name)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceDefinition]:
        return [rd for rd in self._by_key.values() if rd.group == group and rd.version(version)]
