"""``kubectl exec``: the ``pods/exec`` subresource over WebSocket, Kubernetes' remote-command protocol.

kubectl (1.30+) opens ``GET /api/v1/namespaces/{ns}/pods/{name}/exec?command=...&stdin=&stdout=&stderr=&tty=
&container=`` as a WebSocket with the subprotocol ``v5.channel.k8s.io`` (or ``v4``). Every binary frame starts
with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final Status (JSON), 4 terminal resize (JSON Width/
Height), and in v5 255 to close a channel (``[255, 0]``: stdin ended). The command runs as the container's
processes do (its environment, working directory and mount rewriting, in its own session) beside the
container's main process; with ``tty`` it gets a pseudo-terminal. When it exits, channel 3 carries Success
or Failure with the exit code as a cause, which kubectl turns into its own exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal

from starlette.websockets import WebSocket, WebSocketDisconnect

from ketch.kinds import mounts
from ketch.kubelet.base import POD
from ketch.kubelet.images import find_executable
from ketch.machinery.params import parse_bool

log = logging.getLogger(__name__)
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def _status(code: int | None, message: str | None = None) -> bytes:
    if code == 0 and message is None:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    if message is not None:
        return json.dumps({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}).encode()
    return json.dumps({
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }).encode()


def _resize(fd: int, data: bytes) -> None:
    import fcntl
    import struct
    import termios

    with contextlib.suppress(ValueError, OSError):
        size = json.loads(data)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(size.get("Height", 24)), int(size.get("Width", 80)), 0, 0))


async def serve(ws: WebSocket, kubelet: object) -> None:
    """One exec session; ``kubelet`` is the local kubelet whose PodWorker runs the pod."""
    ns, name = ws.path_params["namespace"], ws.path_params["name"]
    q = ws.query_params
    protocol = next((p for p in ws.scope.get("subprotocols") or [] if p in PROTOCOLS), None)
    if protocol is None:
        await ws.close(code=1002, reason=f"unsupported subprotocol; this server speaks {', '.join(PROTOCOLS)}")
        return
    await ws.accept(subprotocol=protocol)

    async def fail(msg: str) -> None:
        with contextlib.suppress(Exception):
            await ws.send_bytes(bytes([ERROR]) + _status(None, msg))
            await ws.close()

    command = q.getlist("command")
    pod = kubelet.client.get(POD, ns, name)  # type: ignore[attr-defined]
    if pod is None:
        return await fail(f'pods "{name}" not found')
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    container = q.get("container") or (containers[0] if containers else "")
    worker = next((w for w in getattr(kubelet, "workers", {}).values() if w.ns == ns and w.name == name), None)
    cs = worker.cs.get(container) if worker is not None else None
    if not command:
        return await fail("you must specify at least one command for the container")
    if worker is None or cs is None or not cs.running:
        return await fail(f'unable to upgrade connection: container not found ("{container}")')
    try:
        tty = parse_bool(q.get("tty") or "false")
        want_in = parse_bool(q.get("stdin") or "false")
    except ValueError as e:
        return await fail(str(e))
    if worker.runtime is not None:  # an OCI container: the engine runs the command inside it
        name_in_engine = worker.runtime.container_name(worker.pod, container, cs.run)
        command = worker.runtime.exec_argv(name_in_engine, command, tty=tty, stdin=want_in)
        env, cwd = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}, str(worker.dir)
    else:
        try:
            _, env, cwd = worker.build(worker.spec_of(container))
            rewrite = mounts.from_env(env)
        except Exception as e:  # noqa: BLE001 - the container's config cannot be built now: say so on the error channel
            return await fail(f"cannot build the container's environment: {e}")
        command = [rewrite(c) for c in command]  # /data in the command reaches the mounted volume, as in args
    exe = find_executable(command[0], env.get("PATH", ""), cwd)
    if exe is None:
        return await fail(f'exec: "{command[0]}": executable file not found in $PATH')
    if worker.runtime is None and worker.net is not None and worker.net.netns:  # into the Pod's network namespace
        command = worker.net.wrap([exe, *command[1:]], cs.pid)
        exe = command[0]
    master = None
    if tty:
        import pty

        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(exe, *command[1:], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True)
        os.close(slave)
    else:
        proc = await asyncio.create_subprocess_exec(
            exe, *command[1:], cwd=cwd, env=env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE if want_in else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    loop = asyncio.get_running_loop()

    async def pump(reader: asyncio.StreamReader | None, channel: int) -> None:
        if reader is None:
            return
        while chunk := await reader.read(65536):
            await ws.send_bytes(bytes([channel]) + chunk)

    async def pump_pty() -> None:
        assert master is not None
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                return
            if not chunk:
                return
            await ws.send_bytes(bytes([STDOUT]) + chunk)

    async def feed() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the client went away: so does the command
                return
            data = msg.get("bytes") or (msg.get("text") or "").encode()
            if not data:
                continue
            ch, body = data[0], data[1:]
            if ch == STDIN and body:
                if master is not None:
                    os.write(master, body)
                elif proc.stdin is not None:
                    proc.stdin.write(body)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif ch == RESIZE and master is not None:
                _resize(master, body)
            elif ch == CLOSE and body[:1] == bytes([STDIN]) and proc.stdin is not None:
                proc.stdin.close()

    feeder = asyncio.create_task(feed())
    outputs = [asyncio.create_task(pump_pty())] if tty else [asyncio.create_task(pump(proc.stdout, STDOUT)), asyncio.create_task(pump(proc.stderr, STDERR))]
    try:
        code = await proc.wait()
        await asyncio.wait(outputs, timeout=5)
        with contextlib.suppress(Exception, WebSocketDisconnect):
            await ws.send_bytes(bytes([ERROR]) + _status(code))
            await ws.close()
    finally:
        for t in [feeder, *outputs]:
            t.cancel()
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


async def serve_attach(ws: WebSocket, kubelet: object) -> None:
    """``kubectl attach``: the running container's output from now on (stdout on channel 1, stderr on 2,
    read from its raw output files as they grow), and, for a container with ``stdin: true``, channel 0
    written into its stdin FIFO (``logs.Shipper.open_stdin``). Ends with a Success status when the
    container's run ends; detaching (closing the WebSocket) leaves the container running. A TTY is not
    allocated (the container's output is a file, not a terminal); ``stdinOnce`` does not close stdin."""
    from ketch.kubelet import logs

    ns, name = ws.path_params["namespace"], ws.path_params["name"]
    q = ws.query_params
    protocol = next((p for p in ws.scope.get("subprotocols") or [] if p in PROTOCOLS), None)
    if protocol is None:
        await ws.close(code=1002, reason=f"unsupported subprotocol; this server speaks {', '.join(PROTOCOLS)}")
        return
    await ws.accept(subprotocol=protocol)

    async def fail(msg: str) -> None:
        with contextlib.suppress(Exception):
            await ws.send_bytes(bytes([ERROR]) + _status(None, msg))
            await ws.close()

    pod = kubelet.client.get(POD, ns, name)  # type: ignore[attr-defined]
    if pod is None:
        return await fail(f'pods "{name}" not found')
    specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
    container = q.get("container") or next(iter(specs), "")
    worker = next((w for w in getattr(kubelet, "workers", {}).values() if w.ns == ns and w.name == name), None)
    cs = worker.cs.get(container) if worker is not None else None
    if container not in specs or worker is None or cs is None or not cs.running:
        return await fail(f'unable to upgrade connection: container {container} not found in pod {name}')
    try:
        want_in = parse_bool(q.get("stdin") or "false")
    except ValueError as e:
        return await fail(str(e))
    log_dir = kubelet.log_dir(ns, name, container)  # type: ignore[attr-defined]
    run = logs.runs(log_dir)[-1]
    files = {STDOUT: log_dir / f"{run}.stdout", STDERR: log_dir / f"{run}.stderr"}
    done = log_dir / f"{run}.done"
    offsets = {ch: (p.stat().st_size if p.exists() else 0) for ch, p in files.items()}
    fifo = log_dir / "stdin"
    if want_in and not specs[container].get("stdin"):
        return await fail(f"Unable to use a TTY - container {container} did not allocate one" if parse_bool(q.get("tty") or "false")
                          else f"container {container} in pod {name} does not accept stdin (set stdin: true)")

    async def tail() -> None:
        while True:
            moved = False
            for ch, p in files.items():
                with contextlib.suppress(FileNotFoundError):
                    with open(p, "rb") as f:
                        f.seek(offsets[ch])
                        data = f.read(65536)
                    if data:
                        offsets[ch] += len(data)
                        moved = True
                        await ws.send_bytes(bytes([ch]) + data)
            if not moved:
                if done.exists():
                    return
                await asyncio.sleep(0.05)

    async def feed() -> None:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if want_in and fifo.exists() else None
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes") or (msg.get("text") or "").encode()
                if data[:1] == bytes([STDIN]) and fd is not None:
                    body = data[1:]
                    while body:
                        try:
                            body = body[os.write(fd, body):]
                        except BlockingIOError:
                            await asyncio.sleep(0.01)
        finally:
            if fd is not None:
                os.close(fd)

    outputs = asyncio.create_task(tail())
    feeder = asyncio.create_task(feed())
    try:
        finished, _ = await asyncio.wait({outputs, feeder}, return_when=asyncio.FIRST_COMPLETED)
        if outputs in finished:
            with contextlib.suppress(Exception, WebSocketDisconnect):
                await ws.send_bytes(bytes([ERROR]) + _status(0))
                await ws.close()
    finally:
        outputs.cancel()
        feeder.cancel()
