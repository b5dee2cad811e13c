"""The controller runtime every component builds on: work queues, reconcile loops, component plumbing."""

from ketch.runtime.components import start_controllers
from ketch.runtime.controller import Controller, Key, Result, Watch, WorkQueue, key_of, owner_mapper

__all__ = ["Controller", "Key", "Result", "Watch", "WorkQueue", "key_of", "owner_mapper", "start_controllers"]
