"""Probes: httpGet, tcpSocket and exec, each answering (success, message) within timeoutSeconds."""

from __future__ import annotations

import asyncio
import os

import httpx

from ketch.kubelet.network import HOST, PodNet


def _port(port: object, container: dict) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in the container's ports")


async def run_probe(probe: dict, container: dict, env: dict[str, str], cwd: str, net: PodNet = HOST,
                    pid: int | None = None) -> tuple[bool, str]:
    """One probe of ``container``: network probes dial the Pod's IP (``net``), exec probes run in its
    network namespace, as the kubelet probes a Pod on a node."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            cmd = net.wrap(list((probe["exec"] or {}).get("command") or []), pid)
            proc = await asyncio.create_subprocess_exec(
                *cmd, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                with_kill(proc.pid)
                await proc.wait()
                return False, f"command timed out after {timeout:g}s"
            return proc.returncode == 0, out.decode(errors="replace")[-1024:]
        if "httpGet" in probe:
            h = probe["httpGet"] or {}
            scheme = (h.get("scheme") or "HTTP").lower()
            host = h.get("host") or net.ip
            url = f"{scheme}://{host}:{_port(h.get('port'), container)}{h.get('path') or '/'}"
            headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
            async with httpx.AsyncClient(timeout=timeout, verify=False) as c:
                r = await c.get(url, headers=headers)
            ok = 200 <= r.status_code < 400
            return ok, "" if ok else f"HTTP probe failed with statuscode: {r.status_code}"
        if "tcpSocket" in probe:
            t = probe["tcpSocket"] or {}
            port = _port(t.get("port"), container)
            _, w = await asyncio.wait_for(asyncio.open_connection(t.get("host") or net.ip, port), timeout)
            w.close()
            return True, ""
        if "grpc" in probe:
            port = int((probe["grpc"] or {}).get("port"))
            _, w = await asyncio.wait_for(asyncio.open_connection(net.ip, port), timeout)
            w.close()
            return True, ""
        return False, "probe has no handler"
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except Exception as e:  # a refused connection, a bad port: a failed probe, not a crash
        return False, f"{type(e).__name__}: {e}"


def with_kill(pid: int) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
