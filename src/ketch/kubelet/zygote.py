"""A warm Python interpreter that forks container processes, and the supervisor of what it forked:
``python -m ketch.kubelet.zygote MOD ...``.

Starting an interpreter and importing a framework costs far more than the work of a small pipeline task,
and that start-up is paid again for every Pod. This program imports the given modules once, then waits on
a Unix socket (its fd in ``KETCH_ZYGOTE_FD``) for requests from the kubelet: one message per container,
``{"argv": [python, "-m", module, ...], "env": {...}, "cwd": "...", "exit_file": "..."}`` with the
container's stdout and stderr fds attached. It forks; the child becomes what ``python -m module args`` in
that directory and environment would have been (a session leader, its own stdin/stdout/stderr,
``sys.argv``, ``sys.path[0]``, ``PYTHONPATH``) and finishes as an interpreter finishes (atexit, non-daemon
threads, flushing). With ``"exec": true`` the child instead execs ``argv`` as given (how the kubelet starts
every other container: a zygote with no modules is its supervisor for exec'd containers). The parent
answers ``{"pid": N}`` (or ``{"pid": N, "error": "..."}`` when the exec failed) and, when a child ends,
``{"exit": N, "code": C}`` (negative: the signal), so the kubelet sees the same pid and exit status that a
process it started itself would give.

Being the parent, the zygote is what can know how a container ended, so it keeps that outside ketch, as
conmon does for podman: each child's pid when it starts and its exit status when it ends are written to
the pod's state directory (``exits.py``: the request's ``exit_file``). When the kubelet's end of the socket closes (ketch stopped or
was killed), the zygote takes no more requests but stays until its last child has ended and been
recorded, then exits; its children carry on, and the next kubelet adopts them and reads their records.
Started with ``KETCH_ZYGOTE_ORPHANS=kill`` (by the Ray kubelet's node workers, ray_workers.py, which are what
outlives ketch there: a container whose worker is gone can be adopted by nobody), it instead kills its
children's process groups when its end of the socket closes, and exits once they are reaped.

Only the standard library is imported before the preload list, and nothing here runs threads, so forking
is safe.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import sys

from ketch.kubelet.exits import record_exit, record_start

MAX_MESSAGE = 1 << 22
# What Python changed at start-up that an exec'd program must not inherit (ignored signals survive exec).
_DEFAULT_SIGNALS = [s for s in ("SIGPIPE", "SIGXFSZ", "SIGXFZ", "SIGINT", "SIGCHLD") if hasattr(signal, s)]


class Supervisor:
    """The parent's side: the children it forked, where their ends go, the kubelet while it is there."""

    def __init__(self, sock: socket.socket, kill_orphans: bool = False) -> None:
        self.sock: socket.socket | None = sock
        self.children: dict[int, str | None] = {}  # pid -> exit file
        self.kill_orphans = kill_orphans

    def tell(self, msg: dict) -> None:
        if self.sock is None:
            return
        try:
            self.sock.send(json.dumps(msg).encode())
        except OSError:
            self.hang_up()

    def hang_up(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            if self.kill_orphans:
                for pid in self.children:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            path = self.children.pop(pid, None)
            if path:
                record_exit(path, code)  # first: once the kubelet hears of the end, it may remove the pod
            self.tell({"exit": pid, "code": code})


def serve(sock: socket.socket, kill_orphans: bool = False) -> tuple[dict, list[int]] | None:
    """The parent's loop. Returns in a forked child with the request it is to carry out, or None once the
    kubelet is gone and every child has ended."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C at the terminal of `ketch up` is ketch's to handle
    sup = Supervisor(sock, kill_orphans)
    sup.tell({"ready": os.getpid()})
    while sup.sock is not None or sup.children:
        watch = [wake_r] if sup.sock is None else [sup.sock, wake_r]
        try:
            readable, _, _ = select.select(watch, [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
        if sup.sock is not None and sup.sock in readable:
            try:
                msg, fds, _, _ = socket.recv_fds(sup.sock, MAX_MESSAGE, 2)
            except OSError:
                msg, fds = b"", []
            if not msg:
                sup.hang_up()  # the kubelet is gone: stay for the children, take no more requests
            else:
                req = json.loads(msg)
                got = _fork(sup, req, fds, wake_r, wake_w)
                if got is not None:
                    return got
        sup.reap()
    return None


def _fork(sup: Supervisor, req: dict, fds: list[int], wake_r: int, wake_w: int) -> tuple[dict, list[int]] | None:
    err_r, err_w = os.pipe() if req.get("exec") else (-1, -1)
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
        if sup.sock is not None:
            sup.sock.close()
        if req.get("exec"):
            os.close(err_r)
            _exec(req, fds, err_w)  # does not return
        if req.get("net"):
            try:
                enter_net(req["net"])
            except OSError as e:
                os.write(fds[1], f"ketch: cannot enter the Pod's network namespace: {e}\n".encode())
                os._exit(127)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return req, fds
    for fd in fds:
        os.close(fd)
    reply: dict = {"pid": pid}
    if req.get("exec"):
        os.close(err_w)
        failed = _read_all(err_r)  # empty: the exec happened (the pipe is close-on-exec)
        os.close(err_r)
        if failed:
            os.waitpid(pid, 0)
            reply["error"] = failed.decode(errors="replace")
            sup.tell(reply)
            return None
    sup.children[pid] = req.get("exit_file")
    sup.tell(reply)
    if req.get("exit_file"):
        record_start(req["exit_file"], pid)  # after the reply: off the container's start path
    return None


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return out
        out += chunk


def _stdio(fds: list[int]) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in {null, *fds} - {0, 1, 2}:
        os.close(fd)


def _exec(req: dict, fds: list[int], err_w: int) -> None:
    """Become the exec'd container, as subprocess would start it: own session, default signals."""
    try:
        if req.get("net"):
            enter_net(req["net"])
        _stdio(fds)
        for name in _DEFAULT_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        os.chdir(req["cwd"])
        argv = req["argv"]
        os.execve(argv[0], argv, req["env"])
    except BaseException as e:  # noqa: BLE001 - anything at all: tell the parent, never run its loop here
        msg = f"{e.strerror}" if isinstance(e, OSError) and e.strerror else str(e)
        os.write(err_w, (msg or type(e).__name__).encode())
    os._exit(127)


def enter_net(net: dict) -> None:
    """Join the Pod's network namespace and see its hosts file as /etc/hosts, as ``ip netns exec`` does:
    setns(2), a UTS namespace with the Pod's hostname (what distributed frameworks resolve to find their
    own address), then a mount namespace of this process's own (mounts made here never reach the host) in
    which the Pod's hosts file is bind-mounted over /etc/hosts. ctypes, being standard library, is safe here."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    fd = os.open(net["netns"], os.O_RDONLY)
    try:
        check(libc.setns(fd, 0x40000000), "setns")  # CLONE_NEWNET
    finally:
        os.close(fd)
    if net.get("hostname"):  # a UTS namespace of its own: gethostname() is the Pod's, as on a node
        name = net["hostname"].encode()
        check(libc.unshare(0x04000000), "unshare(CLONE_NEWUTS)")
        check(libc.sethostname(name, len(name)), "sethostname")
    if net.get("hosts"):
        check(libc.unshare(0x00020000), "unshare")  # CLONE_NEWNS
        # MS_REC | MS_SLAVE on /: nothing mounted below propagates back to the host
        check(libc.mount(None, b"/", None, 0x4000 | 0x80000, None), "mount --make-rslave /")
        check(libc.mount(net["hosts"].encode(), b"/etc/hosts", None, 0x1000, None), "mount --bind hosts")  # MS_BIND


def become(req: dict, fds: list[int]) -> str:
    """Turn this forked child into the requested ``python -m module`` process; returns the module."""
    _stdio(fds)
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
    kill_orphans = os.environ.pop("KETCH_ZYGOTE_ORPHANS", "") == "kill"
    for mod in sys.argv[1:]:
        try:
            __import__(mod)
        except BaseException as e:  # noqa: BLE001 - reported to the kubelet, which then execs as usual
            sock.send(json.dumps({"error": f"import {mod}: {type(e).__name__}: {e}"}).encode())
            return 1
    got = serve(sock, kill_orphans)
    if got is None:
        return 0
    module = become(*got)
    import runpy

    sys.modules.pop(module, None)  # run afresh as __main__, as -m does, without runpy's warning
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
