"""A PaddleJob replica that checks its peers are reachable with only what the operator wires: the
rendezvous pod (the one given POD_IP_DUMMY) listens on PADDLE_MASTER's port, every other replica connects
to PADDLE_MASTER and says who it is, and the rendezvous pod answers each with the full roster, so every
replica ends knowing all PADDLE_NNODES members (what paddle.distributed.launch's master does)."""

import json
import os
import socket
import time

master = os.environ["PADDLE_MASTER"]
nnodes = int(os.environ["PADDLE_NNODES"])
me = os.environ["HOSTNAME"]
host, port = master.rsplit(":", 1)
if "POD_IP_DUMMY" in os.environ:
    assert host == os.environ["POD_IP_DUMMY"], (host, os.environ["POD_IP_DUMMY"])
    srv = socket.create_server((host, int(port)))
    conns, names = [], [me]
    while len(names) < nnodes:
        c, _ = srv.accept()
        names.append(c.makefile().readline().strip())
        conns.append(c)
    roster = json.dumps(sorted(names))
    for c in conns:
        c.sendall((roster + "\n").encode())
        c.close()
else:
    deadline = time.time() + 60
    while True:
        try:
            c = socket.create_connection((host, int(port)), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    c.sendall((me + "\n").encode())
    roster = c.makefile().readline().strip()
extra = {k: os.environ[k] for k in ("PADDLE_SERVER_NUM", "PADDLE_TRAINER_NUM") if k in os.environ}
print(f"job={os.environ['PADDLE_JOB_ID']} me={me} peers={roster} {json.dumps(extra)}", flush=True)
