"""The storage interface every backend implements, and the errors it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class StoreExists(Exception):
    pass


class StoreNotFound(Exception):
    pass


class StoreConflict(Exception):
    """The caller's resourceVersion precondition no longer holds."""


class Gone(Exception):
    """The requested resourceVersion has been compacted out of the change log."""

    def __init__(self, oldest: int) -> None:
        super().__init__(f"too old resource version (oldest retained is {oldest})")
        self.oldest = oldest


@dataclass(frozen=True)
class Change:
    rv: int
    key: str  # "<group>/<plural>"
    namespace: str
    name: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict


class Store(Protocol):
    def get(self, key: str, namespace: str, name: str) -> dict | None: ...
    def list(self, key: str, namespace: str | None = None, label_equals: dict[str, str] | None = None) -> tuple[list[dict], int]: ...
    def create(self, key: str, obj: dict) -> dict: ...
    async def create_async(self, key: str, obj: dict) -> dict: ...  # create, awaited on an event loop
    def update(self, key: str, obj: dict, expected_rv: int | None = None, reindex: bool = True) -> dict: ...
    def delete(self, key: str, namespace: str, name: str, expected_rv: int | None = None) -> dict: ...
    def changes_since(self, rv: int, key: str | None = None) -> list[Change]: ...
    def current_rv(self) -> int: ...
    def find_by_uid(self, uid: str) -> tuple[str, dict] | None: ...
    def dependents_of(self, uid: str) -> list[tuple[str, dict]]: ...
    def subscribe(self, fn: Callable[[Change], None]) -> None: ...
    def probe_write(self) -> None: ...  # commit a trivial write; raise if the store cannot be written
    def close(self) -> None: ...
