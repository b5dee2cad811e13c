"""A warm Python interpreter that forks container processes: ``python -m ketch.kubelet.zygote MOD ...``.

Starting an interpreter and importing a framework costs far more than the work of a small pipeline task,
and that start-up is paid again for every Pod. This program imports the given modules once, then waits on
a Unix socket (its fd in ``KETCH_ZYGOTE_FD``) for requests from the kubelet: one message per container,
``{"argv": [python, "-m", module, ...], "env": {...}, "cwd": "..."}`` with the container's stdout and
stderr fds attached. It forks; the child becomes what ``python -m module args`` in that directory and
environment would have been (a session leader, its own stdin/stdout/stderr, ``sys.argv``, ``sys.path[0]``,
``PYTHONPATH``) and finishes as an interpreter finishes (atexit, non-daemon threads, flushing). The
parent answers ``{"pid": N}`` and, when a child ends, ``{"exit": N, "code": C}`` (negative: the signal),
so the kubelet sees the same pid and exit status that an exec'd process would give.

Only the standard library is imported before the preload list, and nothing here runs threads, so forking
is safe. When the kubelet's end of the socket closes (ketch stopped or was killed), the zygote exits and
its running children carry on, to be adopted by the next kubelet like any other process.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import sys

MAX_MESSAGE = 1 << 22


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def serve(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """The parent's loop. Returns only in a forked child, with the request it is to carry out."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C at the terminal of `ketch up` is ketch's to handle
    sock.send(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            readable, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
        if sock in readable:
            msg, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
            if not msg:
                return None  # the kubelet is gone
            req = json.loads(msg)
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.close(wake_r)
                os.close(wake_w)
                sock.close()
                return req, fds
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"pid": pid}).encode())
        _reap(sock)


def become(req: dict, fds: list[int]) -> str:
    """Turn this forked child into the requested ``python -m module`` process; returns the module."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in {null, *fds} - {0, 1, 2}:
        os.close(fd)
    env = req["env"]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(req["cwd"])
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    encoding = env.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=encoding, write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=encoding, errors="backslashreplace",
                                  line_buffering=True, write_through=unbuffered)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    argv = req["argv"]
    # As the interpreter does for -m: the working directory first on sys.path, then PYTHONPATH.
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[0:1] = [os.getcwd(), *extra]
    sys.argv = [argv[0], *argv[3:]]
    import importlib

    importlib.invalidate_caches()  # packages may have been installed since the zygote started
    return argv[2]


def main() -> int:
    sock = socket.socket(fileno=int(os.environ.pop("KETCH_ZYGOTE_FD")))
    for mod in sys.argv[1:]:
        try:
            __import__(mod)
        except BaseException as e:  # noqa: BLE001 - reported to the kubelet, which then execs as usual
            sock.send(json.dumps({"error": f"import {mod}: {type(e).__name__}: {e}"}).encode())
            return 1
    got = serve(sock)
    if got is None:
        return 0
    module = become(*got)
    import runpy

    sys.modules.pop(module, None)  # run afresh as __main__, as -m does, without runpy's warning
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
