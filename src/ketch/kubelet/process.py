"""Processes: start one in its own session, recognise it again later (pid + start time), end its tree.

Each container is a session leader (``setsid``), so its process group holds what it forks; ending a
container signals that group and any descendant psutil still finds outside it (a child that called
setsid itself), so nothing outlives its Pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import psutil


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(pid: int, started: float | None) -> bool:
    """True when ``pid`` is still the process we started (not a recycled pid, not a zombie)."""
    try:
        p = psutil.Process(pid)
        if started is not None and abs(p.create_time() - started) > 0.05:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def signal_tree(pid: int, sig: int, procs: list[psutil.Process] | None = None) -> None:
    procs = tree(pid) if procs is None else procs
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.send_signal(sig)


async def terminate(pid: int, started: float | None, grace: float, exited: asyncio.Event | None = None) -> None:
    """SIGTERM the tree, wait up to ``grace`` seconds, then SIGKILL whatever is left of it."""
    if not alive(pid, started):
        signal_tree(pid, signal.SIGKILL)
        return
    procs = tree(pid)
    signal_tree(pid, signal.SIGTERM, procs)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(grace, 0)
    while loop.time() < deadline:
        if not any(_running(p) for p in procs):
            break
        if exited is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), 0.05)
        else:
            await asyncio.sleep(0.05)
    procs = [p for p in procs if _running(p)] + [p for p in tree(pid) if p not in procs]
    if procs:
        signal_tree(pid, signal.SIGKILL, procs)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process tree so far, counting descendants that were already
    waited for (their time is in their parent's ``children_*``); what the metrics sampler differentiates."""
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total
