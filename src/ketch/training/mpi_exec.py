"""The remote-shell agent MPIJob launchers use instead of ssh: ``mpi_exec <host> <command...>``.

OpenMPI (``plm_rsh_agent``), Intel MPI and MPICH (hydra's rsh bootstrap) start their remote daemons by
running ``<agent> <host> <command>``, as they would run ``ssh``. ketch runs no sshd, so this agent runs
the command in the worker Pod through the ``pods/exec`` subresource (the way mpi-operator v1 used
``kubectl exec``), with the worker container's environment and working directory. ``<host>`` is a
hostfile entry, ``<pod>.<job>.<namespace>.svc`` or a bare pod name (then the launcher's namespace).
Output is relayed and the remote exit code becomes this process's; a worker that is not running yet is
retried for a while (ssh's ConnectionAttempts), and an unreachable one exits 255 as ssh does. The server,
credential and TLS trust come from the Pod's KUBECONFIG (``ketch.kinds.incluster``).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
from urllib.parse import urlencode

from ketch.kinds import incluster

STDOUT, STDERR, ERROR = 1, 2, 3
RETRY_SECONDS = float(os.environ.get("KETCH_MPI_EXEC_RETRY_SECONDS") or 60)


def target(host: str) -> tuple[str, str]:
    labels = host.split(".")
    ns = labels[2] if len(labels) >= 3 else os.environ.get("KETCH_POD_NAMESPACE", "default")
    return labels[0], ns


def run_once(url: str, headers: dict[str, str], tls: ssl.SSLContext | None = None) -> tuple[int | None, str | None]:
    """(exit code, None) when the command ran; (None, why) when it could not be started."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
    from websockets.sync.client import connect

    try:
        ws = connect(url, subprotocols=["v5.channel.k8s.io", "v4.channel.k8s.io"], additional_headers=headers,
                     max_size=None, open_timeout=10, **({"ssl": tls} if tls is not None else {}))
    except (OSError, InvalidHandshake) as e:
        return None, f"cannot reach the API server for exec: {e}"
    with ws:
        try:
            for msg in ws:
                data = msg if isinstance(msg, bytes) else msg.encode()
                if not data:
                    continue
                ch, body = data[0], data[1:]
                if ch == STDOUT:
                    sys.stdout.buffer.write(body)
                    sys.stdout.buffer.flush()
                elif ch == STDERR:
                    sys.stderr.buffer.write(body)
                    sys.stderr.buffer.flush()
                elif ch == ERROR:
                    st = json.loads(body or b"{}")
                    if st.get("status") == "Success":
                        return 0, None
                    causes = ((st.get("details") or {}).get("causes")) or []
                    code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
                    if code is not None:
                        return int(code), None
                    return None, st.get("message") or "exec failed"
        except ConnectionClosed:
            pass
    return None, "the exec stream closed without a status"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: mpi_exec <host> <command...>", file=sys.stderr)
        return 255
    pod, ns = target(argv[0])
    api = incluster.load()
    q = [("command", "/bin/sh"), ("command", "-c"), ("command", " ".join(argv[1:])), ("stdout", "true"), ("stderr", "true")]
    url = api.server.replace("http", "ws", 1) + f"/api/v1/namespaces/{ns}/pods/{pod}/exec?" + urlencode(q)
    deadline = time.time() + RETRY_SECONDS
    while True:
        code, why = run_once(url, api.headers, api.ssl_context)
        if code is not None:
            return code
        if time.time() > deadline:
            print(f"mpi_exec: {argv[0]}: {why}", file=sys.stderr)
            return 255
        time.sleep(0.5)  # the worker is not running yet (or the server is restarting): try again


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
