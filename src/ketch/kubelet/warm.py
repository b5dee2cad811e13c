"""Warm starts: containers that run ``python -m module`` fork from an interpreter that has already
imported what they need (``zygote.py``), instead of starting one and importing it all again.

A Pod asks for it with the annotation ``kubelet.ketch.dev/preload: "mod1,mod2"`` (the pipelines controller
puts it on every task Pod). The kubelet keeps one zygote per distinct list, started on first use (a zygote
that failed to import its list, or died, is started again on next use). A container that does not fit
(another interpreter, other options than ``-m``, Python start-up variables that differ from the zygote's)
is exec'd as usual, as is every container when the zygote cannot be had. The forked process
is what the exec'd one would be: same pid semantics, session, environment, working directory, fds, exit
status, so the rest of the kubelet (probes, limits, termination, adoption after a restart) cannot tell.

A zygote is also the parent, hence the supervisor, of what it starts: it writes each container's exit
status to the pod's state directory and outlives ketch until its last child has ended (zygote.py). So
that exec'd containers have one too, the kubelet keeps a zygote with no modules (``supervisor``) through
which it execs every container that is not forked: a fork of a small process, no interpreter start per
container, and a kill -9 of ketch loses no exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

from ketch.kubelet import process
from ketch.kubelet.images import venv_of

log = logging.getLogger(__name__)
ANNOTATION = "kubelet.ketch.dev/preload"
# Start-up variables the zygote honours per child; any other PYTHON* variable must match the zygote's own.
_PER_CHILD = {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONIOENCODING"}


def startup_env(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The Python start-up variables of ``env`` that a zygote must share with a container it forks."""
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith("PYTHON") and k not in _PER_CHILD))


def preload_of(pod: dict) -> tuple[str, ...]:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION) or ""
    return tuple(m.strip() for m in raw.split(",") if m.strip())


class ExecFailed(Exception):
    """The supervisor forked, but the exec of the container's program failed (the message says why)."""


class Zygote:
    """One warm interpreter and the asyncio side of its socket."""

    def __init__(self, modules: tuple[str, ...], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.modules = modules
        self.log_path = log_path
        self.env = dict(os.environ) if env is None else env
        self.ready = asyncio.get_running_loop().create_future()
        self.dead = False
        self.error: str | None = None  # the preload list failed to import: do not try it again
        self._replies: deque[asyncio.Future[dict]] = deque()
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._lock = asyncio.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        ours.setblocking(False)
        self.sock = ours
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ketch.kubelet.zygote", *modules], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env={**self.env, "KETCH_ZYGOTE_FD": str(theirs.fileno())}, pass_fds=[theirs.fileno()], start_new_session=True,
            )
        theirs.close()
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)

    def fits(self, argv: list[str], env: dict[str, str]) -> bool:
        if len(argv) < 3 or argv[1] != "-m" or os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
            return False
        if venv_of(argv[0]) != venv_of(sys.executable):  # the same interpreter, started as another environment
            return False
        names = {k for k in (*env, *self.env) if k.startswith("PYTHON") and k not in _PER_CHILD}
        return all(env.get(k) == self.env.get(k) for k in names)

    def _readable(self) -> None:
        while True:
            try:
                msg = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._died()
                return
            m = json.loads(msg)
            if "pid" in m:
                if self._replies:
                    self._replies.popleft().set_result(m)
            elif "exit" in m:
                fut = self._exit_future(m["exit"])
                if not fut.done():
                    fut.set_result(m["code"])
            elif "ready" in m:
                self.ready.set_result(True)
            elif "error" in m:
                self.error = m["error"]
                log.warning("warm start of %s unavailable: %s", ",".join(self.modules), m["error"])
                self._died()
                return

    def _exit_future(self, pid: int) -> asyncio.Future[int | None]:
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    def _died(self) -> None:
        """The zygote is gone: exec from now on; its children's ends are watched by polling instead."""
        if self.dead:
            return
        self.dead = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        if not self.ready.done():
            self.ready.set_result(False)
        for fut in self._replies:
            if not fut.done():
                fut.set_exception(ConnectionError("the zygote exited"))
        self._replies.clear()
        for pid, fut in self._exits.items():
            if not fut.done():
                asyncio.ensure_future(self._poll_end(pid, fut))

    @staticmethod
    async def _poll_end(pid: int, fut: asyncio.Future[int | None]) -> None:
        ct = process.create_time(pid)
        while process.alive(pid, ct):
            await asyncio.sleep(0.2)
        if not fut.done():
            fut.set_result(None)

    async def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, exit_file: str | None = None,
                    exec_: bool = False, net: dict | None = None) -> tuple[int, asyncio.Future[int | None]]:
        """Fork the container (``exec_``: fork and exec ``argv``); its pid and a future of its exit status.
        ConnectionError if the zygote is gone, ExecFailed if the exec did not happen."""
        async with self._lock:  # one request in flight: replies come back in order
            if self.dead:
                raise ConnectionError("the zygote exited")
            fut: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
            self._replies.append(fut)
            req = {"argv": argv, "env": env, "cwd": cwd, "exit_file": exit_file, "exec": exec_, "net": net}
            try:
                socket.send_fds(self.sock, [json.dumps(req).encode()], [stdout, stderr])
            except OSError as e:
                self._replies.remove(fut)
                raise ConnectionError(str(e)) from e
            reply = await fut
        if reply.get("error"):
            raise ExecFailed(reply["error"])
        return reply["pid"], self._exit_future(reply["pid"])

    def close(self, wait: float = 5.0) -> None:
        """Hang up; the zygote exits once its children have ended (at once if it has none)."""
        self._died()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(wait)


class WarmStarts:
    """The kubelet's zygotes, one per preload list, and the supervisor (the zygote of no modules) that
    execs the other containers.

    ``adapt_env``: the containers' Python start-up variables need not be this process's (the Ray kubelet's
    node workers run in Ray's environment, their containers in ketch's): a zygote is kept per preload list
    *and* set of start-up variables, started with the containers' ones."""

    def __init__(self, log_dir: Path, enabled: bool = True, start_timeout: float = 30.0, supervise: bool = True,
                 adapt_env: bool = False) -> None:
        self.log_dir = log_dir
        self.enabled = enabled
        self.supervise = supervise
        self.start_timeout = start_timeout
        self.adapt_env = adapt_env
        self.zygotes: dict[tuple, Zygote] = {}

    def _zygote(self, modules: tuple[str, ...], startup: tuple[tuple[str, str], ...] | None = None) -> Zygote | None:
        key: tuple = modules if startup is None else (modules, startup)
        z = self.zygotes.get(key)
        if z is not None and z.error:
            return None
        if z is None or z.dead:
            env = None
            if startup is not None:
                env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") or k in _PER_CHILD} | dict(startup)
            z = self.zygotes[key] = Zygote(modules, self.log_dir / "zygote.log", env)
        return z

    def start_supervisor(self) -> None:
        """Start the exec supervisor now, so that the first container does not wait for its interpreter."""
        if self.supervise:
            self._zygote(())

    async def exec(self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int,
                   exit_file: str | None = None, net: dict | None = None) -> tuple[int, asyncio.Future[int | None]] | None:
        """Exec the container through the supervisor; None to start it directly (no supervisor to be had).
        ExecFailed when the program could not be exec'd."""
        if not self.supervise:
            return None
        z = self._zygote(())
        if z is None:
            return None
        return await self._spawn(z, argv, env, cwd, stdout, stderr, exit_file, exec_=True, net=net)

    async def spawn(self, modules: tuple[str, ...], argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int,
                    exit_file: str | None = None, net: dict | None = None) -> tuple[int, asyncio.Future[int | None]] | None:
        """Fork the container from the zygote for ``modules`` (started on first use, and waited for: its
        imports are what the container would have done itself); None to exec it instead."""
        if not self.enabled:
            return None
        z = self._zygote(modules, startup_env(env) if self.adapt_env else None)
        if z is None or not z.fits(argv, env):
            return None
        return await self._spawn(z, argv, env, cwd, stdout, stderr, exit_file, net=net)

    async def _spawn(self, z: Zygote, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int,
                     exit_file: str | None, exec_: bool = False, net: dict | None = None) -> tuple[int, asyncio.Future[int | None]] | None:
        try:
            # a ready zygote is asked at once: wait_for would first yield a turn of the loop to whatever
            # else is runnable, on the way to every container's exec
            if not (z.ready.result() if z.ready.done() else await asyncio.wait_for(asyncio.shield(z.ready), self.start_timeout)):
                return None
            return await z.spawn(argv, env, cwd, stdout, stderr, exit_file, exec_, net)
        except TimeoutError:
            log.warning("zygote %s not ready after %ss; starting the process directly", ",".join(z.modules) or "(supervisor)", self.start_timeout)
        except ConnectionError as e:
            log.warning("warm start failed, starting the process cold: %s", e)
        return None

    def close(self, wait: float = 5.0) -> None:
        """Hang up on every zygote; ``wait`` for each to exit (0 when its containers are left running)."""
        for z in self.zygotes.values():
            z.close(wait)
        self.zygotes.clear()
