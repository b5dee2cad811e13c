"""A TFJob replica without TensorFlow: read TF_CONFIG, listen on this task's address, say hello to every
other task at the address TF_CONFIG names, and wait to hear from all of them."""

import json
import os
import socket
import threading
import time

cfg = json.loads(os.environ["TF_CONFIG"])
me = f"{cfg['task']['type']}:{cfg['task']['index']}"
peers = {f"{t}:{i}": a for t, addrs in cfg["cluster"].items() for i, a in enumerate(addrs)}
host, port = peers.pop(me).rsplit(":", 1)
heard: list[str] = []
srv = socket.create_server((host, int(port)))


def serve() -> None:
    while len(heard) < len(peers):
        conn, _ = srv.accept()
        with conn:
            heard.append(conn.recv(1024).decode())


t = threading.Thread(target=serve, daemon=True)
t.start()
for name, addr in sorted(peers.items()):
    h, p = addr.rsplit(":", 1)
    for _ in range(300):
        try:
            with socket.create_connection((h, int(p)), timeout=2) as s:
                s.sendall(f"hello from {me}".encode())
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise SystemExit(f"{me}: could not reach {name} at {addr}")
t.join(60)
print(f"{me} listened on {host}:{port} and heard: {sorted(heard)}", flush=True)
raise SystemExit(0 if len(heard) == len(peers) else 4)
